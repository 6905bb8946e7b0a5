"""The harness's own tiny query evaluator, used to compute expected answers.

It implements `QuerySpec` semantics independently of any stack: one total order over
values (null < booleans < numbers < strings), a missing property compares as null, and
results are ordered by the ORDER BY keys then `id` ascending.
"""

from __future__ import annotations

from typing import Iterable, Mapping

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
        return False, (f"{len(got)} results, expected {len(expected)}"
                       f" (missing {sorted(missing)[:3]}, unexpected {sorted(extra)[:3]})")
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
