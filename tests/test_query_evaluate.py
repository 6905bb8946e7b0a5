"""Python evaluator: the total order, missing fields, NOT IN, query order, keyset paging."""

from __future__ import annotations

import functools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loam.errors import QueryError
from loam.model import Entity
from loam.query import parse
from loam.query.ast import And, Compare, In, Not, Or, OrderKey, Query
from loam.query.evaluate import (
    IndexCandidate,
    compile_predicate,
    index_candidates,
    matches,
    referenced_fields,
    run_query,
)
from loam.query.order import compare_position, sort_key_func, value_key

# Ascending in the total order; items in one inner list are equal.
ORDERED = [
    [None],
    [False],
    [True],
    [-(10**30)],
    [-1.5],
    [-1, -1.0],
    [0, 0.0, -0.0],
    [5e-324],
    [0.5],
    [1, 1.0],
    [2000],
    [2**53, 2.0**53],
    [2**53 + 1],
    [10**23, 1e23],  # compared as the decimal value JSON stores ("1e+23")
    [""],
    ["10"],
    ["A"],
    ["B"],
    ["a"],
    ["b"],
    ["é"],
    ["Ω"],
    ["😀"],
]


def E(id: str, **props) -> Entity:
    return Entity(id, props)


def ids(entities) -> list[str]:
    return [e.id for e in entities]


def q(text: str) -> Query:
    return parse(text)


# --- the total order ------------------------------------------------------------------------


def test_value_key_total_order() -> None:
    flat = [(i, v) for i, group in enumerate(ORDERED) for v in group]
    for i, a in flat:
        for j, b in flat:
            ka, kb = value_key(a), value_key(b)
            assert (ka < kb) == (i < j), (a, b)
            assert (ka == kb) == (i == j), (a, b)


def test_bool_is_not_a_number() -> None:
    assert value_key(True) != value_key(1)
    assert value_key(False) != value_key(0)
    assert not matches(Compare("x", "=", 1), E("e", x=True))
    assert not matches(Compare("x", "=", True), E("e", x=1))
    assert matches(Compare("x", "<", 0), E("e", x=True))  # booleans rank below numbers
    assert not matches(In("x", (1, 0)), E("e", x=True))
    assert matches(In("x", (1, 0), negated=True), E("e", x=False))


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">="])
def test_every_comparison_follows_the_total_order(op: str) -> None:
    """compile_predicate agrees with comparing value keys, for every literal and stored value pair."""
    flat = [v for group in ORDERED for v in group]
    pyop = {"=": "__eq__", "!=": "__ne__", "<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__"}[op]
    for lit in flat:
        pred = compile_predicate(Compare("x", op, lit))
        for stored in flat:
            expect = getattr(value_key(stored), pyop)(value_key(lit))
            assert pred(E("e", x=stored)) is expect, (stored, op, lit)
        # a missing field is null
        assert pred(E("e")) is getattr(value_key(None), pyop)(value_key(lit)), ("missing", op, lit)


def test_range_on_numbers_includes_strings_not_null_or_bools() -> None:
    pred = compile_predicate(q("year > 2000").where)
    assert pred(E("a", year=2001)) and pred(E("b", year=2000.5)) and pred(E("c", year="1999"))
    assert not any(pred(x) for x in [E("d", year=2000), E("e", year=None), E("f"), E("g", year=True)])


def test_null_equality_and_missing_fields() -> None:
    assert matches(q("x = null").where, E("a"))
    assert matches(q("x = null").where, E("a", x=None))
    assert not matches(q("x = null").where, E("a", x=0))
    assert not matches(q("x != null").where, E("a"))
    assert matches(q("x != null").where, E("a", x=False))
    assert matches(q("x <= null").where, E("a"))
    assert not matches(q("x < null").where, E("a"))
    assert matches(q("x >= null").where, E("a", x="s"))
    assert not matches(q("x = 0").where, E("a"))
    assert matches(q("x != 0").where, E("a"))


