"""The harness's `QuerySpec` -> parameterized PostgreSQL over a JSONB `props` column.

Semantics are the harness's (sprout_harness/contracts/query.py and the reference evaluator):
one total order over values, null (or a missing property) < booleans < numbers < strings;
strings compare by code point (COLLATE "C"); results ordered by the ORDER BY keys, then `id`
ascending. A JSON property is read through typed accessors (`num`, `txt`, `boo`) that are
NULL unless the property has that JSON type, plus a type `rank`; a comparison with a constant
of type T is `rank <op> rank(T) OR typed_T <op> value`. Atoms may be NULL (the accessor of
another type); that reads as false at the top of a WHERE and is coalesced under NOT, so NOT
and `not in` keep their meaning.

Values are always bound parameters; property names are inlined as SQL string literals so
that expression indexes (`index_expressions`) match the query's expressions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Sequence

from sprout_harness.contracts.query import AllOf, AnyOf, Cond, InList, Not, Pred, QuerySpec, Value

RANK_NULL, RANK_BOOL, RANK_NUMBER, RANK_STRING = 0, 1, 2, 3


def ident(name: str) -> str:
    """A double-quoted SQL identifier."""
    if not name or "\x00" in name:
        raise ValueError(f"bad SQL identifier {name!r}")
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A SQL string literal (standard_conforming_strings, the server default since 9.1)."""
    if "\x00" in text:
        raise ValueError(f"a property name cannot contain NUL: {text!r}")
    return "'" + text.replace("'", "''") + "'"


# --- typed accessors ------------------------------------------------------------------------


def _json(name: str) -> str:
    return f"(props -> {literal(name)})"


def rank(name: str) -> str:
    if name == "id":
        return str(RANK_STRING)
    return (
        f"(CASE jsonb_typeof({_json(name)}) WHEN 'boolean' THEN {RANK_BOOL} WHEN 'number' THEN {RANK_NUMBER} "
        f"WHEN 'string' THEN {RANK_STRING} WHEN 'object' THEN 4 WHEN 'array' THEN 4 ELSE {RANK_NULL} END)"
    )


def txt(name: str) -> str:
    if name == "id":
        return 'id COLLATE "C"'
    return f"((CASE WHEN jsonb_typeof({_json(name)}) = 'string' THEN props ->> {literal(name)} END) COLLATE \"C\")"


def num(name: str) -> str:
    if name == "id":
        return "NULL::numeric"
    return f"(CASE WHEN jsonb_typeof({_json(name)}) = 'number' THEN {_json(name)}::numeric END)"


def boo(name: str) -> str:
    if name == "id":
        return "NULL::boolean"
    return f"(CASE WHEN jsonb_typeof({_json(name)}) = 'boolean' THEN {_json(name)}::boolean END)"


def index_expressions(name: str) -> list[str]:
    """Expressions worth a btree index for property `name`: equality and range on strings and
    numbers; the type rank lets a range's `rank < r OR typed < v` use a BitmapOr."""
    return [txt(name), num(name), rank(name)]


# --- predicates -----------------------------------------------------------------------------


@dataclass
class Params:
    """Bound values, in placeholder order."""

    values: list[Any] = field(default_factory=list)

    def add(self, v: Value) -> str:
        if isinstance(v, bool):
            self.values.append(v)
            return "%s::boolean"
        if isinstance(v, int):
            self.values.append(v)
            return "%s::numeric"
        if isinstance(v, float):
            # repr round-trips and is what the JSON text holds, so equality is exact.
            self.values.append(Decimal(repr(v)))
            return "%s::numeric"
        if isinstance(v, str):
            self.values.append(v)
            return "%s::text"
        raise TypeError(f"unsupported query value {v!r} ({type(v).__name__}); allowed: str, int, float, bool, None")


