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


@given(seed=st.integers(0, 10_000), kind=st.sampled_from(datasets.kinds()),
       family=st.sampled_from(sorted(predicates.FAMILIES)))
def test_generated_queries_agree(seed, kind, family):
    rows = datasets.build(kind, 150, seed)
    docs = [Doc(f"{i:04d}-{seed}", r) for i, r in enumerate(rows)]
    rng = random.Random(seed)
    for q in predicates.generate(rng, kind, {family: 1.0}, 5, limit=rng.randint(1, 30)):
        _agree(q, docs)


scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(-5, 5, allow_nan=False),
                    st.sampled_from(["", "a", "b", "5"]))


@given(values=st.lists(scalars, min_size=1, max_size=25), probe=scalars,
       op=st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), desc=st.booleans())
def test_mixed_types_and_nulls_follow_one_total_order(values, probe, op, desc):
    docs = [Doc(f"id{i:03d}", {"v": v} if i % 4 else {}) for i, v in enumerate(values)]  # some lack `v`
    for q in (QuerySpec(Cond("v", op, probe), order_by=(Order("v", desc),), limit=7),
              QuerySpec(Not(InList("v", (probe, 1))), order_by=(Order("v", desc),)),
              QuerySpec(AnyOf((Cond("v", op, probe), AllOf((Cond("id", ">", "id005"), Cond("v", "=", None))))))):
        _agree(q, docs)


def test_text_rendering_is_readable():
    q = QuerySpec(AllOf((Cond("genre", "=", "it's"), AnyOf((Cond("year", ">=", 1990), InList("label", ("a", "b")))))),
                  order_by=(Order("rating", True),), limit=10)
    assert q.text == "where genre = 'it''s' and (year >= 1990 or label in ('a', 'b')) order by rating desc limit 10"
