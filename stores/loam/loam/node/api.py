"""The surface every loam node offers (durable or ephemeral), and the types it uses
(`Context` and `Notification` are defined in `loam.model` and re-exported here).

Nodes are asyncio objects. Both roles implement `Node`; clients, the connectors and
the sprout adapter only use this surface.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from loam.model import CommitRecord, Context, Entity, Notification, NotificationCallback, Op, Scalar
from loam.query.ast import Query

# The value types live in `loam.model` (every layer uses them); they are part of this surface.
__all__ = ["Context", "LiveQuery", "Node", "Notification", "NotificationCallback"]


class LiveQuery(Protocol):
    """A subscription: `results` is the current result (the window when LIMITed)."""

    id: str
    collection: str
    query: Query
    closed_reason: str | None

    @property
    def results(self) -> list[Entity]: ...

    def add_listener(self, callback: NotificationCallback) -> None: ...

    async def next(self, timeout: float | None = None) -> Notification:
        """The next notification (raises TimeoutError / NodeClosedError)."""
        ...

    async def close(self) -> None:
        """Unsubscribe; releases everything server-side."""
        ...


class Node(Protocol):
    node_id: str
    role: str  # "durable" | "ephemeral"

    async def start(self) -> None: ...

    async def close(self, reason: str = "node closed") -> None: ...

    async def commit(self, ops: Sequence[Op], ctx: Context) -> CommitRecord:
        """Apply ops atomically (on an ephemeral: forwarded to the durable node and acknowledged there)."""
        ...

    async def create(
        self, collection: str, props: Sequence[dict[str, Scalar]], ctx: Context
    ) -> tuple[list[str], CommitRecord]:
        """Batch create in one transaction; returns the new ids and the commit."""
        ...

    async def update(self, collection: str, id: str, props: dict[str, Scalar], ctx: Context) -> CommitRecord: ...

    async def delete(self, collection: str, id: str, ctx: Context) -> CommitRecord: ...

    async def get(self, collection: str, id: str, ctx: Context) -> Entity | None: ...

    async def fetch(self, collection: str, query: str | Query, ctx: Context) -> list[Entity]: ...

    async def subscribe(
        self, collection: str, query: str | Query, ctx: Context, callback: NotificationCallback | None = None
    ) -> LiveQuery: ...
