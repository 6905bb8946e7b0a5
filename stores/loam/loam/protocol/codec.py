"""Encode/decode wire messages: one JSON object per message, strictly validated.

The schema is `loam.protocol.messages`: decoding is one typed msgspec pass of the bytes
straight into those Structs (every field's type, the ranges, the tags and kinds), plus
the few rules msgspec cannot state (`_CHECKS`). Encoding turns the message into builtins
(msgspec) and writes them with orjson, `"t"` first: orjson refuses integers beyond 64
bits, as the protocol does, and writes the bytes loam has always written. Decoding keeps
any integer exact (never a float): what cannot be stored is refused further up, by name.

Wire form (see docs/protocol.md): `{"t": <type>, <fields>...}` where entities are
`[id, {props}]`, ops are `["c"|"u", collection, id, {props}]` / `["d", collection, id]`,
queries are text or an AST object. Anything that does not have the expected shape
raises `loam.errors.ProtocolError` naming the message type, what was expected and where
(msgspec's `$.path`); so does a message larger than `max_size` bytes, and one nested
deeper than MAX_DEPTH levels.
"""

from __future__ import annotations

from typing import Any, Callable

import msgspec
import orjson

from loam.errors import ProtocolError
from loam.model import CommitRecord, Delete
from loam.protocol import messages as m
from loam.query.ast import Query, expr_depth

DEFAULT_MAX_SIZE = 1 << 20  # 1 MiB

# How deeply a message may nest (its own object is level 1). Only `ctx.data` (any JSON)
# and query expressions can nest without a fixed bound; msgspec follows nesting on the C
# stack, within Python's recursion limit (1000), so the bound leaves room for the caller's
# frames. Deeper input is refused (malformed), never a RecursionError.
MAX_DEPTH = 128
MAX_EXPR_DEPTH = 64  # query expressions: the evaluators recurse through them

_dumps = orjson.dumps
_to_builtins = msgspec.to_builtins
_decode = msgspec.json.Decoder(m.Message).decode

# --- encoding ---------------------------------------------------------------