def test_int_float_equality() -> None:
    assert matches(q("x = 1").where, E("a", x=1.0))
    assert matches(q("x = 1.0").where, E("a", x=1))
    assert matches(q("x IN (1.0)").where, E("a", x=1))
    assert matches(Compare("x", "=", 10**23), E("a", x=1e23))
    assert matches(Compare("x", ">", 2**53), E("a", x=2.0**64))


def test_in_and_not_in() -> None:
    where = q("g IN ('jazz', 'blues')").where
    assert matches(where, E("a", g="jazz")) and not matches(where, E("b", g="rock")) and not matches(where, E("c"))
    not_in = q("g NOT IN ('jazz', null)").where
    assert matches(not_in, E("a", g="rock"))
    assert not matches(not_in, E("b", g="jazz"))
    assert not matches(not_in, E("c"))  # missing is null, which is in the list
    assert matches(q("g NOT IN ('jazz')").where, E("d"))  # two-valued: missing is simply not jazz
    assert not matches(q("g IN ()").where, E("e", g=1))
    assert matches(q("g NOT IN ()").where, E("e"))


def test_not_is_plain_negation() -> None:
    assert matches(q("NOT x > 5").where, E("a"))  # missing: x > 5 is false, so NOT is true
    assert matches(q("NOT (x = 1 OR y = 2)").where, E("a", x=2, y=3))
    assert not matches(q("NOT (x = 1 OR y = 2)").where, E("a", y=2))


def test_and_or() -> None:
    where = q("a = 1 AND (b = 'x' OR b = 'y') AND c != 3").where
    assert matches(where, E("e", a=1, b="y"))
    assert not matches(where, E("e", a=1, b="y", c=3))
    assert not matches(where, E("e", a=2, b="x"))
    assert matches(And(()), E("e")) and not matches(Or(()), E("e"))
    assert matches(None, E("e"))


def test_id_field() -> None:
    e = E("m1", id_like="x")
    assert matches(q("id = 'm1'").where, e)
    assert matches(q("id > 'a'").where, e) and not matches(q("id > 'z'").where, e)
    assert matches(q("id > 5").where, e)  # the id is a string: above every number
    assert not matches(q("id = null").where, e)
    assert matches(q("id IN ('x', 'm1')").where, e) and matches(q("id NOT IN (1)").where, e)


def test_bad_literals_are_rejected() -> None:
    with pytest.raises(QueryError, match="finite"):
        compile_predicate(Compare("x", "=", math.nan))
    with pytest.raises(QueryError, match="list"):
        compile_predicate(Compare("x", "=", [1]))  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="operator"):
        compile_predicate(Compare("x", "~", 1))  # type: ignore[arg-type]


def test_compiled_predicates_are_cached_without_confusing_true_and_one() -> None:
    assert compile_predicate(Compare("x", "=", 1)) is compile_predicate(Compare("x", "=", 1))
    p_one, p_true = compile_predicate(Compare("x", "=", 1)), compile_predicate(Compare("x", "=", True))
    assert p_one(E("a", x=1)) and not p_true(E("a", x=1))


# --- ordering -------------------------------------------------------------------------------


def test_order_across_types_with_missing_as_null() -> None:
    data = [
        E("s", v="str"),
        E("n1", v=2),
        E("n2", v=1.5),
        E("t", v=True),
        E("f", v=False),
        E("z", v=None),
        E("m"),
    ]
    assert ids(run_query(q("ORDER BY v"), data)) == ["m", "z", "f", "t", "n2", "n1", "s"]
    assert ids(run_query(q("ORDER BY v DESC"), data)) == ["s", "n1", "n2", "t", "f", "m", "z"]


