"""loam's data model: scalars, entities, write operations, LWW state, commit records,
and the values every layer passes around: a request's `Context`, a live query's `Notification`.

State per property is last-writer-wins by its `Stamp` (Lamport clock, node id):
the higher stamp wins, ties are impossible because node ids differ. Deletes are
tombstones and win over any update (a deleted entity never comes back), which keeps
merge commutative, associative and idempotent.
"""

from __future__ import annotations

import math
import os
import re
import time
from typing import Annotated, Any, Awaitable, Callable, Literal, Sequence, Union

import msgspec

from loam.errors import ValidationError

Scalar = Union[str, int, float, bool, None]
SCALAR_TYPES = (str, int, float, bool, type(None))

# A stamp orders writes: (lamport clock, writing node id).
Stamp = tuple[int, str]

RESERVED_FIELDS = frozenset({"id"})

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class IdGenerator:
    """Entity ids: 26 chars of Crockford base32, 48-bit millisecond time + 80-bit tail.

    Sortable by creation time, unique across nodes (random tail), and strictly
    increasing within one generator (the tail is incremented inside a millisecond).
    """

    __slots__ = ("_last_ms", "_last_tail")

    def __init__(self) -> None:
        self._last_ms = -1
        self._last_tail = 0

    def new(self) -> str:
        ms = time.time_ns() // 1_000_000
        if ms <= self._last_ms:
            ms = self._last_ms
            tail = self._last_tail + 1
        else:
            tail = int.from_bytes(os.urandom(10), "big") >> 1  # room to increment
        self._last_ms, self._last_tail = ms, tail
        n = (ms << 80) | (tail & ((1 << 80) - 1))
        out = []
        for _ in range(26):
            out.append(_CROCKFORD[n & 31])
            n >>= 5
        return "".join(reversed(out))

    def new_many(self, n: int) -> list[str]:
        """`n` ids at once: same format and guarantees as `new`, a fraction of the cost.

        Consecutive tails only differ in their low characters: the time prefix and the
        tail's upper 70 bits are encoded once per 1024 ids, the low 10 bits by table.
        """
        if n <= 0:
            return []
        ms = time.time_ns() // 1_000_000
        if ms <= self._last_ms:
            ms = self._last_ms
            tail = self._last_tail + 1
        else:
            tail = int.from_bytes(os.urandom(10), "big") >> 1
        self._last_ms, self._last_tail = ms, tail + n - 1
        mask = (1 << 80) - 1
        prefix = _encode(ms, 10)
        low = _LOW10
        out: list[str] = []
        hi_of = -1
        head = ""
        for i in range(n):
            t = (tail + i) & mask
            hi = t >> 10
            if hi != hi_of:
                hi_of, head = hi, prefix + _encode(hi, 14)
            out.append(head + low[t & 1023])
        return out


def _encode(v: int, chars: int) -> str:
    return "".join(_CROCKFORD[(v >> (5 * k)) & 31] for k in range(chars - 1, -1, -1))


_LOW10 = [_CROCKFORD[i >> 5] + _CROCKFORD[i & 31] for i in range(1024)]


# The syntax of entity ids and collection names a server accepts from the wire
# (docs/protocol.md, "Ids and collection names"). Generated ids (IdGenerator: 26 chars
# of Crockford base32), node ids and the usual key forms (`user:42`, `shared-7`, UUIDs)
# fit; path separators, whitespace, control characters and NUL (a storage key
# separator) do not.
MAX_ID_LENGTH = 128
MAX_COLLECTION_LENGTH = 64
_ID_RE = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.:-]{{0,{MAX_ID_LENGTH - 1}}}")
_COLLECTION_RE = re.compile(rf"[A-Za-z_][A-Za-z0-9_-]{{0,{MAX_COLLECTION_LENGTH - 1}}}")


def id_error(id: object) -> str | None:
    """Why `id` is not a valid entity id, or None: 1-128 characters of A-Z, a-z, 0-9,
    `_`, `-`, `.`, `:`, the first a letter, digit or `_`."""
    # Generated ids are plain alphanumerics: two C-level checks, no regex.
    if type(id) is str and len(id) <= MAX_ID_LENGTH and id.isascii() and id.isalnum():
        return None
    if type(id) is str and _ID_RE.fullmatch(id):
        return None
    return (
        f"entity id {_short_repr(id)} is invalid: use 1-{MAX_ID_LENGTH} characters of A-Z, a-z, 0-9, "
        "'_', '-', '.', ':', starting with a letter, digit or '_'"
    )


