"""Parser: every construct, precedence, escaping, keywords, error positions, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loam.errors import QueryError
from loam.query import parse
from loam.query.ast import And, Compare, In, Not, Or, OrderKey, Query
from loam.query.parser import MAX_DEPTH, parse_or_query


def where(text: str):
    return parse(text).where


def typed(x):
    """A structure that tells True from 1 (AST equality does not)."""
    if isinstance(x, Compare):
        return ("c", x.field, x.op, type(x.value), x.value)
    if isinstance(x, In):
        return ("in", x.field, x.negated, tuple((type(v), v) for v in x.values))
    if isinstance(x, Not):
        return ("not", typed(x.item))
    if isinstance(x, (And, Or)):
        return (type(x).__name__, tuple(typed(i) for i in x.items))
    return x


# --- constructs -----------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">="])
def test_comparison_operators(op: str) -> None:
    assert where(f"year {op} 2000") == Compare("year", op, 2000)


def test_angle_not_equal_is_an_alias() -> None:
    assert where("a <> 1") == Compare("a", "!=", 1)


def test_no_spaces_needed_around_operators() -> None:
    assert where("a>=-1") == Compare("a", ">=", -1)
    assert where("a='x'AND b=2") == And((Compare("a", "=", "x"), Compare("b", "=", 2)))


def test_in_and_not_in() -> None:
    assert where("g IN ('jazz', 'blues', 3, null)") == In("g", ("jazz", "blues", 3, None))
    assert where("g NOT IN (true)") == In("g", (True,), negated=True)
    assert where("g IN ()") == In("g", ())
    assert where("g not in ()") == In("g", (), negated=True)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("42", 42),
        ("-7", -7),
        ("3.25", 3.25),
        ("-0.5", -0.5),
        (".5", 0.5),
        ("-.5", -0.5),
        ("1.", 1.0),
        ("1e3", 1000.0),
        ("2.5E-2", 0.025),
        ("-1e+2", -100.0),
        ("123456789012345678901234567890", 123456789012345678901234567890),
        ("true", True),
        ("FALSE", False),
        ("Null", None),
        ("'rock'", "rock"),
        ("''", ""),
        ("'it''s'", "it's"),
        ("'it\\'s'", "it's"),
        ("'back\\\\slash'", "back\\slash"),
        ("''''", "'"),
        ("'héllo 😀 Ω'", "héllo 😀 Ω"),
        ("'a \"quoted\" word'", 'a "quoted" word'),
    ],
)
def test_literals(text: str, value: object) -> None:
    got = where(f"x = {text}")
    assert isinstance(got, Compare)
    assert type(got.value) is type(value) and got.value == value


def test_int_and_float_are_distinguished() -> None:
    assert type(where("x = 1").value) is int
    assert type(where("x = 1.0").value) is float
    assert type(where("x = 1e0").value) is float


def test_quoted_field_names() -> None:
    assert where('"weird name" = 1') == Compare("weird name", "=", 1)
    assert where('"order" = 1') == Compare("order", "=", 1)  # keywords are fine when quoted
    assert where('"say ""hi""" = 1') == Compare('say "hi"', "=", 1)
    assert where('"back\\\\slash" = 1') == Compare("back\\slash", "=", 1)
    assert parse('ORDER BY "weird name" DESC').order_by == (OrderKey("weird name", True),)


def test_identifiers() -> None:
    assert where("_a_1 = 1") == Compare("_a_1", "=", 1)
    assert where("id = 'x'") == Compare("id", "=", "x")
    assert where("orders = 1") == Compare("orders", "=", 1)  # keyword prefix is not a keyword


def test_precedence_and_binds_tighter_than_or() -> None:
    a, b, c = (Compare(n, "=", 1) for n in "abc")
    assert where("a = 1 OR b = 1 AND c = 1") == Or((a, And((b, c))))
    assert where("a = 1 AND b = 1 OR c = 1") == Or((And((a, b)), c))
    assert where("(a = 1 OR b = 1) AND c = 1") == And((Or((a, b)), c))