def encode(msg: m.Message, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """Bytes of `msg` (sent_ns included as is); ProtocolError if over `max_size` or not encodable."""
    if type(msg) not in _PLAIN:  # a hello or an error (a null optional field is left out), or no message
        return _encode_other(msg, max_size)
    try:
        data = _dumps(_to_builtins(msg))  # "t" first: the tag, then the fields in wire order
    except TypeError as exc:
        raise _unencodable(msg.TYPE, exc) from None
    if len(data) > max_size:
        raise _too_large(msg.TYPE, len(data), max_size)
    return data


_PLAIN = frozenset(m.MESSAGE_TYPES.values()) - set(m.OMITTED_WHEN_NONE)


def _encode_other(msg: Any, max_size: int) -> bytes:
    omit = m.OMITTED_WHEN_NONE.get(type(msg))
    if omit is None:
        raise ProtocolError(f"cannot encode {type(msg).__name__}: not a loam protocol message")
    try:
        d = _to_builtins(msg)
    except TypeError as exc:
        raise _unencodable(msg.TYPE, exc) from None
    if d[omit] is None:
        del d[omit]
    return _checked_dumps(msg.TYPE, d, max_size)


def encode_change_notify(
    query_id: str,
    commit_id: str | None,
    commit_ns: int | None,
    added: Any,
    updated: Any,
    removed: Any,
    gap_filled: int,
    clock: int,
    sent_ns: int,
    max_size: int = DEFAULT_MAX_SIZE,
) -> bytes:
    """`encode(Notify(...))` of a kind="change" notify without building the message (the
    server's hot path, once per live query per commit): the same bytes, which
    tests/test_protocol_codec.py checks. ProtocolError as `encode`."""
    d = {
        "t": "notify",
        "query_id": query_id,
        "commit_id": commit_id,
        "commit_ns": commit_ns,
        "added": [[e.id, e.props] for e in added] if added else [],
        "updated": [[e.id, e.props] for e in updated] if updated else [],
        "removed": list(removed),
        "gap_filled": gap_filled,
        "clock": clock,
        "kind": "change",
        "reason": None,
        "sent_ns": sent_ns,
    }
    try:  # _checked_dumps, inline (once per live query per commit)
        data = _dumps(d)
    except TypeError as exc:
        raise _unencodable("notify", exc) from None
    if len(data) > max_size:
        raise _too_large("notify", len(data), max_size)
    return data


def _checked_dumps(t: str, d: dict[str, Any], max_size: int) -> bytes:
    try:
        data = _dumps(d)
    except TypeError as exc:
        raise _unencodable(t, exc) from None
    if len(data) > max_size:
        raise _too_large(t, len(data), max_size)
    return data


def _unencodable(t: str, exc: Exception) -> ProtocolError:
    return ProtocolError(
        f"cannot encode {t} message: {exc} (values must be JSON scalars; integers must fit in 64 bits)"
    )


def _too_large(t: str, size: int, max_size: int) -> ProtocolError:
    return ProtocolError(
        f"{t} message is {size} bytes, over the {max_size}-byte limit; "
        "send less per message (smaller batches, LIMIT) or raise max_message_size on both ends"
    )


# --- decoding ---------------------------------------------------------------


def decode(data: bytes | str, max_size: int = DEFAULT_MAX_SIZE) -> m.Message:
    """Parse and validate one message; ProtocolError (with the reason) if it is not exactly right."""
    if len(data) > max_size:
        raise ProtocolError(f"message of {len(data)} bytes is over the {max_size}-byte limit")
    try:
        msg = _decode(data)
    except msgspec.ValidationError as exc:
        raise _refusal(data, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise _refusal(data, f"not JSON ({exc})") from None
    except RecursionError:
        # Deeper than the C stack allows from here (far beyond MAX_DEPTH): refused alike.
        raise ProtocolError(f"malformed message: nested deeper than the maximum depth ({MAX_DEPTH})") from None
    check = _CHECKS.get(type(msg))
    if check is not None:
        why = check(msg)
        if why is not None:
            raise ProtocolError(_ascii(f"malformed {msg.TYPE} message: {why}"))
    return msg


def _refusal(data: bytes | str, why: str) -> ProtocolError:
    """The error for a message msgspec refused, naming its type when it has a known one
    (the error path only: parses the bytes again)."""
    try:
        d = orjson.loads(data)
    except Exception:  # not parseable by orjson either (too deep, say): msgspec's reason stands
        return ProtocolError(_ascii(f"malformed message: {why}"))
    if type(d) is not dict:
        return ProtocolError(f"malformed message: expected a JSON object, got {_tn(d)}")
    t = d.get("t")
    if type(t) is not str or t not in m.MESSAGE_TYPES:
        return ProtocolError(
            _ascii(f"malformed message: unknown message type {_short(t)}; known: {', '.join(sorted(m.MESSAGE_TYPES))}")
        )
    return ProtocolError(_ascii(f"malformed {t} message: {why}"))


def request_id(data: bytes | str) -> int | None:
    """The request id of a message `decode` refused, when it has one in range (so the
    error reply can name the request); else None. Only for the error path: parses again."""
    try:
        d = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    v = d.get("rid") if type(d) is dict else None
    return v if type(v) is int and 0 <= v <= m.MAX_RID else None


# --- what msgspec cannot state ------------------------------------------------
#
# Each returns why the message is malformed, or None. Property names must be non-empty
# and not `id`; `ctx.data` holds any JSON, so its depth is checked here (walking it only
# when it holds an array or object); query expressions nest at most MAX_EXPR_DEPTH levels.


def _names_error(ents: Any, where: str) -> str | None:
    for e in ents:
        p = e.props
        if "id" in p or "" in p:
            i = next(i for i, e in enumerate(ents) if "id" in e.props or "" in e.props)
            return f"{where}[{i}]: property names must be non-empty and not 'id'"
    return None


def _record_error(r: CommitRecord) -> str | None:
    for c in r.changes:
        b, a = c.before, c.after
        if (b is not None and ("id" in b.props or "" in b.props)) or (
            a is not None and ("id" in a.props or "" in a.props)
        ):
            return f"record.changes: a change of {c.id!r}: property names must be non-empty and not 'id'"
    return None


def _ctx_error(data: dict[str, Any], query: str | Query | None = None) -> str | None:
    if data:
        for x in data.values():
            if type(x) is dict or type(x) is list:  # anything nested: walk it (rare)
                why = _depth_error(data)
                if why is not None:
                    return why
                break
    if type(query) is Query and query.where is not None and expr_depth(query.where) > MAX_EXPR_DEPTH:
        return f"query expression nested deeper than {MAX_EXPR_DEPTH} levels"
    return None


def _depth_error(data: dict[str, Any]) -> str | None:
    stack: list[tuple[Any, int]] = [(data, 3)]  # message -> ctx -> data
    while stack:
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"ctx.data is nested deeper than the maximum depth ({MAX_DEPTH} levels)"
        for x in v.values() if type(v) is dict else v:
            if type(x) is dict or type(x) is list:
                stack.append((x, depth + 1))
    return None


def _commit_error(msg: m.Commit) -> str | None:
    for op in msg.tx.ops:
        if type(op) is not Delete:
            p = op.props  # type: ignore[union-attr]
            if "id" in p or "" in p:
                i = msg.tx.ops.index(op)
                return f"tx.ops[{i}]: property names must be non-empty and not 'id'"
    return _ctx_error(msg.ctx.data)


def _notify_error(n: m.Notify) -> str | None:
    # once per notification received: the loops inline, the messages from _names_error
    for e in n.added:
        p = e.props
        if "id" in p or "" in p:
            return _names_error(n.added, "added")
    for e in n.updated:
        p = e.props
        if "id" in p or "" in p:
            return _names_error(n.updated, "updated")
    return None


_CHECKS: dict[type, Callable[[Any], str | None]] = {
    m.Notify: _notify_error,
    m.Ack: lambda a: _record_error(a.record),
    m.GetResult: lambda g: None if g.entity is None else _names_error((g.entity,), "entity"),  # "entity[0]"
    m.FetchResult: lambda f: _names_error(f.entities, "entities"),
    m.Subscribed: lambda s: _names_error(s.results, "results"),
    m.Commit: _commit_error,
    m.Get: lambda g: _ctx_error(g.ctx.data),
    m.Fetch: lambda f: _ctx_error(f.ctx.data, f.query),
    m.Subscribe: lambda s: _ctx_error(s.ctx.data, s.query),
}


def _tn(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _short(v: Any) -> str:
    s = ascii(v)
    return s if len(s) <= 80 else s[:77] + "..."


def _ascii(s: str) -> str:
    """`s` with anything beyond ASCII escaped. Error messages quote what the peer sent, and
    they end up in close reasons (at most 123 bytes of UTF-8) and logs."""
    return s if s.isascii() else s.encode("ascii", "backslashreplace").decode("ascii")


__all__ = ["DEFAULT_MAX_SIZE", "MAX_DEPTH", "MAX_EXPR_DEPTH", "decode", "encode", "encode_change_notify", "request_id"]
