"""Optional stack hooks for the server-side scenarios: extra connections, triggers, databases,
and the wire codec.

None of these is part of the `Stack` protocol: a stack implements the ones it can, and a
phase looks them up with `require(ctx, name)`, which raises `Unsupported` (the phase
reports "unsupported") when the stack lacks one. All are methods of the stack object
unless noted. `durable` is the index of a durable node the runner built.

Connections (connection-scaling, subscription-scaling, event-throughput, filtered-subscriptions):

- `async open_connection(durable, connector) -> Client`: a new client node with its own
  connection to durable node `durable` over `connector` (e.g. "websocket"); its `close()`
  ends the connection. Many may be open at once.
- `connection_address(durable, connector) -> dict`: a JSON-serialisable address of that
  durable node for clients in *other processes*; a worker process rebuilds the stack's
  factory by name (the plugin mechanism) and calls the factory's
  `async connect_address(address, index) -> Client` (a classmethod/staticmethod, it
  must not need the stack's start()).
- `server_stats(durable) -> dict`: server-side figures, any of `connections`,
  `live_queries`, `live_query_memory_bytes` (total), `subscriptions`,
  `slow_connections_closed` (connections the server dropped because their client did not
  keep up: a delivery check that fails names it), `rss_bytes` (the resident memory of a
  server that runs in a process of its own) ...

Triggers (trigger):

- `async add_trigger(durable, spec: TriggerSpec) -> None`: POST every change of
  `spec.collection` matching `spec.where` to `spec.url`, with JSON bodies;
- `webhook_event(body: dict) -> WebhookEvent`: what one POSTed body says (ids and times);
- `trigger_stats(durable) -> dict`: at least `evaluated`, `matched`, `delivered`, `failed`;
- `async drain_triggers(durable, timeout_s) -> bool`: wait until queued deliveries settled;
- `async remove_trigger(durable, name) -> None`.

Databases (isolation):

- `async database_client(durable, database, connector) -> Client`: a client of database
  `database` (created on first use) hosted next to durable node `durable`; `connector`
  None = in-process access to the database's node, else a connection over that
  connector naming the database. Databases of one durable slot share one server process
  but nothing else.

Wire codec (the notify-lag phase of the asv suite):

- `notify_codec() -> (encode, decode)`: `encode(id, props, commit_ns) -> bytes` is the
  message the stack's server sends for a change of one updated entity; `decode(bytes) ->
  commit_ns` reads it as the stack's client does. The phase measures this codec plus one
  event-loop turn with no node work: the floor of an in-process connector that keeps the
  wire codec, reported next to the lag.

Direct reads (the asv-albums-get phase; the asv suite's `NodeGetById` and its gate):

- `native_get(client) -> get | None`: for a client this stack built, `async get(collection,
  id)` reading one entity by id through the stack's own API under the client contract (no
  conversion into `Doc`s): what a get costs the stack itself. It returns None for an absent
  entity and anything else for a present one; the hook returns None for a client that has
  no such path. A stack without the hook has no such figure (n/a, never a stand-in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sprout_harness.contracts.errors import Unsupported
from sprout_harness.contracts.query import Pred

CONNECTION_HOOKS = ("open_connection",)
TRIGGER_HOOKS = ("add_trigger", "webhook_event", "trigger_stats", "drain_triggers", "remove_trigger")
DATABASE_HOOKS = ("database_client",)
DIRECT_READ_HOOKS = ("native_get",)


@dataclass(frozen=True)
class TriggerSpec:
    """A server-side trigger: POST each change of `collection` matching `where` (None: all) to `url`."""

    name: str
    collection: str
    where: Pred | None
    url: str
    timeout_s: float = 5.0
    retries: int = 3
    backoff_s: float = 0.05


@dataclass(frozen=True)
class WebhookEvent:
    """One delivered change as the harness needs it. Times are perf_counter_ns of the stack's
    process (comparable with the harness's when it runs the stack in-process)."""

    delivery_id: str
    entity_id: str
    kind: str  # create | update | delete
    commit_id: str | None = None
    commit_ns: int | None = None
    evaluated_ns: int | None = None
    props: dict[str, Any] | None = None  # the entity after the change (before, for a delete)


def find(stack: Any, name: str) -> Any:
    """The stack's hook `name` (a bound method), or None."""
    fn = getattr(stack, name, None)
    return fn if callable(fn) else None


def require(ctx: Any, *names: str) -> list[Any]:
    """The hooks `names` of the phase's stack; Unsupported naming the missing ones otherwise."""
    stack = getattr(ctx, "stack", None)
    found = [find(stack, n) for n in names]
    missing = [n for n, f in zip(names, found) if f is None]
    if missing:
        label = getattr(stack, "name", type(stack).__name__)
        raise Unsupported(
            f"stack {label!r} has no {', '.join(missing)} hook"
            f"{'s' if len(missing) > 1 else ''} (sprout_harness/contracts/hooks.py)"
        )
    return found


__all__ = [
    "CONNECTION_HOOKS",
    "DATABASE_HOOKS",
    "DIRECT_READ_HOOKS",
    "TRIGGER_HOOKS",
    "TriggerSpec",
    "WebhookEvent",
    "find",
    "require",
]
