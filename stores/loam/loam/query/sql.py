"""Compile queries to parameterized PostgreSQL over `(id text COLLATE "C", doc jsonb)`.

The SQL implements exactly the Python semantics of loam.query.evaluate (see
docs/query-language.md): the total order null < false < true < numbers < strings,
missing = null, two-valued logic, ties broken by id. Every generated predicate is
TRUE or FALSE, never SQL NULL, so `NOT` is plain negation.

Values only ever travel as `%s` parameters (jsonb ones as `psycopg.types.json.Jsonb`).
Field names are written as SQL string literals (`doc -> 'year'`), quoted here, so that
the planner sees the same constant expression as an index on `((doc -> 'year'))`.
Always pass the returned params list (even when empty) to `cursor.execute`: `%` in
field names is written as `%%`, which psycopg only un-doubles when params are given.
"""

from __future__ import annotations

from typing import Sequence

from psycopg.types.json import Jsonb

from loam.errors import QueryError
from loam.model import Entity, Scalar
from loam.query.ast import And, Compare, Expr, In, Not, Or, OrderKey, Query
from loam.query.evaluate import _OPS, IndexCandidate, check_literal, conjuncts, index_candidates
from loam.query.order import RANK_NUMBER, RANK_STRING, value_key

Params = list[object]

_SQL_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def field_literal(name: str) -> str:
    """A field name as a SQL string literal (safe: quotes doubled, `%` escaped for psycopg)."""
    if not isinstance(name, str) or not name:
        raise QueryError(f"field names must be non-empty strings, got {name!r}")
    if "\x00" in name:
        raise QueryError(f"field name {name!r} contains a NUL character, which PostgreSQL cannot store")
    body = name.replace("'", "''").replace("%", "%%")
    if "\\" in body:  # E'' reads backslashes the same whatever standard_conforming_strings says
        return "E'" + body.replace("\\", "\\\\") + "'"
    return "'" + body + "'"


def _check_value(v: Scalar, where: str) -> Scalar:
    v = check_literal(v, where)
    if type(v) is str and "\x00" in v:
        raise QueryError(f"{where}: the string {v!r} contains a NUL character, which PostgreSQL jsonb cannot hold")
    return v


def _tf(b: bool) -> str:
    return "TRUE" if b else "FALSE"


def _j(lit: str) -> str:
    return f"(doc -> {lit})"


def _typeof(lit: str) -> str:
    return f"jsonb_typeof(doc -> {lit})"


def _rank(lit: str) -> str:
    """The type rank of a field's value (0 null/missing, 1 false, 2 true, 3 number, 4 string)."""
    return (
        f"(CASE {_typeof(lit)} WHEN 'string' THEN 4 WHEN 'number' THEN 3 "
        f"WHEN 'boolean' THEN (CASE WHEN {_j(lit)} = 'true'::jsonb THEN 2 ELSE 1 END) ELSE 0 END)"
    )


def _is_null(lit: str) -> str:
    return f"(COALESCE({_typeof(lit)}, 'null') = 'null')"


def _eq(field: str, lit: str, v: Scalar, params: Params) -> str:
    """`field = v` in the total order, never NULL."""
    if v is None:
        return _is_null(lit)
    # jsonb containment compares numbers numerically (1 = 1.0) and strings byte-wise,
    # which is exactly the total order's equality; a GIN jsonb_path_ops index serves it.
    params.append(Jsonb({field: v}))
    return "(doc @> %s::jsonb)"


def _compare(c: Compare, params: Params) -> str:
    v = _check_value(c.value, f"comparison on field {c.field!r}")
    op = c.op
    if op not in _SQL_OPS:
        raise QueryError(f"unknown comparison operator {op!r} on field {c.field!r}; use =, !=, <, <=, >, >=")
    opf = _OPS[op]
    vrank = value_key(v)[0]
    if c.field == "id":  # a string, always present
        if vrank != RANK_STRING:
            return _tf(opf(RANK_STRING, vrank))
        params.append(v)
        return f'(id COLLATE "C" {_SQL_OPS[op]} %s)'
    lit = field_literal(c.field)
    if op == "=":
        return _eq(c.field, lit, v, params)
    if op == "!=":
        return f"(NOT {_eq(c.field, lit, v, params)})"
    below, above = _tf(opf(0, 1)), _tf(opf(1, 0))  # stored value ranks below / above the literal
    if vrank == RANK_NUMBER:
        params.append(Jsonb(v))
        return (
            f"(CASE {_typeof(lit)} WHEN 'number' THEN {_j(lit)} {op} %s::jsonb "
            f"WHEN 'string' THEN {above} ELSE {below} END)"
        )
    if vrank == RANK_STRING:
        params.append(v)
        return f"(CASE {_typeof(lit)} WHEN 'string' THEN (doc ->> {lit}) COLLATE \"C\" {op} %s ELSE {below} END)"
    return f"({_rank(lit)} {op} {vrank})"  # null / false / true: the rank decides


def _in(node: In, params: Params) -> str:
    values: list[Scalar] = []
    seen: set = set()
    for v in node.values:
        v = _check_value(v, f"IN list of field {node.field!r}")
        k = value_key(v)
        if k not in seen:
            seen.add(k)
            values.append(v)
    if node.field == "id":
        ids = [v for v in values if type(v) is str]
        if not ids:
            body = "FALSE"
        else:
            params.append(ids)
            body = '(id COLLATE "C" = ANY(%s::text[]))'
    elif not values:
        body = "FALSE"
    else:
        lit = field_literal(node.field)
        parts = [_eq(node.field, lit, v, params) for v in values]
        body = parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"
    return f"(NOT {body})" if node.negated else body


