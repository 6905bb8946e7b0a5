"""The storage engine contract. Engines are synchronous; `blocking` engines (network
I/O) are called off the event loop by the node.

An engine stores `EntityState`s per collection and an append-only commit log, and
answers queries over the *visible* entities (not tombstoned) in the query's total
order (ORDER BY keys, then id ascending).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Sequence, runtime_checkable

from loam.model import Entity, EntityState
from loam.query.ast import Query


@dataclass(slots=True)
class WriteBatch:
    """Everything one transaction writes, applied atomically by `StorageEngine.apply`.

    `states` are full new states keyed by (collection, id); `new_ids` marks the ones
    known not to exist yet (engines may insert them blindly); `commit` is the commit
    log entry (an orjson-serialisable dict with at least `commit_id`, `node_id`, `clock`).
    """

    states: list[tuple[str, EntityState]] = field(default_factory=list)
    new_ids: set[str] = field(default_factory=set)
    commit: dict[str, Any] | None = None


@runtime_checkable
class StorageEngine(Protocol):
    name: ClassVar[str]
    blocking: ClassVar[bool]

    def open(self) -> None: ...

    def close(self) -> None: ...

    def read_states(self, collection: str, ids: Sequence[str]) -> dict[str, EntityState]:
        """Stored states (tombstoned ones included) of the ids that exist."""
        ...

    def apply(self, batch: WriteBatch) -> None:
        """Write all states and the commit entry atomically and durably (per the engine's sync setting)."""
        ...

    def get(self, collection: str, id: str) -> Entity | None:
        """The visible entity, or None if absent or deleted."""
        ...

    def fetch(
        self, collection: str, query: Query, *, after: Entity | None = None, limit: int | None = None
    ) -> list[Entity]:
        """Visible entities matching `query.where`, in query order.

        `after` starts strictly after that entity's position in the order (keyset
        pagination, used by gap filling); `limit` overrides `query.limit` when given.
        """
        ...

    def count(self, collection: str) -> int:
        """Number of visible entities."""
        ...

    def collections(self) -> list[str]: ...

    def last_clock(self) -> int:
        """Highest Lamport clock in the commit log (0 when empty), to resume the clock on reopen."""
        ...

    def commits_since(self, clock: int) -> list[dict[str, Any]]:
        """Commit log entries with clock > `clock`, in clock order."""
        ...

    def explain(self, collection: str, query: Query) -> str:
        """How the engine will run this query (index used or full scan)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Engine name and parameters for reports, secrets masked."""
        ...
