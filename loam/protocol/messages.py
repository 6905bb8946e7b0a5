"""Every message of loam's wire protocol, as plain dataclasses (no I/O here); `Notify`,
the hot one, is a msgspec Struct so the codec decodes it in one typed pass.

Requests carry a request id `rid` chosen by the sender (0..MAX_RID); the reply echoes it. Every
message carries `sent_ns` (`time.perf_counter_ns()` when it was sent) so the receiver
can record a one-way connector delay per message type (meaningful when both ends share
a clock, i.e. one process). `TYPE` is the value of the wire field `t`.
Every reply to a request that reads or writes (`ack`, `get_result`, `fetch_result`,
`subscribed`) and every `notify` carries `clock`, the durable node's Lamport clock,
so the client's clock never falls far behind it.
See docs/protocol.md for the wire form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal, Union

import msgspec

from loam.model import CommitRecord, Context, Entity, NonNegative, Transaction
from loam.query.ast import Query

PROTOCOL_VERSION = 1

# A request id is an integer in 0..MAX_RID: exact in an IEEE double, so a client in
# any language can echo it. Decoding refuses others (`malformed`).
MAX_RID = (1 << 53) - 1


@dataclass(slots=True)
class Hello:
    """Client -> server, first message: authenticate and introduce the client node.

    `database` names the database to use on a server hosting several (a `DatabaseHost`);
    None means "default" there, and is the only value a single-node server accepts."""

    TYPE: ClassVar[str] = "hello"
    rid: int
    token: str | None
    node_id: str
    version: int = PROTOCOL_VERSION
    sent_ns: int = 0
    database: str | None = None


@dataclass(slots=True)
class Welcome:
    """Server -> client: handshake accepted. `clock` is the durable node's Lamport clock."""

    TYPE: ClassVar[str] = "welcome"
    rid: int
    node_id: str
    clock: int
    version: int = PROTOCOL_VERSION
    max_size: int = 0
    sent_ns: int = 0


@dataclass(slots=True)
class Commit:
    """Client -> server: apply a transaction stamped by the client node."""

    TYPE: ClassVar[str] = "commit"
    rid: int
    tx: Transaction
    ctx: Context = field(default_factory=Context)
    sent_ns: int = 0


@dataclass(slots=True)
class Ack:
    """Server -> client: the durable node's commit record for a `commit`; `clock` is its Lamport clock."""

    TYPE: ClassVar[str] = "ack"
    rid: int
    record: CommitRecord
    clock: int = 0
    sent_ns: int = 0


@dataclass(slots=True)
class Get:
    TYPE: ClassVar[str] = "get"
    rid: int
    collection: str
    id: str
    ctx: Context = field(default_factory=Context)
    sent_ns: int = 0


@dataclass(slots=True)
class GetResult:
    TYPE: ClassVar[str] = "get_result"
    rid: int
    entity: Entity | None
    clock: int = 0
    sent_ns: int = 0


@dataclass(slots=True)
class Fetch:
    """`query` is query text, or a parsed Query (sent as its AST) when it has no text."""

    TYPE: ClassVar[str] = "fetch"
    rid: int
    collection: str
    query: str | Query
    ctx: Context = field(default_factory=Context)
    sent_ns: int = 0


@dataclass(slots=True)
class FetchResult:
    TYPE: ClassVar[str] = "fetch_result"
    rid: int
    entities: list[Entity]
    clock: int = 0
    sent_ns: int = 0


@dataclass(slots=True)
class Subscribe:
    TYPE: ClassVar[str] = "subscribe"
    rid: int
    collection: str
    query: str | Query
    ctx: Context = field(default_factory=Context)
    sent_ns: int = 0


@dataclass(slots=True)
class Subscribed:
    """Server -> client: the live query's id (server side) and its current result, in order."""

    TYPE: ClassVar[str] = "subscribed"
    rid: int
    query_id: str
    results: list[Entity]
    clock: int = 0
    sent_ns: int = 0