def _expr(e: Expr, params: Params) -> str:
    if isinstance(e, Compare):
        return _compare(e, params)
    if isinstance(e, In):
        return _in(e, params)
    if isinstance(e, Not):
        return f"(NOT {_expr(e.item, params)})"
    if isinstance(e, And):
        if not e.items:
            return "TRUE"
        return "(" + " AND ".join(_expr(x, params) for x in e.items) + ")"
    if isinstance(e, Or):
        if not e.items:
            return "FALSE"
        return "(" + " OR ".join(_expr(x, params) for x in e.items) + ")"
    raise QueryError(f"not a query expression: {e!r}")


def _redundant(cand: IndexCandidate, params: Params) -> list[str]:
    """Conjuncts implied by the exact predicate, in shapes btree expression indexes match."""
    if cand.field == "id":
        return []
    lit = field_literal(cand.field)
    if cand.kind == "eq":
        if not cand.values or any(v is None for v in cand.values):
            return []
        # jsonb equality is numeric for numbers and byte-wise for strings: equivalent here.
        params.extend(Jsonb(v) for v in cand.values)
        if len(cand.values) == 1:
            return [f"{_j(lit)} = %s::jsonb"]
        return [f"{_j(lit)} IN (" + ", ".join(["%s::jsonb"] * len(cand.values)) + ")"]
    low, high = cand.low, cand.high
    lrank = None if low is None else value_key(low)[0]
    hrank = None if high is None else value_key(high)[0]
    out: list[str] = []
    if lrank == RANK_NUMBER and hrank == RANK_NUMBER:
        # Both bounds numbers: only numbers lie between, and jsonb orders numbers numerically.
        params.extend([Jsonb(low), Jsonb(high)])
        out.append(f"{_j(lit)} {'>=' if cand.low_inclusive else '>'} %s::jsonb")
        out.append(f"{_j(lit)} {'<=' if cand.high_inclusive else '<'} %s::jsonb")
    elif lrank == RANK_STRING:
        # A string lower bound: only strings qualify, compared by code point (COLLATE "C").
        params.append(low)
        out.append(f'(doc ->> {lit}) COLLATE "C" {">=" if cand.low_inclusive else ">"} %s')
        if hrank == RANK_STRING:
            params.append(high)
            out.append(f'(doc ->> {lit}) COLLATE "C" {"<=" if cand.high_inclusive else "<"} %s')
    return out


def compile_where(expr: Expr | None) -> tuple[str, Params]:
    """The WHERE condition for `expr` (`TRUE` when None) and its parameters.

    Top-level AND conjuncts are followed by redundant, index-friendly conjuncts
    (see docs/query-language.md) that never change the result.
    """
    if expr is None:
        return "TRUE", []
    params: Params = []
    parts = [_expr(c, params) for c in conjuncts(expr)]
    for cand in index_candidates(expr):
        parts.extend(_redundant(cand, params))
    if not parts:
        return "TRUE", params
    return " AND ".join(parts), params


def _order_terms(key: OrderKey) -> list[str]:
    d = " DESC" if key.descending else ""
    if key.field == "id":
        return [f'id COLLATE "C"{d}']
    lit = field_literal(key.field)
    # Within one rank only the matching component is non-null, so NULLS placement never matters.
    return [
        f"{_rank(lit)}{d}",
        f"(CASE WHEN {_typeof(lit)} = 'number' THEN {_j(lit)}::numeric END){d}",
        f"((CASE WHEN {_typeof(lit)} = 'string' THEN doc ->> {lit} END) COLLATE \"C\"){d}",
    ]


def compile_order_by(order_by: Sequence[OrderKey]) -> tuple[str, Params]:
    """ORDER BY terms (without the keywords) for the query order, ending with `id` ascending."""
    terms: list[str] = []
    for key in order_by:
        terms.extend(_order_terms(key))
    terms.append('id COLLATE "C"')
    return ", ".join(terms), []


def after_expr(order_by: Sequence[OrderKey], after: Entity) -> Expr:
    """ "Strictly after `after` in the query order" as an expression (lexicographic keyset)."""
    keys = [(k.field, k.descending) for k in order_by] + [("id", False)]
    branches: list[Expr] = []
    equal_so_far: list[Expr] = []
    for field, desc in keys:
        v = after.get(field)
        branches.append(And(tuple(equal_so_far) + (Compare(field, "<" if desc else ">", v),)))
        if field == "id":  # ids are unique: later keys can never tie
            break
        equal_so_far.append(Compare(field, "=", v))
    return Or(tuple(branches))


def compile_after(order_by: Sequence[OrderKey], after: Entity) -> tuple[str, Params]:
    """Keyset condition: rows strictly after entity `after` in the query order."""
    params: Params = []
    return _expr(after_expr(order_by, after), params), params


def compile_select(
    table_sql: str,
    query: Query,
    *,
    after: Entity | None = None,
    limit: int | None = None,
) -> tuple[str, Params]:
    """`SELECT id, doc FROM <table_sql> WHERE ... ORDER BY ... [LIMIT %s]` and its parameters.

    `table_sql` must already be a safe SQL identifier; `limit` overrides `query.limit`.
    """
    where, params = compile_where(query.where)
    if after is not None:
        after_sql, after_params = compile_after(query.order_by, after)
        where = f"{where} AND {after_sql}" if where != "TRUE" else after_sql
        params.extend(after_params)
    order_sql, order_params = compile_order_by(query.order_by)
    params.extend(order_params)
    sql = f"SELECT id, doc FROM {table_sql} WHERE {where} ORDER BY {order_sql}"
    lim = limit if limit is not None else query.limit
    if lim is not None:
        if type(lim) is not int or lim < 0:
            raise QueryError(f"limit must be a non-negative int, got {lim!r}")
        sql += " LIMIT %s"
        params.append(lim)
    return sql, params