def _value_rank(v: Value) -> int:
    if v is None:
        return RANK_NULL
    if isinstance(v, bool):
        return RANK_BOOL
    if isinstance(v, (int, float)):
        return RANK_NUMBER
    return RANK_STRING


def _typed(name: str, r: int) -> str:
    return {RANK_BOOL: boo, RANK_NUMBER: num, RANK_STRING: txt}[r](name)


def _cond(c: Cond, p: Params) -> str:
    r = _value_rank(c.value)
    rk = rank(c.field)
    if c.value is None:
        return {"=": f"{rk} = 0", "<=": f"{rk} = 0", "!=": f"{rk} <> 0", ">": f"{rk} <> 0", "<": "FALSE", ">=": "TRUE"}[
            c.op
        ]
    typed = _typed(c.field, r)
    ph = p.add(c.value)
    if c.op == "=":
        return f"({typed} = {ph})"
    if c.op == "!=":
        return f"({typed} IS DISTINCT FROM {ph})"
    if c.op in ("<", "<="):
        return f"({rk} < {r} OR {typed} {c.op} {ph})"
    if c.op in (">", ">="):
        return f"({rk} > {r} OR {typed} {c.op} {ph})"
    raise ValueError(f"unknown operator {c.op!r} in {c!r}")


def where_sql(pred: Pred | None, p: Params) -> str:
    """A boolean SQL expression for `pred` (NULL means false; see the module docstring)."""
    if pred is None:
        return "TRUE"
    if isinstance(pred, Cond):
        return _cond(pred, p)
    if isinstance(pred, InList):
        if not pred.values:
            inner = "FALSE"
        else:
            inner = "(" + " OR ".join(_cond(Cond(pred.field, "=", v), p) for v in pred.values) + ")"
        return f"(NOT COALESCE({inner}, FALSE))" if pred.negated else inner
    if isinstance(pred, AllOf):
        return "(" + " AND ".join(where_sql(i, p) for i in pred.items) + ")" if pred.items else "TRUE"
    if isinstance(pred, AnyOf):
        return "(" + " OR ".join(where_sql(i, p) for i in pred.items) + ")" if pred.items else "FALSE"
    if isinstance(pred, Not):
        return f"(NOT COALESCE({where_sql(pred.item, p)}, FALSE))"
    raise TypeError(f"not a harness predicate: {pred!r}")


def order_sql(q: QuerySpec) -> str:
    """ORDER BY list: each key by type rank then typed value, finally `id` ascending."""
    parts: list[str] = []
    for o in q.order_by:
        d = "DESC" if o.descending else "ASC"
        if o.field == "id":
            parts.append(f'id COLLATE "C" {d}')
            continue
        parts += [f"{rank(o.field)} {d}", f"{num(o.field)} {d}", f"{txt(o.field)} {d}", f"{boo(o.field)} {d}"]
    parts.append('id COLLATE "C" ASC')
    return ", ".join(parts)


def select_sql(table: str, q: QuerySpec) -> tuple[str, list[Any]]:
    """`SELECT id, props` for `q` over `table` (an already quoted, qualified name)."""
    p = Params()
    text = f"SELECT id, props FROM {table} WHERE {where_sql(q.where, p)}"
    if q.order_by or q.limit is not None:
        text += f" ORDER BY {order_sql(q)}"
    if q.limit is not None:
        if q.limit < 0:
            raise ValueError(f"LIMIT must be >= 0, got {q.limit} in `{q.text}`")
        text += f" LIMIT {int(q.limit)}"
    return text, p.values


def match_sql(table: str, preds: Sequence[Pred | None]) -> tuple[str, list[Any]]:
    """Current rows of some ids plus one hit flag per predicate: the listener's one query per batch.

    The ids array is the last parameter.
    """
    p = Params()
    flags = "".join(f", COALESCE({where_sql(pr, p)}, FALSE)" for pr in preds)
    text = f"SELECT id, props{flags} FROM {table} WHERE id = ANY(%s::text[])"
    return text, p.values
