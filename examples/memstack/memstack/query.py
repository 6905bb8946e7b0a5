"""Evaluate the harness's `QuerySpec` over in-memory rows, with the contract's semantics:
one order over values (null < booleans < numbers < strings, strings by code point), a
missing property reads as null, results ordered by the ORDER BY keys and then by id."""

from __future__ import annotations

import operator
from typing import Any, Mapping

from sprout_harness.contracts import AllOf, AnyOf, Cond, Doc, InList, Not, QuerySpec

Row = Mapping[str, Any]
RANK = {type(None): 0, bool: 1, int: 2, float: 2, str: 3}
COMPARE = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def sort_key(value: Any) -> tuple[int, Any]:
    """Where `value` sits in the one order over all values."""
    return RANK[type(value)], (0 if value is None else value)


def field(id_: str, row: Row, name: str) -> Any:
    return id_ if name == "id" else row.get(name)


def matches(pred: Any, id_: str, row: Row) -> bool:
    """Does the entity match `pred` (a `QuerySpec.where`; None matches everything)?"""
    match pred:
        case None:
            return True
        case Cond(name, op, value):
            return bool(COMPARE[op](sort_key(field(id_, row, name)), sort_key(value)))
        case InList(name, values, negated):
            hit = sort_key(field(id_, row, name)) in {sort_key(v) for v in values}
            return hit != negated
        case AllOf(items):
            return all(matches(p, id_, row) for p in items)
        case AnyOf(items):
            return any(matches(p, id_, row) for p in items)
        case Not(item):
            return not matches(item, id_, row)
    raise TypeError(f"not a predicate: {pred!r}")


def run_query(rows: Mapping[str, Row], query: QuerySpec) -> list[Doc]:
    """The result of `query` over `rows` (id -> properties), as copies."""
    ids = sorted(i for i, row in rows.items() if matches(query.where, i, row))  # by id: the tie-break
    for key in reversed(query.order_by):  # stable sorts, last key first, give the multi-key order
        ids.sort(key=lambda i: sort_key(field(i, rows[i], key.field)), reverse=key.descending)
    if query.limit is not None:
        ids = ids[: query.limit]
    return [Doc(i, dict(rows[i])) for i in ids]