def test_ties_are_broken_by_id_ascending_even_for_desc() -> None:
    data = [E("c", v=1), E("a", v=1.0), E("b", v=1), E("d", v=0)]
    assert ids(run_query(q("ORDER BY v"), data)) == ["d", "a", "b", "c"]
    assert ids(run_query(q("ORDER BY v DESC"), data)) == ["a", "b", "c", "d"]
    assert ids(run_query(q(""), data)) == ["a", "b", "c", "d"]


def test_multiple_keys() -> None:
    data = [E("1", y=2000, n="b"), E("2", y=2000, n="a"), E("3", y=1999, n="z"), E("4", y=2001)]
    assert ids(run_query(q("ORDER BY y DESC, n"), data)) == ["4", "2", "1", "3"]
    assert ids(run_query(q("ORDER BY y, n DESC"), data)) == ["3", "1", "2", "4"]
    assert ids(run_query(q("ORDER BY id DESC"), data)) == ["4", "3", "2", "1"]


def test_strings_order_by_code_point() -> None:
    data = [E("1", s="b"), E("2", s="B"), E("3", s="é"), E("4", s="a"), E("5", s="😀"), E("6", s="Z")]
    assert [e.props["s"] for e in run_query(q("ORDER BY s"), data)] == ["B", "Z", "a", "b", "é", "😀"]


def test_limit_and_where() -> None:
    data = [E(f"e{i}", v=i % 7) for i in range(50)]
    got = run_query(q("v >= 3 ORDER BY v DESC LIMIT 4"), data)
    assert ids(got) == ["e13", "e20", "e27", "e34"]  # v == 6, ids ascending
    assert run_query(q("LIMIT 0"), data) == []
    assert len(run_query(q("v = 1"), data, limit=2)) == 2  # explicit limit overrides
    assert len(run_query(q("v = 1 LIMIT 2"), data, limit=5)) == 5


def test_after_keyset() -> None:
    data = [E("a", v=3), E("b", v=1), E("c", v=3), E("d"), E("e", v="x")]
    query = q("ORDER BY v DESC")
    full = ids(run_query(query, data))
    assert full == ["e", "a", "c", "b", "d"]
    for i, e in enumerate(full):
        after = next(x for x in data if x.id == e)
        assert ids(run_query(query, data, after=after)) == full[i + 1 :]
        assert ids(run_query(query, data, after=after, limit=1)) == full[i + 1 : i + 2]
    # an entity not in the set: start at its would-be position
    assert ids(run_query(query, data, after=E("b0", v=3))) == ["c", "b", "d"]
    assert ids(run_query(q("v != 1 ORDER BY v DESC"), data, after=E("zz", v=2))) == ["d"]


def test_compare_position() -> None:
    ob = (OrderKey("v", True),)
    a, b, c = E("a", v=1), E("b", v=2), E("c", v=1)
    assert compare_position(ob, b, a) == -1
    assert compare_position(ob, a, c) == -1  # tie on v, id ascending
    assert compare_position(ob, c, a) == 1
    assert compare_position(ob, a, a) == 0
    assert compare_position((), a, b) == -1


def test_invalid_limit() -> None:
    with pytest.raises(QueryError, match="non-negative"):
        run_query(Query(limit=-1), [])


# --- static analysis ------------------------------------------------------------------------


def test_referenced_fields() -> None:
    assert referenced_fields(q("a = 1 AND (NOT b IN (1) OR id > 'x')").where) == {"a", "b", "id"}
    assert referenced_fields(None) == set()