def collection_error(name: object) -> str | None:
    """Why `name` is not a valid collection name, or None: 1-64 characters of A-Z, a-z,
    0-9, `_`, `-`, the first a letter or `_`."""
    if type(name) is str and _COLLECTION_RE.fullmatch(name):
        return None
    return (
        f"collection name {_short_repr(name)} is invalid: use 1-{MAX_COLLECTION_LENGTH} characters of "
        "A-Z, a-z, 0-9, '_', '-', starting with a letter or '_'"
    )


def _short_repr(v: object) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def new_node_id() -> str:
    """A random node id (16 hex chars); node ids break LWW ties, so they must differ."""
    return os.urandom(8).hex()


def check_scalar(name: str, value: object) -> Scalar:
    """Validate one property value: JSON scalars only, finite numbers only."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise_validation(f"property {name!r}: {value!r} is not a finite number (JSON has no NaN/Infinity)")
        return value
    raise_validation(f"property {name!r}: {type(value).__name__} is not allowed; use str, int, float, bool or null")
    raise AssertionError  # unreachable


def check_props(props: dict[str, object]) -> dict[str, Scalar]:
    """Validate a property dict (names: non-empty str, not reserved; values: scalars).

    This runs once per created entity, on the hot path of batched creates: the common
    case is one pass of identity checks; anything unusual takes the exact per-item
    path, which also builds the error message.
    """
    if type(props) is dict and "" not in props and "id" not in props:
        isfinite = math.isfinite
        for k, v in props.items():
            t = type(v)
            if type(k) is not str:
                break
            # type(v) is float is checked by identity (the fast way), which mypy does not narrow
            if t is str or t is int or t is bool or v is None or (t is float and isfinite(v)):  # type: ignore[arg-type]
                continue
            break
        else:
            return props  # type: ignore[return-value]
    return _check_props_slow(props)


def checked_copies(batch: Sequence[object]) -> list[dict[str, Scalar]]:
    """`[dict(check_props(p)) for p in batch]` in one call (a batched create's hot loop):
    the same checks; the first property dict refused raises check_props' ValidationError,
    prefixed with its index in the batch ("entity #k of the batch: ...")."""
    out: list[dict[str, Scalar]] = []
    append = out.append
    isfinite = math.isfinite
    for props in batch:
        if type(props) is dict and "" not in props and "id" not in props:
            for k, v in props.items():
                t = type(v)
                if type(k) is not str:
                    break
                if t is str or t is int or t is bool or v is None or (t is float and isfinite(v)):
                    continue
                break
            else:
                append(dict(props))
                continue
        try:
            append(dict(_check_props_slow(props)))  # type: ignore[arg-type]
        except ValidationError as exc:
            raise ValidationError(f"entity #{len(out)} of the batch: {exc}") from None
    return out


def _check_props_slow(props: dict[str, object]) -> dict[str, Scalar]:
    if not isinstance(props, dict):
        raise_validation(f"properties must be a dict, got {type(props).__name__}")
    for k, v in props.items():
        if not isinstance(k, str) or not k:
            raise_validation(f"property names must be non-empty strings, got {k!r}")
        if k in RESERVED_FIELDS:
            raise_validation(f"property name {k!r} is reserved (the entity id is `id`)")
        if v is not None and type(v) not in (str, int, bool):
            check_scalar(k, v)
    return props  # type: ignore[return-value]


def raise_validation(message: str) -> None:
    raise ValidationError(message)


class Entity(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, gc=False):
    """A visible entity: its id and current property values.

    A msgspec Struct laid out as an array, so the wire form `[id, {props}]` decodes
    straight into entities (no intermediate lists). Not tracked by the cycle
    collector: it only ever holds a str and a dict of scalars.
    """

    id: str
    props: dict[str, Scalar]

    def get(self, name: str) -> Scalar:
        return self.id if name == "id" else self.props.get(name)


# --- write operations -------------------------------------------------------


NonNegative = Annotated[int, msgspec.Meta(ge=0)]

# Laid out as their wire form (`["c"|"u", collection, id, {props}]`, `["d", collection, id]`):
# tagged array-like msgspec Structs, so a transaction decodes straight into them.
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class Create(msgspec.Struct, frozen=True, array_like=True, tag="c", forbid_unknown_fields=True, gc=False):
    collection: NonEmpty
    id: NonEmpty
    props: dict[str, Scalar]


class Update(msgspec.Struct, frozen=True, array_like=True, tag="u", forbid_unknown_fields=True, gc=False):
    """Sets the given properties (a partial update); others keep their values."""

    collection: NonEmpty
    id: NonEmpty
    props: dict[str, Scalar]


class Delete(msgspec.Struct, frozen=True, array_like=True, tag="d", forbid_unknown_fields=True, gc=False):
    collection: NonEmpty
    id: NonEmpty


Op = Union[Create, Update, Delete]


class Transaction(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """Operations applied atomically, stamped by the node that originated them.

    `commit_id` is unique (the originating node's id plus a sequence) so a durable
    node can recognise a transaction re-sent after a reconnect.
    """

    commit_id: str
    node_id: str
    clock: NonNegative
    ops: Annotated[tuple[Op, ...], msgspec.Meta(min_length=1)]


# --- LWW state --------------------------------------------------------------


class EntityState(msgspec.Struct, gc=False):
    """Stored state of one entity.

    `values` holds every property ever set (null included); `stamp` is the stamp of
    the creating write; `stamps` only lists properties whose stamp differs from it
    (so a freshly created entity stores one stamp); `deleted` is the tombstone stamp.
    A msgspec Struct (built in C): one is made per entity of every write and every read.
    """

    id: str
    values: dict[str, Scalar]
    stamp: Stamp
    stamps: dict[str, Stamp] = msgspec.field(default_factory=dict)
    deleted: Stamp | None = None

    def stamp_of(self, name: str) -> Stamp:
        return self.stamps.get(name, self.stamp)

    def visible(self) -> Entity | None:
        return None if self.deleted is not None else Entity(self.id, self.values)

    def merge_write(self, props: dict[str, Scalar], stamp: Stamp) -> dict[str, Scalar]:
        """Apply a property write under LWW; return the properties that changed value."""
        changed: dict[str, Scalar] = {}
        for k, v in props.items():
            if k in self.values and self.stamp_of(k) >= stamp:
                continue
            if k not in self.values or self.values[k] != v or type(self.values[k]) is not type(v):
                changed[k] = v
            self.values[k] = v
            if stamp == self.stamp:
                self.stamps.pop(k, None)
            else:
                self.stamps[k] = stamp
        return changed

    def merge_delete(self, stamp: Stamp) -> bool:
        """Tombstone; the earliest tombstone stamp is kept so merge order never matters."""
        if self.deleted is None or stamp < self.deleted:
            first = self.deleted is None
            self.deleted = stamp
            return first
        return False

    def merge_state(self, other: EntityState) -> None:
        """Merge a whole state (used when syncing caches): commutative and idempotent."""
        for k, v in other.values.items():
            st = other.stamp_of(k)
            if k not in self.values or self.stamp_of(k) < st:
                self.values[k] = v
                if st == self.stamp:
                    self.stamps.pop(k, None)
                else:
                    self.stamps[k] = st
        if other.deleted is not None:
            self.merge_delete(other.deleted)


# --- commits ----------------------------------------------------------------


ChangeKind = Literal["create", "update", "delete"]


class Change(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, gc=False):
    """What a commit did to one entity, as live queries need it.

    Laid out as an array, like its wire form `[collection, id, kind, before, after]`."""

    collection: str
    id: str
    kind: ChangeKind
    before: Entity | None  # visible state before the commit (None if absent/deleted)
    after: Entity | None  # visible state after the commit (None if deleted)


class CommitRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """Returned by a commit: its id, stamp and the monotonic time it became durable.

    `durable_ns` is `time.perf_counter_ns()` taken right after storage acknowledged
    the write, so commit -> notification lag is measured on one clock.
    """

    commit_id: str
    node_id: str
    clock: NonNegative
    durable_ns: int
    changes: tuple[Change, ...] = ()


# --- requests and notifications ----------------------------------------------


class Context(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Who is asking: passed to the policy agent on every read and write.

    A msgspec Struct laid out like its wire form `{"user": str|null, "data": {...}}`."""

    user: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class Notification(msgspec.Struct, gc=False):
    """One change to a live query's result (read-only by convention: listeners share it).

    `added` entities entered the result, `updated` ones stayed but changed, `removed`
    ids left it. `commit_ns` is the commit's `durable_ns` (perf_counter_ns on the
    durable node's clock; same process => same clock) and `received_ns` is when this
    node delivered it, so lag = received_ns - commit_ns. `kind` is "change" for
    commits, "resubscribed" after a reconnect (the result was re-read), "closed" when
    the live query ends (`reason` says why). `gap_filled` counts the `added` entities
    that were read from storage to refill a LIMIT window that had lost members.

    A msgspec Struct: one is built per live query per commit on the notification path,
    and a Struct is built in C (~0.1 us, against ~0.5 us for a slots dataclass called
    with keywords). Not tracked by the cycle collector: it holds entities and strings.
    """

    query_id: str
    commit_id: str | None
    commit_ns: int | None
    received_ns: int
    added: tuple[Entity, ...] = ()
    updated: tuple[Entity, ...] = ()
    removed: tuple[str, ...] = ()
    kind: str = "change"
    reason: str | None = None
    gap_filled: int = 0


NotificationCallback = Callable[[Notification], Union[None, Awaitable[None]]]
