"""The query AST shared by the parser, the Python evaluator and the SQL compiler.

A field name refers to an entity property; the reserved name `id` is the entity id.
A missing property compares as null. Values of different types compare by the one
total order documented in docs/query-language.md (null < booleans < numbers < strings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

from loam.model import Scalar

CompareOp = Literal["=", "!=", "<", "<=", ">", ">="]


@dataclass(frozen=True, slots=True)
class Compare:
    field: str
    op: CompareOp
    value: Scalar


@dataclass(frozen=True, slots=True)
class In:
    field: str
    values: tuple[Scalar, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Expr


Expr = Union[Compare, In, And, Or, Not]


@dataclass(frozen=True, slots=True)
class OrderKey:
    field: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query. `order_by` is what the user wrote; every engine breaks ties by id ascending."""

    where: Expr | None = None
    order_by: tuple[OrderKey, ...] = ()
    limit: int | None = None
    # the source text when parsed, for messages and reports; not part of equality
    text: str | None = field(default=None, compare=False)