def test_precedence_not_binds_tighter_than_and() -> None:
    a, b = Compare("a", "=", 1), Compare("b", "=", 1)
    assert where("NOT a = 1 AND b = 1") == And((Not(a), b))
    assert where("NOT (a = 1 AND b = 1)") == Not(And((a, b)))
    assert where("NOT NOT a = 1") == Not(Not(a))
    assert where("NOT a = 1 OR b = 1") == Or((Not(a), b))


def test_and_or_chains_are_flat() -> None:
    assert where("a=1 AND b=1 AND c=1") == And(tuple(Compare(n, "=", 1) for n in "abc"))
    assert where("a=1 OR b=1 OR c=1") == Or(tuple(Compare(n, "=", 1) for n in "abc"))
    assert where("((((a = 1))))") == Compare("a", "=", 1)


def test_keywords_are_case_insensitive() -> None:
    q = parse("a = 1 and NOT b in (2) Or c not IN (3) order BY a desc, b Asc, c limit 4")
    upper = parse("a = 1 AND NOT b IN (2) OR c NOT IN (3) ORDER BY a DESC, b ASC, c LIMIT 4")
    assert (q.where, q.order_by, q.limit) == (upper.where, upper.order_by, upper.limit)
    assert q.order_by == (OrderKey("a", True), OrderKey("b", False), OrderKey("c", False))
    assert q.limit == 4


def test_full_example() -> None:
    text = "year > 2000 AND (genre = 'rock' OR genre IN ('jazz', 'blues')) ORDER BY year DESC, name LIMIT 10"
    q = parse(text)
    assert q == Query(
        where=And((Compare("year", ">", 2000), Or((Compare("genre", "=", "rock"), In("genre", ("jazz", "blues")))))),
        order_by=(OrderKey("year", True), OrderKey("name")),
        limit=10,
        text=text,
    )
    assert q.text == text


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_query_matches_everything(text: str) -> None:
    assert parse(text) == Query(text=text)


def test_order_by_and_limit_without_where() -> None:
    q = parse("ORDER BY year LIMIT 5")
    assert q.where is None and q.order_by == (OrderKey("year"),) and q.limit == 5
    assert parse("LIMIT 0").limit == 0
    assert parse("a = 1 LIMIT 3").order_by == ()


def test_parse_is_cached_and_parse_or_query() -> None:
    assert parse("a = 1 ORDER BY b") is parse("a = 1 ORDER BY b")
    q = Query(where=Compare("a", "=", 1))
    assert parse_or_query(q) is q
    assert parse_or_query("a = 1").where == Compare("a", "=", 1)


