"""The one total order over property values, and sort keys for query order.

    null < false < true < numbers < strings

Numbers compare numerically across int and float (1 = 1.0); a bool is not a
number. Strings compare by Unicode code point. A missing property is null.

Floats are compared by the value of their shortest decimal representation (what
JSON, and so PostgreSQL's jsonb, stores). Below 2**53 in magnitude that is exactly
Python's own int/float comparison; above it, a float is compared as the integer its
repr denotes, so `1e23 = 100000000000000000000000` holds here exactly as in SQL.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Any, Callable

from loam.errors import QueryError
from loam.model import Entity, Scalar
from loam.query.ast import OrderKey

# Type ranks of the total order.
RANK_NULL, RANK_FALSE, RANK_TRUE, RANK_NUMBER, RANK_STRING = 0, 1, 2, 3, 4

_NULL_KEY = (RANK_NULL, 0)
_FALSE_KEY = (RANK_FALSE, 0)
_TRUE_KEY = (RANK_TRUE, 0)
_EXACT_FLOAT_LIMIT = 9007199254740992.0  # 2**53: every int of smaller magnitude is a float


def big_float_value(v: float) -> int:
    """The integer a float of magnitude >= 2**53 denotes in its shortest decimal repr."""
    return int(Decimal(repr(v)))


def number_value(v: int | float) -> int | float:
    """A number normalised for comparison (see the module docstring)."""
    if type(v) is float and not (-_EXACT_FLOAT_LIMIT < v < _EXACT_FLOAT_LIMIT):
        return big_float_value(v)
    return v


def value_key(v: Scalar) -> tuple:
    """(rank, comparable): tuples that compare like the values in the total order."""
    t = type(v)
    if t is str:
        return (RANK_STRING, v)
    if t is int:
        return (RANK_NUMBER, v)
    if t is float:
        return (RANK_NUMBER, v if -_EXACT_FLOAT_LIMIT < v < _EXACT_FLOAT_LIMIT else big_float_value(v))  # type: ignore[operator]
    if v is None:
        return _NULL_KEY
    if t is bool:
        return _TRUE_KEY if v else _FALSE_KEY
    # Subclasses of the scalar types (rare: entities hold plain values).
    if isinstance(v, bool):
        return _TRUE_KEY if v else _FALSE_KEY
    if isinstance(v, (int, float)):
        return value_key(int(v) if isinstance(v, int) else float(v))
    if isinstance(v, str):
        return (RANK_STRING, str(v))
    raise QueryError(f"cannot compare a {type(v).__name__} value ({v!r}); values are str, int, float, bool or null")


def value_rank(v: Scalar) -> int:
    return value_key(v)[0]


class Desc:
    """Wraps a key so that it sorts in reverse (for DESC order keys)."""

    __slots__ = ("k",)

    def __init__(self, k: Any) -> None:
        self.k = k

    def __lt__(self, other: Desc) -> bool:
        return self.k > other.k

    def __gt__(self, other: Desc) -> bool:
        return self.k < other.k

    def __le__(self, other: Desc) -> bool:
        return self.k >= other.k

    def __ge__(self, other: Desc) -> bool:
        return self.k <= other.k

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Desc) and self.k == other.k

    def __hash__(self) -> int:
        return hash(self.k)

    def __repr__(self) -> str:
        return f"Desc({self.k!r})"


def _id_key(e: Entity) -> str:
    return e.id


@lru_cache(maxsize=1024)
def sort_key_func(order_by: tuple[OrderKey, ...]) -> Callable[[Entity], Any]:
    """A key function for `sorted()` giving the query order: ORDER BY keys, then id ascending.

    Keys of different entities are never equal (ids differ), so the order is total. A key
    is one flat tuple, `(rank, value)` per ORDER BY key then the id, because LIMIT windows
    keep one per member: a descending key negates rank and number (only a string needs a
    `Desc` wrapper), and a nested `(rank, value)` tuple per key would cost ~50 bytes more
    each. Two keys compare the same either way: at each position the ranks decide first,
    and only values of the same rank, so of the same kind, are ever compared.
    """
    order_by = tuple(order_by)
    if not order_by:
        return _id_key
    vk = value_key
    if len(order_by) == 1:
        (k,) = order_by
        f = k.field
        if f == "id":
            return _id_key if not k.descending else (lambda e: Desc(e.id))
        if not k.descending:

            def asc1(e: Entity) -> tuple:
                r, c = vk(e.props.get(f))
                return (r, c, e.id)

            return asc1

        def desc1(e: Entity) -> tuple:
            r, c = vk(e.props.get(f))
            return (-r, Desc(c) if type(c) is str else -c, e.id)

        return desc1

    parts = tuple((k.field, k.descending) for k in order_by)

    def key(e: Entity) -> tuple:
        props = e.props
        out: list[Any] = []
        for f, desc in parts:
            r, c = vk(e.id if f == "id" else props.get(f))
            if desc:
                out += (-r, Desc(c) if type(c) is str else -c)
            else:
                out += (r, c)
        out.append(e.id)
        return tuple(out)

    return key


def compare_position(order_by: tuple[OrderKey, ...], a: Entity, b: Entity) -> int:
    """-1, 0 or 1 as `a` comes before, at (same id) or after `b` in the query order."""
    key = sort_key_func(tuple(order_by))
    ka, kb = key(a), key(b)
    return (ka > kb) - (ka < kb)
