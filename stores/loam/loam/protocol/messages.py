"""Every message of loam's wire protocol: the one wire schema (no I/O here).

Each message type is a msgspec Struct tagged by the wire field `t` (its `TYPE`), with its
fields in wire order, `sent_ns` last; the shapes inside (entities, operations,
transactions, commit records, contexts, queries) are the Structs of `loam.model` and
`loam.query.ast`, laid out like their wire forms. `loam.protocol.codec` encodes and
decodes these types directly. A field with a default may be omitted on the wire (the
receiver reads the default); every other field is required, and no other field is allowed.

Requests carry a request id `rid` chosen by the sender (0..MAX_RID); the reply echoes it. Every
message carries `sent_ns` (`time.perf_counter_ns()` when it was sent) so the receiver
can record a one-way connector delay per message type (meaningful when both ends share
a clock, i.e. one process).
Every reply to a request that reads or writes (`ack`, `get_result`, `fetch_result`,
`subscribed`) and every `notify` carries `clock`, the durable node's Lamport clock,
so the client's clock never falls far behind it.
See docs/protocol.md for the wire form.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union, get_args

import msgspec

from loam.model import CommitRecord, Context, Entity, NonNegative, Transaction
from loam.query.ast import Query

PROTOCOL_VERSION = 1

# A request id is an integer in 0..MAX_RID: exact in an IEEE double, so a client in
# any language can echo it. Decoding refuses others (`malformed`).
MAX_RID = (1 << 53) - 1
Rid = Annotated[int, msgspec.Meta(ge=0, le=MAX_RID)]

ErrorCode = Literal[
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
]
ERROR_CODES: frozenset[str] = frozenset(get_args(ErrorCode))


class _Message(msgspec.Struct, tag_field="t", forbid_unknown_fields=True, gc=False):
    """Base of the message types: tagged by `t`, strict about fields. Not tracked by the
    cycle collector: a message holds entities, operations and strings, never itself."""

    TYPE: ClassVar[str]  # the tag, set below from each class's `tag`


class Hello(_Message, tag="hello"):
    """Client -> server, first message: authenticate and introduce the client node.

    `database` names the database to use on a server hosting several (a `DatabaseHost`);
    None means "default" there, and is the only value a single-node server accepts.
    It is left out of the wire form when None (see OMITTED_WHEN_NONE)."""

    rid: Rid
    token: str | None
    node_id: str
    version: int = PROTOCOL_VERSION
    database: str | None = None
    sent_ns: int = 0


class Welcome(_Message, tag="welcome"):
    """Server -> client: handshake accepted. `clock` is the durable node's Lamport clock."""

    rid: Rid
    node_id: str
    clock: NonNegative
    version: int = PROTOCOL_VERSION
    max_size: int = 0
    sent_ns: int = 0


class Commit(_Message, tag="commit"):
    """Client -> server: apply a transaction stamped by the client node."""

    rid: Rid
    tx: Transaction
    ctx: Context = msgspec.field(default_factory=Context)
    sent_ns: int = 0


class Ack(_Message, tag="ack"):
    """Server -> client: the durable node's commit record for a `commit`; `clock` is its Lamport clock."""

    rid: Rid
    record: CommitRecord
    clock: NonNegative = 0
    sent_ns: int = 0


class Get(_Message, tag="get"):
    rid: Rid
    collection: str
    id: str
    ctx: Context = msgspec.field(default_factory=Context)
    sent_ns: int = 0


class GetResult(_Message, tag="get_result"):
    rid: Rid
    entity: Entity | None
    clock: NonNegative = 0
    sent_ns: int = 0


class Fetch(_Message, tag="fetch"):
    """`query` is query text, or a parsed Query (sent as its AST) when it has no text."""

    rid: Rid
    collection: str
    query: str | Query
    ctx: Context = msgspec.field(default_factory=Context)
    sent_ns: int = 0


class FetchResult(_Message, tag="fetch_result"):
    rid: Rid
    entities: list[Entity]
    clock: NonNegative = 0
    sent_ns: int = 0


class Subscribe(_Message, tag="subscribe"):
    rid: Rid
    collection: str
    query: str | Query
    ctx: Context = msgspec.field(default_factory=Context)
    sent_ns: int = 0


class Subscribed(_Message, tag="subscribed"):
    """Server -> client: the live query's id (server side) and its current result, in order."""

    rid: Rid
    query_id: str
    results: list[Entity]
    clock: NonNegative = 0
    sent_ns: int = 0


class Unsubscribe(_Message, tag="unsubscribe"):
    rid: Rid
    query_id: str
    sent_ns: int = 0


class Unsubscribed(_Message, tag="unsubscribed"):
    rid: Rid
    query_id: str
    sent_ns: int = 0


class Notify(_Message, tag="notify"):
    """Server -> client, unsolicited: one change to a remote live query's result.

    `kind` is "change" or "closed" (the server ended the live query; `reason` says why).
    `gap_filled` counts the entities the durable node read to refill a LIMIT window in
    this change (0: no refill).
    `clock` is the commit's Lamport clock (lets the client's clock observe it).
    Every field is required, on the wire and here.
    """

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


class Error(_Message, tag="error"):
    """A failed request (`rid` set) or a connection-level error (`rid` None, then closed).

    `code` is one of ERROR_CODES; `message` is for humans and names the fix. `clock`
    (the durable node's Lamport clock) is set for `stale_clock` only, else None (left
    out of the wire form).
    """

    rid: Rid | None
    code: ErrorCode
    message: str
    clock: NonNegative | None = None
    sent_ns: int = 0


class Ping(_Message, tag="ping"):
    rid: Rid
    sent_ns: int = 0


class Pong(_Message, tag="pong"):
    rid: Rid
    sent_ns: int = 0


Message = Union[
    Hello,
    Welcome,
    Commit,
    Ack,
    Get,
    GetResult,
    Fetch,
    FetchResult,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Notify,
    Error,
    Ping,
    Pong,
]

MESSAGE_TYPES: dict[str, type[Message]] = {}
for _cls in get_args(Message):
    _cls.TYPE = _cls.__struct_config__.tag
    MESSAGE_TYPES[_cls.TYPE] = _cls

# Optional fields written only when set: peers that predate them accept the message.
OMITTED_WHEN_NONE: dict[type[Message], str] = {Hello: "database", Error: "clock"}

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