def test_deep_nesting_is_fine_up_to_the_limit() -> None:
    depth = MAX_DEPTH - 1
    assert where("(" * depth + "a = 1" + ")" * depth) == Compare("a", "=", 1)
    with pytest.raises(QueryError, match="nested too deeply"):
        parse("(" * (MAX_DEPTH + 5) + "a = 1" + ")" * (MAX_DEPTH + 5))


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("year > ", 7, "expected a value after '>'"),
        ("year >", 6, "expected a value after '>'"),
        ("year > AND b = 1", 7, "expected a value after '>'"),
        ("year = 'abc", 7, "unterminated string literal"),
        ("year = 'it''s", 7, "unterminated string literal"),
        ("year = 'abc\\", 7, "unterminated string literal"),
        ("x = 'a\\n'", 6, "unsupported escape '\\n'"),
        ('"abc = 1', 0, "unterminated quoted field name"),
        ('"" = 1', 0, "empty quoted field name"),
        ("a = 1 b = 2", 6, "expected AND, OR, ORDER BY, LIMIT or end of query"),
        ("a = 1 2", 6, "unexpected token"),
        ("a = 1 ORDER BY b c", 17, "expected ',', LIMIT or end of query"),
        ("LIMIT 3 a", 8, "expected end of query"),
        ("LIMIT -1", 6, "non-negative integer after LIMIT"),
        ("LIMIT 1.5", 6, "non-negative integer after LIMIT"),
        ("LIMIT 'x'", 6, "non-negative integer after LIMIT"),
        ("LIMIT", 5, "non-negative integer after LIMIT"),
        ("(a = 1", 6, "expected ')' to close the '(' at position 0"),
        ("((a = 1) OR (b = 2)", 19, "expected ')' to close the '(' at position 0"),
        ("a = 1)", 5, "unbalanced ')'"),
        ("()", 1, "expected a field name"),
        ("a 1", 2, "expected a comparison"),
        ("a", 1, "expected a comparison"),
        ("a NOT = 1", 6, "expected IN after NOT"),
        ("a IN 1", 5, "expected '(' after IN"),
        ("a IN (1 2)", 8, "expected ',' or ')' in the IN list"),
        ("a IN (1,)", 8, "expected a value after ',' in the IN list"),
        ("a NOT IN (1", 11, "expected ',' or ')' in the NOT IN list"),
        ("a = b", 4, "expected a value after '='"),
        ("= 1", 0, "expected a field name"),
        ("a = 1 AND", 9, "expected a field name"),
        ("a = 1 OR OR b = 1", 9, "expected a field name"),
        ("order = 1", 6, "expected BY after ORDER"),
        ("ORDER BY", 8, "expected a field name in ORDER BY"),
        ("ORDER BY a,", 11, "expected a field name in ORDER BY"),
        ("ORDER BY limit", 9, 'LIMIT is a keyword, write a field of that name in double quotes ("limit")'),
        ("a = 12abc", 4, "malformed number"),
        ("a = 1.2.3", 4, "malformed number"),
        ("a = 1e999", 4, "out of range"),
        ("a = #", 4, "unexpected character '#'"),
        ("é = 1", 0, "double quotes"),
        ("a == 1", 3, "expected a value after '='"),
        ("a = -", 4, "unexpected character '-'"),
    ],
)
def test_errors_name_position_and_expectation(text: str, position: int, fragment: str) -> None:
    with pytest.raises(QueryError) as info:
        parse(text)
    err = info.value
    assert err.position == position, str(err)
    assert err.text == text
    assert fragment in str(err), str(err)
    assert f"at position {position}" in str(err)


def test_non_string_query_is_rejected() -> None:
    with pytest.raises(QueryError, match="must be a str"):
        parse(42)  # type: ignore[arg-type]


# --- round trip -----------------------------------------------------------------------------

_names = st.one_of(st.sampled_from(["a", "year", "id", "_x9"]), st.text(min_size=1, max_size=6))
_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
_leaves = st.one_of(
    st.builds(Compare, _names, st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), _values),
    st.builds(In, _names, st.lists(_values, max_size=3).map(tuple), st.booleans()),
)
_exprs = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
    ),
    max_leaves=8,
)


def fmt_name(name: str) -> str:
    import re

    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and name.upper() not in {
        "AND",
        "OR",
        "NOT",
        "IN",
        "ORDER",
        "BY",
        "ASC",
        "DESC",
        "LIMIT",
        "TRUE",
        "FALSE",
        "NULL",
    }:
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '""') + '"'


def fmt_value(v: object) -> str:
    if v is None:
        return "null"
    if v is True:
        return "TRUE"
    if v is False:
        return "false"
    if isinstance(v, str):
        return "'" + v.replace("\\", "\\\\").replace("'", "''") + "'"
    return repr(v)  # ints, and floats (repr always has '.' or 'e')


def fmt(e) -> str:
    if isinstance(e, Compare):
        return f"{fmt_name(e.field)} {e.op} {fmt_value(e.value)}"
    if isinstance(e, In):
        return f"{fmt_name(e.field)} {'NOT IN' if e.negated else 'in'} ({', '.join(map(fmt_value, e.values))})"
    if isinstance(e, Not):
        return f"NOT ({fmt(e.item)})"
    sep = " AND " if isinstance(e, And) else " or "
    return "(" + sep.join(fmt(i) for i in e.items) + ")"


@given(
    _exprs,
    st.lists(st.builds(OrderKey, _names, st.booleans()), max_size=3),
    st.none() | st.integers(0, 10**6),
)
def test_round_trip(expr, order_by, limit) -> None:
    text = fmt(expr)
    if order_by:
        text += " ORDER BY " + ", ".join(fmt_name(k.field) + (" DESC" if k.descending else "") for k in order_by)
    if limit is not None:
        text += f" LIMIT {limit}"
    q = parse(text)
    assert typed(q.where) == typed(expr)
    assert q.order_by == tuple(order_by)
    assert q.limit == limit
