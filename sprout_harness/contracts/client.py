"""The client surface workloads use to drive one node of the stack under test.

A stack returns one `Client` per node (durable or ephemeral). Every method is async.
A method the stack cannot provide raises `Unsupported` (or is absent); the phase that
needs it reports "unsupported" instead of crashing. Timestamps are
`time.perf_counter_ns()` values: the harness and the stack run in one process, so
commit -> notification lag is measured on one clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Awaitable, Callable, Mapping, Protocol, Sequence, Union, runtime_checkable

from sprout_harness.contracts.query import QuerySpec, Value


@dataclass(slots=True)
class Doc:
    """An entity as the harness sees it: its id and property values.

    Read-only by convention, like `WriteAck` and `Notification`: adapters build these on
    the measured paths (a write's ack before the writer waits, every notification's
    entities before the callback reads the clock), and a frozen dataclass costs ~2.5x
    as much to construct."""

    id: str
    props: Mapping[str, Value]


@dataclass(slots=True)
class WriteAck:
    """A write acknowledged by the stack.

    `commit_ns`: perf_counter_ns when the write became durable (None if the stack cannot
    tell; the harness then uses the time the call returned). `ids`: ids of created entities.
    """

    commit_ns: int | None
    ids: tuple[str, ...] = ()
    commit_id: str | None = None


@dataclass(slots=True)
class Notification:
    """One change to a subscription's result, as delivered to the harness's callback.

    `commit_ns` is the commit's timestamp (perf_counter_ns, durable clock) when the stack
    knows it; `kind` is "change", or anything else for control events (resubscribed,
    closed) which workloads ignore for lag. Read-only by convention (see `Doc`).
    """

    commit_ns: int | None
    added: tuple[Doc, ...] = ()
    updated: tuple[Doc, ...] = ()
    removed: tuple[str, ...] = ()
    kind: str = "change"
    commit_id: str | None = None
    received_ns: int | None = None  # the stack's own delivery time, if it reports one


NotificationCallback = Callable[[Notification], Union[None, Awaitable[None]]]


@runtime_checkable
class Subscription(Protocol):
    """A live query. `results` is the current result (the window when LIMITed), in order."""

    @property
    def results(self) -> Sequence[Doc]: ...

    async def close(self) -> None:
        """Unsubscribe."""
        ...


@runtime_checkable
class Client(Protocol):
    """One node of the stack, as workloads drive it."""

    async def create(self, collection: str, props: Sequence[Mapping[str, Value]]) -> WriteAck:
        """Create a batch of entities in one transaction; `WriteAck.ids` in input order."""
        ...

    async def get(self, collection: str, id: str) -> Doc | None: ...

    async def fetch(self, collection: str, query: QuerySpec) -> list[Doc]: ...

    async def update(self, collection: str, id: str, props: Mapping[str, Value]) -> WriteAck:
        """Partial update: sets the given properties only."""
        ...

    async def delete(self, collection: str, id: str) -> WriteAck: ...

    async def subscribe(self, collection: str, query: QuerySpec, callback: NotificationCallback) -> Subscription:
        """Start a live query; returns once the initial result is available in `results`."""
        ...


@dataclass(frozen=True)
class Capabilities:
    """What a stack can do. Phases declare what they need; missing -> "unsupported".

    `live_limit`: live queries with ORDER BY + LIMIT keep a full window (gap filling).
    `ephemeral`: the stack can build ephemeral (client-side) nodes.
    `connectors`: connector names it can wire between an ephemeral and a durable node.
    """

    create: bool = True
    get: bool = True
    fetch: bool = True
    update: bool = True
    delete: bool = True
    subscribe: bool = False
    live_limit: bool = False
    order_by: bool = True
    ephemeral: bool = False
    connectors: tuple[str, ...] = ()
    connector_delays: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def missing(self, needs: Sequence[str]) -> list[str]:
        names = {f.name for f in fields(self)}
        return [n for n in needs if n not in names or not getattr(self, n)]
