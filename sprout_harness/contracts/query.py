"""The harness's own small query description, handed to a stack's `fetch` / `subscribe`.

Workloads generate `QuerySpec`s; a stack either translates the structure (an adapter over a query AST
does) or parses `QuerySpec.text`, a neutral SQL-like rendering:

    where genre = 'rock' and (year >= 1990 or label in ('a', 'b')) order by year desc limit 10

Semantics a stack must honour for the queries the harness generates: a field is a property
name or `id`; results are ordered by the ORDER BY keys and then by `id` ascending; without
ORDER BY the order is not checked. The harness only generates predicates over fields every
entity of the collection has, with one value type per field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

Value = Union[str, int, float, bool, None]
CompareOp = Literal["=", "!=", "<", "<=", ">", ">="]
COMPARE_OPS: tuple[str, ...] = ("=", "!=", "<", "<=", ">", ">=")


@dataclass(frozen=True, slots=True)
class Cond:
    """`field op value`."""

    field: str
    op: CompareOp
    value: Value


@dataclass(frozen=True, slots=True)
class InList:
    """`field in (values...)`, or `not in` when `negated`."""

    field: str
    values: tuple[Value, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class AllOf:
    """Conjunction (AND)."""

    items: tuple[Pred, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    """Disjunction (OR)."""

    items: tuple[Pred, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Pred


Pred = Union[Cond, InList, AllOf, AnyOf, Not]


@dataclass(frozen=True, slots=True)
class Order:
    field: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class QuerySpec:
    """A query over one collection: optional predicate, ORDER BY keys, LIMIT.

    `kind` names the predicate family it was generated for (equality, range, in,
    and_or, order_limit, ...) so reports and error messages can say which one failed.
    """

    where: Pred | None = None
    order_by: tuple[Order, ...] = ()
    limit: int | None = None
    kind: str = "custom"

    @property
    def text(self) -> str:
        parts: list[str] = []
        if self.where is not None:
            parts.append("where " + render_pred(self.where))
        if self.order_by:
            parts.append("order by " + ", ".join(o.field + (" desc" if o.descending else "") for o in self.order_by))
        if self.limit is not None:
            parts.append(f"limit {self.limit}")
        return " ".join(parts)

    def __str__(self) -> str:
        return self.text or "(all)"


def render_value(v: Value) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return "'" + str(v).replace("'", "''") + "'"


def render_pred(p: Pred, top: bool = True) -> str:
    if isinstance(p, Cond):
        return f"{p.field} {p.op} {render_value(p.value)}"
    if isinstance(p, InList):
        return f"{p.field} {'not in' if p.negated else 'in'} (" + ", ".join(render_value(v) for v in p.values) + ")"
    if isinstance(p, Not):
        return "not (" + render_pred(p.item) + ")"
    if isinstance(p, (AllOf, AnyOf)):
        joiner = " and " if isinstance(p, AllOf) else " or "
        inner = joiner.join(render_pred(i, top=False) for i in p.items)
        return inner if top else f"({inner})"
    raise TypeError(f"not a predicate: {p!r}")
