"""Encode/decode wire messages: one JSON object per message, strictly validated.

Encoding is orjson, `"t"` first. Decoding takes the hot messages (notify, the replies
that carry entities, commit, get) through one typed msgspec pass picked by the leading
bytes, and everything else, or anything that pass refuses, through orjson and
field-by-field readers. Encoding stays orjson because it refuses integers beyond 64
bits, as the protocol does; msgspec would write them.

Wire form (see docs/protocol.md): `{"t": <type>, <fields>...}` where entities are
`[id, {props}]`, ops are `["c"|"u", collection, id, {props}]` / `["d", collection, id]`,
queries are text or an AST object. Anything that does not have exactly the expected
shape raises `loam.errors.ProtocolError` naming the message type, the field and what
was expected; so does a message larger than `max_size` bytes.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Callable

import msgspec
import orjson

from loam.errors import ProtocolError
from loam.model import Change, CommitRecord, Context, Create, Delete, Entity, NonNegative, Op, Transaction, Update
from loam.protocol import messages as m
from loam.query.ast import And, Compare, Expr, In, Not, Or, OrderKey, Query

DEFAULT_MAX_SIZE = 1 << 20  # 1 MiB

Rid = Annotated[int, msgspec.Meta(ge=0, le=m.MAX_RID)]  # the typed pass's request id

_dumps = orjson.dumps
_loads = orjson.loads

# --- encoding ---------------------------------------------------------------


def _ent(e: Entity) -> list[Any]:
    return [e.id, e.props]


def _ents(es: Any) -> list[list[Any]]:
    return [[e.id, e.props] for e in es]


def _ctx(c: Context) -> dict[str, Any]:
    return {"user": c.user, "data": c.data}


def _op(op: Op) -> list[Any]:
    if type(op) is Create:
        return ["c", op.collection, op.id, op.props]
    if type(op) is Update:
        return ["u", op.collection, op.id, op.props]
    if type(op) is Delete:
        return ["d", op.collection, op.id]
    raise ProtocolError(f"cannot encode operation of type {type(op).__name__}; use Create, Update or Delete")


def _tx(tx: Transaction) -> dict[str, Any]:
    return {"commit_id": tx.commit_id, "node_id": tx.node_id, "clock": tx.clock, "ops": [_op(o) for o in tx.ops]}


def _record(r: CommitRecord) -> dict[str, Any]:
    return {
        "commit_id": r.commit_id,
        "node_id": r.node_id,
        "clock": r.clock,
        "durable_ns": r.durable_ns,
        "changes": [
            [c.collection, c.id, c.kind, None if c.before is None else _ent(c.before),
             None if c.after is None else _ent(c.after)]
            for c in r.changes
        ],
    }


def _expr(e: Expr) -> list[Any]:
    t = type(e)
    if t is Compare:
        return ["cmp", e.field, e.op, e.value]
    if t is In:
        return ["in", e.field, list(e.values), e.negated]
    if t is And:
        return ["and", [_expr(i) for i in e.items]]
    if t is Or:
        return ["or", [_expr(i) for i in e.items]]
    if t is Not:
        return ["not", _expr(e.item)]
    raise ProtocolError(f"cannot encode query expression of type {t.__name__}")


def _query(q: str | Query) -> Any:
    if isinstance(q, str):
        return q
    return {
        "where": None if q.where is None else _expr(q.where),
        "order_by": [[k.field, k.descending] for k in q.order_by],
        "limit": q.limit,
        "text": q.text,
    }


def _fields(msg: Any) -> dict[str, Any]:
    t = type(msg)
    if t is m.Notify:
        return {
            "query_id": msg.query_id, "commit_id": msg.commit_id, "commit_ns": msg.commit_ns,
            "added": _ents(msg.added), "updated": _ents(msg.updated), "removed": list(msg.removed),
            "gap_filled": msg.gap_filled, "clock": msg.clock, "kind": msg.kind, "reason": msg.reason,
        }
    if t is m.Commit:
        return {"rid": msg.rid, "tx": _tx(msg.tx), "ctx": _ctx(msg.ctx)}
    if t is m.Ack:
        return {"rid": msg.rid, "record": _record(msg.record), "clock": msg.clock}
    if t is m.Get:
        return {"rid": msg.rid, "collection": msg.collection, "id": msg.id, "ctx": _ctx(msg.ctx)}
    if t is m.GetResult:
        return {"rid": msg.rid, "entity": None if msg.entity is None else _ent(msg.entity), "clock": msg.clock}
    if t is m.Fetch or t is m.Subscribe:
        return {"rid": msg.rid, "collection": msg.collection, "query": _query(msg.query), "ctx": _ctx(msg.ctx)}
    if t is m.FetchResult:
        return {"rid": msg.rid, "entities": _ents(msg.entities), "clock": msg.clock}
    if t is m.Subscribed:
        return {"rid": msg.rid, "query_id": msg.query_id, "results": _ents(msg.results), "clock": msg.clock}
    if t is m.Unsubscribe or t is m.Unsubscribed:
        return {"rid": msg.rid, "query_id": msg.query_id}
    if t is m.Hello:
        d = {"rid": msg.rid, "token": msg.token, "node_id": msg.node_id, "version": msg.version}
        if msg.database is not None:  # omitted when unset: servers without databases accept it as before
            d["database"] = msg.database
        return d
    if t is m.Welcome:
        return {"rid": msg.rid, "node_id": msg.node_id, "clock": msg.clock, "version": msg.version,
                "max_size": msg.max_size}
    if t is m.Error:
        d = {"rid": msg.rid, "code": msg.code, "message": msg.message}
        if msg.clock is not None:  # only stale_clock errors carry it
            d["clock"] = msg.clock
        return d
    if t is m.Ping or t is m.Pong:
        return {"rid": msg.rid}
    raise ProtocolError(f"cannot encode {t.__name__}: not a loam protocol message")


def encode(msg: m.Message, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """Bytes of `msg` (sent_ns included as is); ProtocolError if over `max_size` or not encodable."""
    d = {"t": msg.TYPE}  # first: the decoder picks its typed pass from the leading bytes
    d.update(_fields(msg))
    d["sent_ns"] = msg.sent_ns
    return _checked_dumps(msg.TYPE, d, max_size)


def encode_change_notify(query_id: str, commit_id: str | None, commit_ns: int | None, added: Any, updated: Any,
                         removed: Any, gap_filled: int, clock: int, sent_ns: int,
                         max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """`encode(Notify(...))` of a kind="change" notify without building the message (the
    server's hot path): the same bytes. ProtocolError as `encode`."""
    d = {"t": "notify", "query_id": query_id, "commit_id": commit_id, "commit_ns": commit_ns,
         "added": [[e.id, e.props] for e in added], "updated": [[e.id, e.props] for e in updated],
         "removed": list(removed), "gap_filled": gap_filled, "clock": clock, "kind": "change", "reason": None,
         "sent_ns": sent_ns}
    return _checked_dumps("notify", d, max_size)


def _checked_dumps(t: str, d: dict[str, Any], max_size: int) -> bytes:
    try:
        data = _dumps(d)
    except TypeError as exc:
        raise ProtocolError(f"cannot encode {t} message: {exc} (values must be JSON scalars; "
                            "integers must fit in 64 bits)") from None
    if len(data) > max_size:
        raise ProtocolError(
            f"{t} message is {len(data)} bytes, over the {max_size}-byte limit; "
            "send less per message (smaller batches, LIMIT) or raise max_message_size on both ends"
        )
    return data


# --- decoding ---------------------------------------------------------------


class _Reader:
    """Field accessors that raise ProtocolError naming the message and the field."""

    __slots__ = ("t", "d")

    def __init__(self, t: str, d: dict[str, Any]):
        self.t, self.d = t, d

    def bad(self, what: str) -> ProtocolError:
        return ProtocolError(_ascii(f"malformed {self.t} message: {what}"))

    def get(self, key: str) -> Any:
        try:
            return self.d[key]
        except KeyError:
            raise self.bad(f"missing field {key!r}") from None

    def str(self, key: str) -> str:
        v = self.get(key)
        if type(v) is not str:
            raise self.bad(f"field {key!r} must be a string, got {_tn(v)}")
        return v

    def opt_str(self, key: str) -> str | None:
        v = self.get(key)
        if v is not None and type(v) is not str:
            raise self.bad(f"field {key!r} must be a string or null, got {_tn(v)}")
        return v

    def int(self, key: str) -> int:
        v = self.get(key)
        if type(v) is not int:
            raise self.bad(f"field {key!r} must be an integer, got {_tn(v)}")
        return v

    def rid(self) -> int:
        v = self.int("rid")
        if not 0 <= v <= m.MAX_RID:
            raise self.bad(f"field 'rid' must be in 0..{m.MAX_RID}, got {v}")
        return v

    def opt_int(self, key: str) -> int | None:
        v = self.get(key)
        if v is not None and type(v) is not int:
            raise self.bad(f"field {key!r} must be an integer or null, got {_tn(v)}")
        return v

    def bool(self, key: str) -> bool:
        v = self.get(key)
        if type(v) is not bool:
            raise self.bad(f"field {key!r} must be true or false, got {_tn(v)}")
        return v

    def list(self, key: str) -> list[Any]:
        v = self.get(key)
        if type(v) is not list:
            raise self.bad(f"field {key!r} must be an array, got {_tn(v)}")
        return v


def _tn(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _scalar(r: _Reader, where: str, v: Any) -> Any:
    t = type(v)
    if v is None or t is str or t is int or t is bool:
        return v
    if t is float:
        if not math.isfinite(v):  # defensive: orjson never yields these
            raise r.bad(f"{where}: {v!r} is not a finite number")
        return v
    raise r.bad(f"{where}: {_tn(v)} is not a scalar (str, int, float, bool or null)")


def _props(r: _Reader, where: str, v: Any) -> dict[str, Any]:
    if type(v) is not dict:
        raise r.bad(f"{where}: properties must be an object, got {_tn(v)}")
    for k, x in v.items():
        if not k:
            raise r.bad(f"{where}: property names must be non-empty")
        if k == "id":
            raise r.bad(f"{where}: property name 'id' is reserved")
        t = type(x)
        if not (x is None or t is str or t is int or t is bool):
            _scalar(r, f"{where}.{k}", x)
    return v


def _d_ent(r: _Reader, where: str, v: Any) -> Entity:
    if type(v) is not list or len(v) != 2 or type(v[0]) is not str:
        raise r.bad(f"{where}: an entity must be [id, {{props}}], got {_short(v)}")
    return Entity(v[0], _props(r, where, v[1]))


def _d_ents(r: _Reader, key: str) -> list[Entity]:
    return [_d_ent(r, f"{key}[{i}]", e) for i, e in enumerate(r.list(key))]


def _d_notify(r: _Reader) -> m.Notify:
    # Notifies in the form `encode` writes go through the typed pass (`_typed`); this
    # path takes any other key order, and names what is wrong when that pass said no.
    return m.Notify(
        r.str("query_id"), r.opt_str("commit_id"), r.opt_int("commit_ns"), _d_ents(r, "added"),
        _d_ents(r, "updated"), _str_list(r, "removed"), _nonneg(r, "gap_filled"), _nonneg(r, "clock"),
        _kind(r), r.opt_str("reason"), 0)


def _d_ctx(r: _Reader) -> Context:
    v = r.get("ctx")
    if type(v) is not dict or set(v) != {"user", "data"}:
        raise r.bad(f"field 'ctx' must be {{\"user\": str|null, \"data\": {{...}}}}, got {_short(v)}")
    if v["user"] is not None and type(v["user"]) is not str:
        raise r.bad("ctx.user must be a string or null")
    if type(v["data"]) is not dict:
        raise r.bad("ctx.data must be an object")
    return Context(v["user"], v["data"])


_OP_LEN = {"c": 4, "u": 4, "d": 3}


def _d_op(r: _Reader, i: int, v: Any) -> Op:
    where = f"tx.ops[{i}]"
    # `type(...) is str` before each set lookup: an array or object there is unhashable.
    if type(v) is not list or not v or type(v[0]) is not str or v[0] not in _OP_LEN or len(v) != _OP_LEN[v[0]]:
        raise r.bad(f"{where}: an op must be [\"c\"|\"u\", collection, id, {{props}}] or "
                    f"[\"d\", collection, id], got {_short(v)}")
    if type(v[1]) is not str or not v[1] or type(v[2]) is not str or not v[2]:
        raise r.bad(f"{where}: collection and id must be non-empty strings")
    if v[0] == "d":
        return Delete(v[1], v[2])
    props = _props(r, where, v[3])
    return Create(v[1], v[2], props) if v[0] == "c" else Update(v[1], v[2], props)


def _d_tx(r: _Reader) -> Transaction:
    v = r.get("tx")
    if type(v) is not dict:
        raise r.bad(f"field 'tx' must be an object, got {_tn(v)}")
    t = _Reader(r.t, v)
    ops = t.list("ops")
    if not ops:
        raise r.bad("tx.ops must not be empty")
    return Transaction(t.str("commit_id"), t.str("node_id"), _nonneg(t, "clock"),
                       tuple(_d_op(r, i, o) for i, o in enumerate(ops)))


def _nonneg(r: _Reader, key: str) -> int:
    v = r.int(key)
    if v < 0:
        raise r.bad(f"field {key!r} must be >= 0, got {v}")
    return v


_CHANGE_KINDS = frozenset({"create", "update", "delete"})


def _d_record(r: _Reader) -> CommitRecord:
    v = r.get("record")
    if type(v) is not dict:
        raise r.bad(f"field 'record' must be an object, got {_tn(v)}")
    t = _Reader(r.t, v)
    changes = []
    for i, c in enumerate(t.list("changes")):
        where = f"record.changes[{i}]"
        if (type(c) is not list or len(c) != 5 or type(c[0]) is not str or type(c[1]) is not str
                or type(c[2]) is not str or c[2] not in _CHANGE_KINDS):
            raise r.bad(f"{where}: a change must be [collection, id, kind, before, after], got {_short(c)}")
        before = None if c[3] is None else _d_ent(r, where + ".before", c[3])
        after = None if c[4] is None else _d_ent(r, where + ".after", c[4])
        changes.append(Change(c[0], c[1], c[2], before, after))
    return CommitRecord(t.str("commit_id"), t.str("node_id"), _nonneg(t, "clock"), t.int("durable_ns"),
                        tuple(changes))


_CMP_OPS = frozenset({"=", "!=", "<", "<=", ">", ">="})


def _d_expr(r: _Reader, v: Any, depth: int = 0) -> Expr:
    if depth > 64:
        raise r.bad("query expression nested deeper than 64 levels")
    if type(v) is not list or not v or type(v[0]) is not str:
        raise r.bad(f"query expression must be a tagged array, got {_short(v)}")
    tag, n = v[0], len(v)
    if tag == "cmp" and n == 4 and type(v[1]) is str and type(v[2]) is str and v[2] in _CMP_OPS:
        return Compare(v[1], v[2], _scalar(r, "query value", v[3]))
    if tag == "in" and n == 4 and type(v[1]) is str and type(v[2]) is list and type(v[3]) is bool:
        return In(v[1], tuple(_scalar(r, "query value", x) for x in v[2]), v[3])
    if tag in ("and", "or") and n == 2 and type(v[1]) is list:
        items = tuple(_d_expr(r, x, depth + 1) for x in v[1])
        return And(items) if tag == "and" else Or(items)
    if tag == "not" and n == 2:
        return Not(_d_expr(r, v[1], depth + 1))
    raise r.bad(f"bad query expression {_short(v)}")


def _d_query(r: _Reader) -> str | Query:
    v = r.get("query")
    if type(v) is str:
        return v
    if type(v) is not dict:
        raise r.bad(f"field 'query' must be query text or a query object, got {_tn(v)}")
    q = _Reader(r.t, v)
    where = q.get("where")
    order = []
    for k in q.list("order_by"):
        if type(k) is not list or len(k) != 2 or type(k[0]) is not str or type(k[1]) is not bool:
            raise r.bad(f"query.order_by entries must be [field, descending], got {_short(k)}")
        order.append(OrderKey(k[0], k[1]))
    limit = q.opt_int("limit")
    if limit is not None and limit < 0:
        raise r.bad(f"query.limit must be >= 0, got {limit}")
    return Query(None if where is None else _d_expr(r, where), tuple(order), limit, q.opt_str("text"))


def _short(v: Any) -> str:
    s = ascii(v)
    return s if len(s) <= 80 else s[:77] + "..."


def _ascii(s: str) -> str:
    """`s` with anything beyond ASCII escaped. Error messages quote what the peer sent, and
    they end up in close reasons (at most 123 bytes of UTF-8, cut by characters) and logs."""
    return s if s.isascii() else s.encode("ascii", "backslashreplace").decode("ascii")


def _str_list(r: _Reader, key: str) -> list[str]:
    v = r.list(key)
    for x in v:
        if type(x) is not str:
            raise r.bad(f"field {key!r} must be an array of strings, found {_tn(x)}")
    return v


_DECODERS: dict[str, Callable[[_Reader], Any]] = {
    "hello": lambda r: m.Hello(r.rid(), r.opt_str("token"), r.str("node_id"), r.int("version"),
                               database=r.opt_str("database") if "database" in r.d else None),
    "welcome": lambda r: m.Welcome(r.rid(), r.str("node_id"), _nonneg(r, "clock"), r.int("version"),
                                   r.int("max_size")),
    "commit": lambda r: m.Commit(r.rid(), _d_tx(r), _d_ctx(r)),
    "ack": lambda r: m.Ack(r.rid(), _d_record(r), _opt_clock(r)),
    "get": lambda r: m.Get(r.rid(), r.str("collection"), r.str("id"), _d_ctx(r)),
    "get_result": lambda r: m.GetResult(
        r.rid(), None if r.get("entity") is None else _d_ent(r, "entity", r.get("entity")), _opt_clock(r)),
    "fetch": lambda r: m.Fetch(r.rid(), r.str("collection"), _d_query(r), _d_ctx(r)),
    "fetch_result": lambda r: m.FetchResult(r.rid(), _d_ents(r, "entities"), _opt_clock(r)),
    "subscribe": lambda r: m.Subscribe(r.rid(), r.str("collection"), _d_query(r), _d_ctx(r)),
    "subscribed": lambda r: m.Subscribed(r.rid(), r.str("query_id"), _d_ents(r, "results"),
                                         _nonneg(r, "clock")),
    "unsubscribe": lambda r: m.Unsubscribe(r.rid(), r.str("query_id")),
    "unsubscribed": lambda r: m.Unsubscribed(r.rid(), r.str("query_id")),
    "notify": _d_notify,
    "error": lambda r: m.Error(None if r.get("rid") is None else r.rid(), _code(r), r.str("message"),
                               _nonneg(r, "clock") if "clock" in r.d else None),
    "ping": lambda r: m.Ping(r.rid()),
    "pong": lambda r: m.Pong(r.rid()),
}

_FIELDS: dict[str, frozenset[str]] = {
    "hello": frozenset({"rid", "token", "node_id", "version"}),
    "welcome": frozenset({"rid", "node_id", "clock", "version", "max_size"}),
    "commit": frozenset({"rid", "tx", "ctx"}),
    "ack": frozenset({"rid", "record"}),
    "get": frozenset({"rid", "collection", "id", "ctx"}),
    "get_result": frozenset({"rid", "entity"}),
    "fetch": frozenset({"rid", "collection", "query", "ctx"}),
    "fetch_result": frozenset({"rid", "entities"}),
    "subscribe": frozenset({"rid", "collection", "query", "ctx"}),
    "subscribed": frozenset({"rid", "query_id", "results", "clock"}),
    "unsubscribe": frozenset({"rid", "query_id"}),
    "unsubscribed": frozenset({"rid", "query_id"}),
    "notify": frozenset({"query_id", "commit_id", "commit_ns", "added", "updated", "removed", "gap_filled",
                         "clock", "kind", "reason"}),
    "error": frozenset({"rid", "code", "message"}),
    "ping": frozenset({"rid"}),
    "pong": frozenset({"rid"}),
}

# Fields a message may omit (older peers do not send them).
_OPTIONAL: dict[str, frozenset[str]] = {
    "hello": frozenset({"database"}),
    "ack": frozenset({"clock"}),
    "get_result": frozenset({"clock"}),
    "fetch_result": frozenset({"clock"}),
    "error": frozenset({"clock"}),
}


def _opt_clock(r: _Reader) -> int:
    """The durable node's clock on a reply; 0 (observes nothing) from a peer that omits it."""
    return _nonneg(r, "clock") if "clock" in r.d else 0


def _kind(r: _Reader) -> str:
    k = r.str("kind")
    if k not in ("change", "closed"):
        raise r.bad(f"field 'kind' must be \"change\" or \"closed\", got {k!r}")
    return k


def _code(r: _Reader) -> str:
    c = r.str("code")
    if c not in m.ERROR_CODES:
        raise r.bad(f"unknown error code {c!r}")
    return c


# --- the typed pass ----------------------------------------------------------
#
# `encode` writes `"t"` first, so the leading bytes name the type. The messages on the
# hot paths (notify, the replies that carry entities, commit and get) are decoded in one
# typed msgspec pass, which checks every field's type, the ranges and the kinds; the
# dataclass is then built from its fields.
# A message in another key order, or one the typed pass refuses, goes through the field
# readers, which either accept it or raise naming what is wrong.


class _AckW(msgspec.Struct, tag_field="t", tag="ack", forbid_unknown_fields=True, kw_only=True):
    rid: Rid
    record: CommitRecord
    clock: NonNegative = 0  # older peers omit it
    sent_ns: int


class _GetResultW(msgspec.Struct, tag_field="t", tag="get_result", forbid_unknown_fields=True, kw_only=True):
    rid: Rid
    entity: Entity | None
    clock: NonNegative = 0
    sent_ns: int


class _FetchResultW(msgspec.Struct, tag_field="t", tag="fetch_result", forbid_unknown_fields=True, kw_only=True):
    rid: Rid
    entities: list[Entity]
    clock: NonNegative = 0
    sent_ns: int


class _SubscribedW(msgspec.Struct, tag_field="t", tag="subscribed", forbid_unknown_fields=True):
    rid: Rid
    query_id: str
    results: list[Entity]
    clock: NonNegative
    sent_ns: int


class _CtxW(msgspec.Struct, forbid_unknown_fields=True):
    user: str | None
    data: dict[str, Any]


class _CommitW(msgspec.Struct, tag_field="t", tag="commit", forbid_unknown_fields=True):
    rid: Rid
    tx: Transaction
    ctx: _CtxW
    sent_ns: int


class _GetW(msgspec.Struct, tag_field="t", tag="get", forbid_unknown_fields=True):
    rid: Rid
    collection: str
    id: str
    ctx: _CtxW
    sent_ns: int


def _names_ok(ents: Any) -> bool:
    """The two property-name rules msgspec cannot express: non-empty, not `id`."""
    for e in ents:
        p = e.props
        if "id" in p or "" in p:
            return False
    return True


def _record_names_ok(r: CommitRecord) -> bool:
    return _names_ok([e for c in r.changes for e in (c.before, c.after) if e is not None])


def _commit_of(w: _CommitW) -> m.Commit | None:
    for op in w.tx.ops:
        if type(op) is not Delete and not _names_ok((op,)):
            return None
    return m.Commit(w.rid, w.tx, Context(w.ctx.user, w.ctx.data), w.sent_ns)


def _get_of(w: _GetW) -> m.Get:
    return m.Get(w.rid, w.collection, w.id, Context(w.ctx.user, w.ctx.data), w.sent_ns)


def _notify_of(w: m.Notify) -> m.Notify | None:
    return w if _names_ok(w.added) and _names_ok(w.updated) else None


def _ack_of(w: _AckW) -> m.Ack | None:
    return m.Ack(w.rid, w.record, w.clock, w.sent_ns) if _record_names_ok(w.record) else None


def _get_result_of(w: _GetResultW) -> m.GetResult | None:
    if w.entity is not None and not _names_ok((w.entity,)):
        return None
    return m.GetResult(w.rid, w.entity, w.clock, w.sent_ns)


def _fetch_result_of(w: _FetchResultW) -> m.FetchResult | None:
    return m.FetchResult(w.rid, w.entities, w.clock, w.sent_ns) if _names_ok(w.entities) else None


def _subscribed_of(w: _SubscribedW) -> m.Subscribed | None:
    return m.Subscribed(w.rid, w.query_id, w.results, w.clock, w.sent_ns) if _names_ok(w.results) else None


_TYPED: dict[bytes, tuple[msgspec.json.Decoder[Any], Callable[[Any], Any]]] = {
    b"notify": (msgspec.json.Decoder(m.Notify), _notify_of),
    b"ack": (msgspec.json.Decoder(_AckW), _ack_of),
    b"get_result": (msgspec.json.Decoder(_GetResultW), _get_result_of),
    b"fetch_result": (msgspec.json.Decoder(_FetchResultW), _fetch_result_of),
    b"subscribed": (msgspec.json.Decoder(_SubscribedW), _subscribed_of),
    b"commit": (msgspec.json.Decoder(_CommitW), _commit_of),
    b"get": (msgspec.json.Decoder(_GetW), _get_of),
}
_TYPED_HEAD = b'{"t":"'


def _typed(data: bytes) -> m.Message | None:
    """The message decoded by the typed pass, or None (not one of its types, or refused)."""
    entry = _TYPED.get(data[6:data.find(b'"', 6, 20)])
    if entry is None:
        return None
    try:
        w = entry[0].decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        # msgspec's nesting bound is lower than orjson's and surfaces as RecursionError
        # (deep `ctx.data`, deep props): the field readers accept it or name what is wrong.
        return None
    return entry[1](w)


def request_id(data: bytes | str) -> int | None:
    """The request id of a message `decode` refused, when it has one in range (so the
    error reply can name the request); else None. Only for the error path: parses again."""
    try:
        d = _loads(data)
    except orjson.JSONDecodeError:
        return None
    v = d.get("rid") if type(d) is dict else None
    return v if type(v) is int and 0 <= v <= m.MAX_RID else None


def decode(data: bytes | str, max_size: int = DEFAULT_MAX_SIZE) -> m.Message:
    """Parse and validate one message; ProtocolError (with the reason) if it is not exactly right."""
    if len(data) > max_size:
        raise ProtocolError(f"message of {len(data)} bytes is over the {max_size}-byte limit")
    if type(data) is bytes and data[:6] == _TYPED_HEAD:
        fast = _typed(data)
        if fast is not None:
            return fast
    try:
        d = _loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(_ascii(f"malformed message: not JSON ({exc})")) from None
    if type(d) is not dict:
        raise ProtocolError(f"malformed message: expected a JSON object, got {_tn(d)}")
    t = d.pop("t", None)
    dec = _DECODERS.get(t) if type(t) is str else None
    if dec is None:
        raise ProtocolError(f"malformed message: unknown message type {_short(t)}; "
                            f"known: {', '.join(sorted(_DECODERS))}")
    sent = d.pop("sent_ns", None)
    if type(sent) is not int:
        raise ProtocolError(f"malformed {t} message: field 'sent_ns' must be an integer, got {_tn(sent)}")
    if d.keys() != _FIELDS[t] and not (t in _OPTIONAL and d.keys() - _OPTIONAL[t] == _FIELDS[t]):
        extra = sorted(set(d) - _FIELDS[t] - _OPTIONAL.get(t, frozenset()))
        missing = sorted(_FIELDS[t] - set(d))
        raise ProtocolError(f"malformed {t} message: unexpected fields {_short(extra)}, missing fields {missing}")
    msg = dec(_Reader(t, d))
    msg.sent_ns = sent
    return msg