@dataclass(slots=True)
class Unsubscribe:
    TYPE: ClassVar[str] = "unsubscribe"
    rid: int
    query_id: str
    sent_ns: int = 0


@dataclass(slots=True)
class Unsubscribed:
    TYPE: ClassVar[str] = "unsubscribed"
    rid: int
    query_id: str
    sent_ns: int = 0


class Notify(msgspec.Struct, tag_field="t", tag="notify", forbid_unknown_fields=True):
    """Server -> client, unsolicited: one change to a remote live query's result.

    `kind` is "change" or "closed" (the server ended the live query; `reason` says why).
    `gap_filled` counts the entities the durable node read to refill a LIMIT window in
    this change (0: no refill).
    `clock` is the commit's Lamport clock (lets the client's clock observe it).
    A msgspec Struct (the hot message): the codec decodes it in one typed pass, and
    every field is required on the wire, so every field is required here too.
    """

    TYPE: ClassVar[str] = "notify"
    query_id: str
    commit_id: str | None
    commit_ns: int | None
    added: list[Entity]
    updated: list[Entity]
    removed: list[str]
    gap_filled: NonNegative
    clock: NonNegative
    kind: Literal["change", "closed"]
    reason: str | None
    sent_ns: int


def closed_notify(query_id: str, commit_id: str | None, commit_ns: int | None, reason: str | None) -> Notify:
    """The notify that ends a live query (`kind` "closed", nothing changed); `sent_ns` 0 until sent."""
    return Notify(query_id, commit_id, commit_ns, [], [], [], 0, 0, "closed", reason, 0)


@dataclass(slots=True)
class Error:
    """A failed request (`rid` set) or a connection-level error (`rid` None, then closed).

    `code` is one of ERROR_CODES; `message` is for humans and names the fix. `clock`
    (the durable node's Lamport clock) is set for `stale_clock` only, else None (omitted).
    """

    TYPE: ClassVar[str] = "error"
    rid: int | None
    code: str
    message: str
    clock: int | None = None
    sent_ns: int = 0


@dataclass(slots=True)
class Ping:
    TYPE: ClassVar[str] = "ping"
    rid: int
    sent_ns: int = 0


@dataclass(slots=True)
class Pong:
    TYPE: ClassVar[str] = "pong"
    rid: int
    sent_ns: int = 0


ERROR_CODES = frozenset(
    {
        "malformed",  # not decodable / wrong shape (connection closed)
        "too_large",  # message over the size limit
        "auth",  # wrong token (connection closed)
        "version",  # unsupported protocol version (connection closed)
        "unexpected",  # message not valid in this state (e.g. a request before hello)
        "query",  # loam.errors.QueryError
        "validation",  # loam.errors.ValidationError
        "denied",  # loam.errors.PolicyDenied
        "storage",  # loam.errors.StorageError
        "closed",  # the node is closed
        "unknown_query",  # unsubscribe of a query id this peer does not hold
        "stale_clock",  # loam.errors.StaleClockError: commit stamped below a stored write; re-stamp above `clock`
        "internal",  # anything else (a bug; the message has the exception)
    }
)

Message = Union[
    Hello, Welcome, Commit, Ack, Get, GetResult, Fetch, FetchResult, Subscribe, Subscribed,
    Unsubscribe, Unsubscribed, Notify, Error, Ping, Pong,
]

MESSAGE_TYPES: dict[str, type] = {
    cls.TYPE: cls
    for cls in (
        Hello, Welcome, Commit, Ack, Get, GetResult, Fetch, FetchResult, Subscribe, Subscribed,
        Unsubscribe, Unsubscribed, Notify, Error, Ping, Pong,
    )
}

# Requests a client may send after the handshake, and the reply type of each.
REPLY_OF: dict[str, str] = {
    "hello": "welcome",
    "commit": "ack",
    "get": "get_result",
    "fetch": "fetch_result",
    "subscribe": "subscribed",
    "unsubscribe": "unsubscribed",
    "ping": "pong",
}
