"""Byte encodings shared by key-value engines (LevelDB): entity states and index keys.

State: orjson array `[values, clock, node]` for the common case (one stamp, not deleted),
else `[values, clock, node, deleted|null, {prop: [clock, node]}]`. Short arrays keep a
freshly created entity at one stamp and make `get` a single decode.

Index values are encoded so that byte order equals the query total order
(null < false < true < numbers < strings):

    null  -> 01            false -> 02          true -> 03
    number -> 04 + 8 bytes (IEEE-754 double, sign-flipped big-endian; -0.0 as 0.0)
    string -> 05 + UTF-8 with 00 escaped as 00 FF

An index key is `<prefix><encoded value>\\x00<id>`; the separator sorts before every
other byte, so a string sorts before its extensions. A compound index (several fields)
terminates every component the same way: `<prefix><enc v1>\\x00<enc v2>\\x00<id>`
(`encode_values`). The encodings are not self-delimiting on their own (a string has no
length or terminator), but with the terminator they are: a number is 9 bytes, and inside
a string a 00 byte is always followed by FF while the terminator is followed by a type
tag (01..05) or the id (UTF-8 without NUL: never 00 or FF). So a compound key decodes
one way only, and byte order is the lexicographic order of the component values.

Integers beyond 2**53 share a double with their neighbours: index scans then
over-select, and callers re-check the predicate on every fetched state (they never miss).
"""

from __future__ import annotations

import struct
from typing import Any, Mapping

import orjson

from loam.errors import ValidationError
from loam.model import EntityState, Scalar

_dumps = orjson.dumps
_loads = orjson.loads
_pack_d = struct.Struct(">d").pack
_unpack_q = struct.Struct(">Q").unpack
_pack_q = struct.Struct(">Q").pack

NULL = b"\x01"
FALSE = b"\x02"
TRUE = b"\x03"
NUM = b"\x04"
STR = b"\x05"
SEP = b"\x00"
MAX = b"\xff"


def encode_state(st: EntityState) -> bytes:
    """Compact bytes of a state (see module doc); ValidationError if a value cannot be stored."""
    try:
        if st.deleted is None and not st.stamps:
            return _dumps((st.values, st.stamp[0], st.stamp[1]))
        return _dumps((st.values, st.stamp[0], st.stamp[1], st.deleted, st.stamps))
    except TypeError as exc:
        raise unstorable(st.id, st.values, exc) from None


# What orjson (and so these engines' JSON) can hold; the model allows any int.
MIN_INT, MAX_INT = -(2**63), 2**64 - 1


def unstorable(id: str, values: Mapping[str, Any], exc: Exception) -> ValidationError:
    """The error for properties an engine's JSON cannot hold, naming the property."""
    for k, v in values.items():
        if type(v) is int and not MIN_INT <= v <= MAX_INT:
            return ValidationError(
                f"property {k!r} of {id}: {v} does not fit in 64 bits, the largest integer this storage "
                f"engine (and loam's wire protocol) holds is {MAX_INT}, the smallest {MIN_INT}; "
                "store larger numbers as strings"
            )
    return ValidationError(f"the properties of {id} cannot be stored: {exc}")


def decode_state(id: str, raw: bytes) -> EntityState:
    d = _loads(raw)
    if len(d) == 3:
        return EntityState(id, d[0], (d[1], d[2]))
    deleted = d[3]
    return EntityState(
        id,
        d[0],
        (d[1], d[2]),
        {k: (v[0], v[1]) for k, v in d[4].items()},
        (deleted[0], deleted[1]) if deleted is not None else None,
    )


def decode_visible(raw: bytes) -> dict[str, Scalar] | None:
    """The property values, or None when the state is a tombstone (the `get` fast path)."""
    d = _loads(raw)
    if len(d) == 3 or d[3] is None:
        return d[0]
    return None


def encode_value(v: Any) -> bytes:
    """Order-preserving bytes of a scalar (byte order == query total order)."""
    if v is None:
        return NULL
    if v is True:
        return TRUE
    if v is False:
        return FALSE
    if isinstance(v, (int, float)):
        try:
            f = float(v)
        except OverflowError:
            f = float("inf") if v > 0 else float("-inf")
        if f == 0.0:
            f = 0.0  # -0.0 == 0.0 must share a key
        (u,) = _unpack_q(_pack_d(f))
        u = u ^ 0xFFFFFFFFFFFFFFFF if u >> 63 else u | 0x8000000000000000
        return NUM + _pack_q(u)
    if isinstance(v, str):
        b = v.encode()
        if b"\x00" in b:
            b = b.replace(b"\x00", b"\x00\xff")
        return STR + b
    raise TypeError(f"cannot index a {type(v).__name__}")


def encode_values(values: Any) -> bytes:
    """Index key body of one entry: every component encoded and terminated by SEP
    (one component: `encode_value(v) + SEP`, the single-field layout)."""
    return b"".join(encode_value(v) + SEP for v in values)
