"""The query AST shared by the parser, the Python evaluator and the SQL compiler.

A field name refers to an entity property; the reserved name `id` is the entity id.
A missing property compares as null. Values of different types compare by the one
total order documented in docs/query-language.md (null < booleans < numbers < strings).

The nodes are frozen msgspec Structs laid out like their wire form (docs/protocol.md):
an expression is a tagged array (`["cmp", field, op, value]`, `["in", field, [values],
negated]`, `["and", [expr...]]`, `["or", [expr...]]`, `["not", expr]`), an order key
`[field, descending]`, a query `{"where", "order_by", "limit", "text"}`; so the protocol
decodes a query straight into them.
"""

from __future__ import annotations

from typing import Any, Literal, Union

import msgspec

from loam.model import NonNegative, Scalar

CompareOp = Literal["=", "!=", "<", "<=", ">", ">="]


class Compare(msgspec.Struct, frozen=True, array_like=True, tag="cmp", forbid_unknown_fields=True):
    field: str
    op: CompareOp
    value: Scalar


class In(msgspec.Struct, frozen=True, array_like=True, tag="in", forbid_unknown_fields=True):
    field: str
    values: tuple[Scalar, ...]
    negated: bool = False


class And(msgspec.Struct, frozen=True, array_like=True, tag="and", forbid_unknown_fields=True):
    items: tuple[Expr, ...]


class Or(msgspec.Struct, frozen=True, array_like=True, tag="or", forbid_unknown_fields=True):
    items: tuple[Expr, ...]


class Not(msgspec.Struct, frozen=True, array_like=True, tag="not", forbid_unknown_fields=True):
    item: Expr


Expr = Union[Compare, In, And, Or, Not]


class OrderKey(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    field: str
    descending: bool = False


class Query(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A parsed query. `order_by` is what the user wrote; every engine breaks ties by id ascending.

    `text` is the source text when parsed, for messages and reports; it is not part of
    equality or the hash (the same query written twice is the same query)."""

    where: Expr | None = None
    order_by: tuple[OrderKey, ...] = ()
    limit: NonNegative | None = None
    text: str | None = None

    def __eq__(self, other: Any) -> bool:
        if type(other) is not Query:
            return NotImplemented
        return self.where == other.where and self.order_by == other.order_by and self.limit == other.limit

    def __hash__(self) -> int:
        return hash((self.where, self.order_by, self.limit))


def expr_depth(expr: Expr) -> int:
    """How deeply `expr` nests (a comparison is 1), without recursion: the wire bounds it."""
    deepest = 0
    stack: list[tuple[Expr, int]] = [(expr, 1)]
    while stack:
        e, d = stack.pop()
        deepest = max(deepest, d)
        t = type(e)
        if t is And or t is Or:
            stack.extend((i, d + 1) for i in e.items)  # type: ignore[union-attr]
        elif t is Not:
            stack.append((e.item, d + 1))  # type: ignore[union-attr]
    return deepest