def test_index_candidates() -> None:
    cands = index_candidates(q("genre = 'rock' AND year >= 2000 AND year < 2010 AND (x = 1 OR y = 2)").where)
    assert cands == [
        IndexCandidate("eq", "genre", ("rock",)),
        IndexCandidate("range", "year", low=2000, low_inclusive=True, high=2010, high_inclusive=False),
    ]
    assert cands[1].as_tuple() == ("range", "year", 2000, True, 2010, False)
    assert index_candidates(q("g IN ('a', 'b', 'a')").where) == [IndexCandidate("eq", "g", ("a", "b"))]
    assert index_candidates(q("g IN ('a', 'b') AND g = 'b'").where) == [IndexCandidate("eq", "g", ("b",))]
    assert index_candidates(q("g = 'a' AND g >= 'b'").where) == [IndexCandidate("eq", "g", ())]
    assert index_candidates(q("y > 5 AND y > 7 AND y >= 7").where) == [IndexCandidate("range", "y", low=7)]
    assert index_candidates(q("y > 5 AND y < 5").where) == [IndexCandidate("eq", "y", ())]
    assert index_candidates(q("x <= null").where) == [IndexCandidate("eq", "x", (None,))]
    assert index_candidates(q("x > null OR y = 1").where) == []
    assert index_candidates(q("x != 1 AND x NOT IN (2) AND NOT x = 3").where) == []
    assert index_candidates(None) == []


# --- the fast paths agree with the definition ----------------------------------------------

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.5, 1.0, -0.0, 2**53, 2.0**64, 1e23, 10**23]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "a", "B", "é", "😀"]),
    st.text(max_size=3),
)
_fields = st.sampled_from(["a", "b", "id"])
_leaves = st.one_of(
    st.builds(Compare, _fields, st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), _values),
    st.builds(In, _fields, st.lists(_values, max_size=3).map(tuple), st.booleans()),
)
_exprs = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.lists(inner, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(inner, max_size=3).map(lambda xs: Or(tuple(xs))),
    ),
    max_leaves=6,
)
_entities = st.lists(
    st.builds(
        Entity,
        st.text(alphabet="abcAB😀", min_size=1, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b"]), _values),
    ),
    unique_by=lambda e: e.id,
    max_size=12,
)


def reference_matches(expr, e: Entity) -> bool:
    """The specification, written naively."""
    if isinstance(expr, Compare):
        a, b = value_key(e.get(expr.field)), value_key(expr.value)
        return {"=": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[expr.op]
    if isinstance(expr, In):
        found = any(value_key(e.get(expr.field)) == value_key(v) for v in expr.values)
        return found != expr.negated
    if isinstance(expr, Not):
        return not reference_matches(expr.item, e)
    if isinstance(expr, And):
        return all(reference_matches(x, e) for x in expr.items)
    return any(reference_matches(x, e) for x in expr.items)


def reference_order(order_by, a: Entity, b: Entity) -> int:
    for k in order_by:
        ka, kb = value_key(a.get(k.field)), value_key(b.get(k.field))
        if ka != kb:
            c = -1 if ka < kb else 1
            return -c if k.descending else c
    return (a.id > b.id) - (a.id < b.id)


@given(
    _exprs,
    _entities,
    st.lists(st.builds(OrderKey, _fields, st.booleans()), max_size=3).map(tuple),
    st.none() | st.integers(0, 6) | st.just(300),
    st.none() | st.integers(0, 11),
)
def test_run_query_matches_reference(expr, entities, order_by, limit, after_index) -> None:
    query = Query(where=expr, order_by=order_by, limit=limit)
    pred = compile_predicate(expr)
    for e in entities:
        assert pred(e) == reference_matches(expr, e)
    expected = sorted(
        (e for e in entities if reference_matches(expr, e)),
        key=functools.cmp_to_key(lambda a, b: reference_order(order_by, a, b)),
    )
    after = None
    if after_index is not None and entities:
        after = entities[after_index % len(entities)]
        expected = [e for e in expected if reference_order(order_by, e, after) > 0]
    if limit is not None:
        expected = expected[:limit]
    assert ids(run_query(query, entities, after=after)) == ids(expected)
    key = sort_key_func(order_by)
    for a in entities[:4]:
        for b in entities[:4]:
            assert compare_position(order_by, a, b) == reference_order(order_by, a, b)
            assert (key(a) < key(b)) == (reference_order(order_by, a, b) < 0)
