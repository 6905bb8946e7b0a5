"""Python evaluation of queries: compiled predicates, query order, keyset paging.

Semantics (shared with loam.query.sql, see docs/query-language.md): every comparison
uses the total order of loam.query.order, a missing property is null, and logic is
two-valued (`NOT e` is plain negation, never SQL's unknown).
"""

from __future__ import annotations

import heapq
import math
import operator
from collections import OrderedDict
from dataclasses import dataclass
from itertools import islice
from typing import Callable, Iterable, Literal

from loam.errors import QueryError
from loam.model import Entity, Scalar
from loam.query.ast import And, Compare, Expr, In, Not, Or, Query
from loam.query.order import (
    RANK_NUMBER,
    RANK_STRING,
    big_float_value,
    number_value,
    sort_key_func,
    value_key,
)

Predicate = Callable[[Entity], bool]

_OPS: dict[str, Callable[[object, object], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_LIMIT = 9007199254740992.0  # 2**53, see loam.query.order
_HEAP_LIMIT = 256  # below this LIMIT, heapq.nsmallest beats a full sort


def _true(_e: Entity) -> bool:
    return True


def check_literal(value: object, where: str) -> Scalar:
    """A query literal must be a JSON scalar (finite numbers only)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value  # type: ignore[return-value]
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QueryError(f"{where}: {value!r} is not a finite number; query values must be JSON numbers")
        return value
    raise QueryError(
        f"{where}: {type(value).__name__} value {value!r} is not allowed; use str, int, float, bool or null"
    )


def _rank(v: Scalar) -> int:
    if v is None:
        return 0
    if v is False:
        return 1
    if v is True:
        return 2
    return RANK_STRING if type(v) is str else value_key(v)[0]


def _compile_compare(c: Compare) -> Predicate:
    f, lit = c.field, check_literal(c.value, f"comparison on field {c.field!r}")
    opf = _OPS.get(c.op)
    if opf is None:
        raise QueryError(f"unknown comparison operator {c.op!r} on field {f!r}; use =, !=, <, <=, >, >=")
    lrank = value_key(lit)[0]

    if f == "id":  # the id is always a string
        if lrank != RANK_STRING:
            const = opf(RANK_STRING, lrank)
            return lambda e: const
        s = lit
        return lambda e: opf(e.id, s)

    if lrank == RANK_STRING:
        s = lit
        below = opf(0, 1)  # every non-string ranks below a string
        if c.op == "=":
            return lambda e: (v := e.props.get(f)).__class__ is str and v == s
        if c.op == "!=":
            return lambda e: not ((v := e.props.get(f)).__class__ is str and v == s)

        def cmp_str(e: Entity) -> bool:
            v = e.props.get(f)
            return opf(v, s) if v.__class__ is str else below

        return cmp_str

    if lrank == RANK_NUMBER:
        n = number_value(lit)  # type: ignore[arg-type]
        below, above = opf(0, 1), opf(1, 0)  # null/bools rank below numbers, strings above
        lim = _LIMIT

        def cmp_num(e: Entity) -> bool:
            v = e.props.get(f)
            t = v.__class__
            if t is int:
                return opf(v, n)
            if t is float:
                return opf(v if -lim < v < lim else big_float_value(v), n)
            if t is str:
                return above
            if t is bool or v is None:
                return below
            return opf(value_key(v), (RANK_NUMBER, n))

        return cmp_num

    # null / false / true: the rank decides everything
    if lit is None and c.op == "=":
        return lambda e: e.props.get(f) is None
    if lit is None and c.op == "!=":
        return lambda e: e.props.get(f) is not None
    if c.op == "=":
        return lambda e: e.props.get(f) is lit
    return lambda e: opf(_rank(e.props.get(f)), lrank)


def _compile_in(node: In) -> Predicate:
    f = node.field
    values = tuple(check_literal(v, f"IN list of field {f!r}") for v in node.values)
    neg = node.negated
    if f == "id":
        ids = frozenset(v for v in values if type(v) is str)
        if neg:
            return lambda e: e.id not in ids
        return lambda e: e.id in ids
    if values and all(type(v) is str for v in values):
        strs = frozenset(values)
        if neg:
            return lambda e: not ((v := e.props.get(f)).__class__ is str and v in strs)
        return lambda e: (v := e.props.get(f)).__class__ is str and v in strs
    keys = frozenset(value_key(v) for v in values)
    vk = value_key
    if neg:
        return lambda e: vk(e.props.get(f)) not in keys
    return lambda e: vk(e.props.get(f)) in keys


def _compile(expr: Expr) -> Predicate:
    if isinstance(expr, Compare):
        return _compile_compare(expr)
    if isinstance(expr, In):
        return _compile_in(expr)
    if isinstance(expr, Not):
        inner = _compile(expr.item)
        return lambda e: not inner(e)
    if isinstance(expr, (And, Or)):
        preds = tuple(_compile(x) for x in expr.items)
        is_and = isinstance(expr, And)
        if not preds:
            return _true if is_and else (lambda e: False)
        if len(preds) == 1:
            return preds[0]
        if len(preds) == 2:
            a, b = preds
            if is_and:
                return lambda e: a(e) and b(e)
            return lambda e: a(e) or b(e)
        if is_and:

            def all_of(e: Entity) -> bool:
                for p in preds:
                    if not p(e):
                        return False
                return True

            return all_of

        def any_of(e: Entity) -> bool:
            for p in preds:
                if p(e):
                    return True
            return False

        return any_of
    raise QueryError(f"not a query expression: {expr!r}")


def _cache_key(expr: Expr) -> object:
    """A structural key that, unlike AST equality, tells True from 1 (True == 1 in Python)."""
    if isinstance(expr, Compare):
        return ("c", expr.field, expr.op, type(expr.value), expr.value)
    if isinstance(expr, In):
        return ("i", expr.field, expr.negated, tuple((type(v), v) for v in expr.values))
    if isinstance(expr, Not):
        return ("n", _cache_key(expr.item))
    if isinstance(expr, (And, Or)):
        return (type(expr).__name__, tuple(_cache_key(x) for x in expr.items))
    raise QueryError(f"not a query expression: {expr!r}")


_cache: OrderedDict[object, Predicate] = OrderedDict()  # FIFO-bounded; compiling is cheap
_CACHE_SIZE = 1024


def compile_predicate(expr: Expr | None) -> Predicate:
    """Compile an expression once into nested closures: `pred(entity) -> bool`. None matches all."""
    if expr is None:
        return _true
    try:
        key = _cache_key(expr)
        hit = _cache.get(key)
    except TypeError:  # unhashable literal: compile (and fail with a clear message) uncached
        return _compile(expr)
    if hit is not None:
        return hit
    pred = _compile(expr)
    _cache[key] = pred
    if len(_cache) > _CACHE_SIZE:
        try:  # oldest-inserted first; a concurrent eviction is harmless
            _cache.popitem(last=False)
        except KeyError:
            pass
    return pred


def matches(expr: Expr | None, entity: Entity) -> bool:
    """Whether `entity` satisfies `expr` (None matches everything)."""
    return compile_predicate(expr)(entity)


def run_query(
    query: Query,
    entities: Iterable[Entity],
    *,
    after: Entity | None = None,
    limit: int | None = None,
) -> list[Entity]:
    """Matching entities in query order, starting strictly after `after`, at most `limit` of them.

    `limit` overrides `query.limit` when given.
    """
    pred = compile_predicate(query.where)
    key = sort_key_func(tuple(query.order_by))
    lim = limit if limit is not None else query.limit
    if lim is not None and (type(lim) is not int or lim < 0):
        raise QueryError(f"limit must be a non-negative int, got {lim!r}")
    if lim == 0:
        return []
    if after is None:
        matched: Iterable[Entity] = (e for e in entities if pred(e))
        if lim is not None and lim <= _HEAP_LIMIT:
            return heapq.nsmallest(lim, matched, key=key)
        out = sorted(matched, key=key)
        return out if lim is None else out[:lim]
    start = key(after)
    keyed = [(k, e) for e in entities if pred(e) and (k := key(e)) > start]
    first = operator.itemgetter(0)
    if lim is not None and lim <= _HEAP_LIMIT:
        return [e for _, e in heapq.nsmallest(lim, keyed, key=first)]
    keyed.sort(key=first)
    return [e for _, e in islice(keyed, lim)]


# --- static analysis ----------------------------------------------------------------------


def referenced_fields(expr: Expr | None) -> set[str]:
    """Every field name the expression reads (`id` included when used)."""
    out: set[str] = set()

    def walk(x: Expr) -> None:
        if isinstance(x, (Compare, In)):
            out.add(x.field)
        elif isinstance(x, Not):
            walk(x.item)
        elif isinstance(x, (And, Or)):
            for item in x.items:
                walk(item)

    if expr is not None:
        walk(expr)
    return out


@dataclass(frozen=True, slots=True)
class IndexCandidate:
    """A top-level AND conjunct an index can serve; the full predicate must still be applied.

    kind "eq": the field equals one of `values` in the total order (`values == ()`: nothing
    matches; a None in `values` means null or missing).
    kind "range": the field lies between `low` and `high` in the total order (1 = 1.0,
    cross-type: null < false < true < numbers < strings). A bound of None means unbounded
    (null is never a range bound); with no `low`, null/missing values are in the range.
    """

    kind: Literal["eq", "range"]
    field: str
    values: tuple[Scalar, ...] = ()
    low: Scalar = None
    low_inclusive: bool = False
    high: Scalar = None
    high_inclusive: bool = False

    def as_tuple(self) -> tuple:
        if self.kind == "eq":
            return ("eq", self.field, self.values)
        return ("range", self.field, self.low, self.low_inclusive, self.high, self.high_inclusive)


def conjuncts(expr: Expr | None) -> list[Expr]:
    """The top-level AND items (nested ANDs flattened)."""
    if expr is None:
        return []
    if isinstance(expr, And):
        out: list[Expr] = []
        for x in expr.items:
            out.extend(conjuncts(x))
        return out
    return [expr]


def _dedupe(values: Iterable[Scalar]) -> tuple[Scalar, ...]:
    seen: set = set()
    out = []
    for v in values:
        k = value_key(v)
        if k not in seen:
            seen.add(k)
            out.append(v)
    return tuple(out)


def index_candidates(expr: Expr | None) -> list[IndexCandidate]:
    """Index-servable top-level conjuncts, merged per field (eq sets intersected, ranges narrowed).

    One candidate per field, in order of first appearance. Only `=`, `IN` and ordered
    comparisons with a non-null literal qualify (`x <= null` is `x = null`).
    """
    eqs: dict[str, tuple[Scalar, ...]] = {}
    lows: dict[str, tuple[Scalar, bool]] = {}
    highs: dict[str, tuple[Scalar, bool]] = {}
    order: list[str] = []

    def note(f: str) -> None:
        if f not in order:
            order.append(f)

    def add_eq(f: str, values: tuple[Scalar, ...]) -> None:
        note(f)
        values = _dedupe(values)
        if f in eqs:
            keep = {value_key(v) for v in values}
            values = tuple(v for v in eqs[f] if value_key(v) in keep)
        eqs[f] = values

    for c in conjuncts(expr):
        if isinstance(c, Compare):
            v = c.value
            if c.op == "=" or (c.op == "<=" and v is None):
                add_eq(c.field, (v,))
            elif c.op in ("<", "<=", ">", ">=") and v is not None:
                note(c.field)
                inclusive = c.op in ("<=", ">=")
                table, better = (lows, operator.gt) if c.op[0] == ">" else (highs, operator.lt)
                old = table.get(c.field)
                if old is None:
                    table[c.field] = (v, inclusive)
                else:
                    kn, ko = value_key(v), value_key(old[0])
                    if better(kn, ko) or (kn == ko and not inclusive):
                        table[c.field] = (v, inclusive)
        elif isinstance(c, In) and not c.negated:
            add_eq(c.field, c.values)

    out: list[IndexCandidate] = []
    for f in order:
        low, high = lows.get(f), highs.get(f)

        def in_range(v: Scalar) -> bool:
            k = value_key(v)
            if low is not None:
                lk = value_key(low[0])
                if k < lk or (k == lk and not low[1]):
                    return False
            if high is not None:
                hk = value_key(high[0])
                if k > hk or (k == hk and not high[1]):
                    return False
            return True

        if f in eqs:
            out.append(IndexCandidate("eq", f, tuple(v for v in eqs[f] if in_range(v))))
            continue
        if low is not None and high is not None:
            lk, hk = value_key(low[0]), value_key(high[0])
            if lk > hk or (lk == hk and not (low[1] and high[1])):
                out.append(IndexCandidate("eq", f, ()))  # empty interval
                continue
        out.append(
            IndexCandidate(
                "range",
                f,
                low=None if low is None else low[0],
                low_inclusive=False if low is None else low[1],
                high=None if high is None else high[0],
                high_inclusive=False if high is None else high[1],
            )
        )
    return out
