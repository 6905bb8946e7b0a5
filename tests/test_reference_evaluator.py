"""The harness's reference evaluator agrees with an independent one (loam's, used only here)
on the predicate mix the workloads generate and on mixed-type edge cases."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from loam.model import Entity
from loam.query.evaluate import run_query
from sprout_harness.contracts import AllOf, AnyOf, Cond, Doc, InList, Not, Order, QuerySpec
from sprout_harness.workloads import datasets, predicates, reference
from sprout_loam.adapter import to_loam_query


def _ids(docs):
    return [d.id for d in docs]


def _agree(q: QuerySpec, docs: list[Doc]) -> None:
    ours = reference.evaluate(q, docs)
    theirs = run_query(to_loam_query(q), [Entity(d.id, dict(d.props)) for d in docs])
    if q.order_by:
        assert _ids(ours) == [e.id for e in theirs], q.text
    else:
        assert sorted(_ids(ours)) == sorted(e.id for e in theirs), q.text


@given(
    seed=st.integers(0, 10_000),
    kind=st.sampled_from(datasets.kinds()),
    family=st.sampled_from(sorted(predicates.FAMILIES)),
)
def test_generated_queries_agree(seed, kind, family):
    rows = datasets.build(kind, 150, seed)
    docs = [Doc(f"{i:04d}-{seed}", r) for i, r in enumerate(rows)]
    rng = random.Random(seed)
    for q in predicates.generate(rng, kind, {family: 1.0}, 5, limit=rng.randint(1, 30)):
        _agree(q, docs)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(-5, 5, allow_nan=False),
    st.sampled_from(["", "a", "b", "5"]),
)


@given(
    values=st.lists(scalars, min_size=1, max_size=25),
    probe=scalars,
    op=st.sampled_from(["=", "!=", "<", "<=", ">", ">="]),
    desc=st.booleans(),
)
def test_mixed_types_and_nulls_follow_one_total_order(values, probe, op, desc):
    docs = [Doc(f"id{i:03d}", {"v": v} if i % 4 else {}) for i, v in enumerate(values)]  # some lack `v`
    for q in (
        QuerySpec(Cond("v", op, probe), order_by=(Order("v", desc),), limit=7),
        QuerySpec(Not(InList("v", (probe, 1))), order_by=(Order("v", desc),)),
        QuerySpec(AnyOf((Cond("v", op, probe), AllOf((Cond("id", ">", "id005"), Cond("v", "=", None)))))),
    ):
        _agree(q, docs)


def test_text_rendering_is_readable():
    q = QuerySpec(
        AllOf((Cond("genre", "=", "it's"), AnyOf((Cond("year", ">=", 1990), InList("label", ("a", "b")))))),
        order_by=(Order("rating", True),),
        limit=10,
    )
    assert q.text == "where genre = 'it''s' and (year >= 1990 or label in ('a', 'b')) order by rating desc limit 10"


@given(
    seed=st.integers(0, 10_000),
    desc=st.booleans(),
    limit=st.integers(1, 12),
    ops=st.lists(st.tuples(st.integers(0, 39), st.one_of(st.none(), scalars)), max_size=60),
)
def test_ordered_result_follows_writes_like_a_fresh_evaluation(seed, desc, limit, ops):
    """OrderedResult (the live-limit workload's incremental expected window) gives exactly
    what evaluate gives after every put / remove, ties and mixed types included."""
    rng = random.Random(seed)
    q = QuerySpec(Cond("g", "=", 1), order_by=(Order("r", descending=desc),), limit=limit)
    docs = {f"d{i:02d}": {"g": rng.choice([1, 2]), "r": rng.choice([None, 1, 2.5, "x", True])} for i in range(40)}
    res = reference.OrderedResult(q, [Doc(i, p) for i, p in docs.items()])
    for n, value in ops:
        id_ = f"d{n:02d}"
        if value is None and n % 3 == 0:
            docs.pop(id_, None)
            res.remove(id_)
        else:
            docs[id_] = {"g": 1 if n % 2 else rng.choice([1, 2]), "r": value}
            res.put(Doc(id_, docs[id_]))
        expected = reference.evaluate(q, [Doc(i, p) for i, p in docs.items()])
        assert _ids(res.head()) == _ids(expected)
        assert _ids(res.head(None)) == _ids(expected)
    full = QuerySpec(q.where, order_by=q.order_by)
    assert len(res) == len(reference.evaluate(full, [Doc(i, p) for i, p in docs.items()]))
