"""The harness's own tiny query evaluator, used to compute expected answers.

It implements `QuerySpec` semantics independently of any stack: one total order over
values (null < booleans < numbers < strings), a missing property compares as null, and
results are ordered by the ORDER BY keys then `id` ascending.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Any, Iterable, Mapping

from sprout_harness.contracts.client import Doc
from sprout_harness.contracts.query import AllOf, AnyOf, Cond, InList, Not, Pred, QuerySpec, Value


def sort_key(v: Value) -> tuple[int, object]:
    if v is None:
        return (0, 0)
    if isinstance(v, bool):
        return (1, v)
    if isinstance(v, (int, float)):
        return (2, v)
    return (3, str(v))


def field_value(doc: Doc, name: str) -> Value:
    return doc.id if name == "id" else doc.props.get(name)


def matches(pred: Pred | None, doc: Doc) -> bool:
    if pred is None:
        return True
    if isinstance(pred, Cond):
        a, b = sort_key(field_value(doc, pred.field)), sort_key(pred.value)
        op = pred.op
        if op == "=":
            return a == b
        if op == "!=":
            return a != b
        if op == "<":
            return a < b
        if op == "<=":
            return a <= b
        if op == ">":
            return a > b
        if op == ">=":
            return a >= b
        raise ValueError(f"unknown operator {op!r}")
    if isinstance(pred, InList):
        a = sort_key(field_value(doc, pred.field))
        hit = any(a == sort_key(v) for v in pred.values)
        return hit != pred.negated
    if isinstance(pred, AllOf):
        return all(matches(p, doc) for p in pred.items)
    if isinstance(pred, AnyOf):
        return any(matches(p, doc) for p in pred.items)
    if isinstance(pred, Not):
        return not matches(pred.item, doc)
    raise TypeError(f"not a predicate: {pred!r}")


def order(docs: list[Doc], query: QuerySpec) -> list[Doc]:
    docs = sorted(docs, key=lambda d: d.id)
    # Stable sorts from the last key to the first give the multi-key order.
    for key in reversed(query.order_by):
        docs.sort(key=lambda d, f=key.field: sort_key(field_value(d, f)), reverse=key.descending)
    return docs


def evaluate(query: QuerySpec, docs: Iterable[Doc]) -> list[Doc]:
    """The expected result of `query` over `docs`."""
    hits = [d for d in docs if matches(query.where, d)]
    hits = order(hits, query)
    if query.limit is not None:
        hits = hits[: query.limit]
    return hits


class _Desc:
    """Reverses the comparison of a sort key (a descending ORDER BY key in an ascending list)."""

    __slots__ = ("k",)

    def __init__(self, k: tuple[int, object]) -> None:
        self.k = k

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.k == other.k

    def __lt__(self, other: _Desc) -> bool:
        return other.k < self.k


def order_key(query: QuerySpec, doc: Doc) -> tuple[Any, ...]:
    """A key whose ascending order is `query`'s order (ORDER BY keys, then id): the same
    order `order()` gives."""
    keys: list[Any] = []
    for o in query.order_by:
        k = sort_key(field_value(doc, o.field))
        keys.append(_Desc(k) if o.descending else k)
    keys.append(doc.id)
    return tuple(keys)


class OrderedResult:
    """The matches of one query over a changing set of docs, kept in query order.

    A workload that writes one doc at a time and needs the expected window after every
    write calls `put` / `remove` for the docs it changes (O(log n) plus a list insert)
    instead of re-evaluating the whole dataset: the re-evaluation allocates and walks
    every doc right before the timed write and would slow the stack's next operation by
    evicting it from the CPU caches. Same answers as `evaluate` (tests check it)."""

    def __init__(self, query: QuerySpec, docs: Iterable[Doc] = ()) -> None:
        self.query = query
        self._keys: list[tuple[Any, ...]] = []
        self._docs: dict[str, tuple[tuple[Any, ...], Doc]] = {}
        for d in docs:
            self.put(d)

    def put(self, doc: Doc) -> None:
        """`doc` was created or changed (props are copied)."""
        self.remove(doc.id)
        if matches(self.query.where, doc):
            doc = Doc(doc.id, dict(doc.props))
            k = order_key(self.query, doc)
            insort(self._keys, k)
            self._docs[doc.id] = (k, doc)

    def remove(self, id: str) -> None:
        old = self._docs.pop(id, None)
        if old is not None:
            del self._keys[bisect_left(self._keys, old[0])]

    def head(self, limit: int | None = None) -> list[Doc]:
        """The first `limit` matches (the query's own LIMIT when None)."""
        n = self.query.limit if limit is None else limit
        keys = self._keys if n is None else self._keys[:n]
        return [self._docs[k[-1]][1] for k in keys]

    def __len__(self) -> int:
        return len(self._keys)


def same_result(query: QuerySpec, got: Iterable[Doc], expected: Iterable[Doc]) -> tuple[bool, str]:
    """Compare a stack's result with the expected one; ordered iff the query has ORDER BY.

    Returns (ok, detail) where detail says what differs (counts, first differing id/props).
    """
    got, expected = list(got), list(expected)
    if not query.order_by:
        got = sorted(got, key=lambda d: d.id)
        expected = sorted(expected, key=lambda d: d.id)
    if len(got) != len(expected):
        missing = {d.id for d in expected} - {d.id for d in got}
        extra = {d.id for d in got} - {d.id for d in expected}
        return False, (
            f"{len(got)} results, expected {len(expected)}"
            f" (missing {sorted(missing)[:3]}, unexpected {sorted(extra)[:3]})"
        )
    for i, (g, e) in enumerate(zip(got, expected)):
        if g.id != e.id:
            return False, f"position {i}: got id {g.id}, expected {e.id}"
        if not same_props(g.props, e.props):
            return False, f"entity {g.id}: got {dict(g.props)}, expected {dict(e.props)}"
    return True, ""


def same_props(a: Mapping[str, Value], b: Mapping[str, Value]) -> bool:
    if a.keys() != b.keys():
        return False
    return all(sort_key(a[k]) == sort_key(b[k]) for k in a)
