"""query-complex — boolean combinations: `and` (`genre = x and year >= y`), `or`
(`genre = x or label = y or rating > v`), `in` (`label in (a, b, c)`, `year in (...)`),
`not` (`not (genre = x and rating > v)`, `species not in (...)`), and `nested`
(`(genre = x or genre = y) and not (year < v)`).

Queries cycle through the types and spread over the targets, `concurrency` in flight.
Latency per type: `query:and`, `query:or`, `query:in`, `query:not`, `query:nested`.
Check: every result equals the reference evaluator's answer over the expected state.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sprout_harness.contracts.client import Doc
from sprout_harness.contracts.query import AllOf, AnyOf, Cond, InList, Not, QuerySpec
from sprout_harness.workloads.queryrun import (
    CATEGORICAL,
    NUMERIC,
    QueryKnobs,
    pick_cat,
    pick_num,
    register_query_phase,
    value_of,
)


@dataclass
class QueryComplexKnobs(QueryKnobs):
    pass


def and_(rng: random.Random, kind: str, docs: list[Doc]) -> QuerySpec:
    name, values = pick_cat(rng, kind)
    num = pick_num(rng, kind)
    return QuerySpec(AllOf((Cond(name, "=", rng.choice(values)), Cond(num, ">=", value_of(rng, docs, num)))))


def or_(rng: random.Random, kind: str, docs: list[Doc]) -> QuerySpec:
    (c1, v1), (c2, v2) = sorted(CATEGORICAL[kind].items())[:2]
    num = pick_num(rng, kind)
    hi = sorted(d.props[num] for d in docs)[int(len(docs) * 0.95)] if docs else 0  # a thin top slice
    return QuerySpec(AnyOf((Cond(c1, "=", rng.choice(v1)), Cond(c2, "=", rng.choice(v2)), Cond(num, ">", hi))))


def in_(rng: random.Random, kind: str, docs: list[Doc]) -> QuerySpec:
    if rng.random() < 0.5:
        name, values = pick_cat(rng, kind)
        return QuerySpec(InList(name, tuple(rng.sample(values, 3))))
    num = rng.choice(sorted(n for n in NUMERIC[kind] if n in ("year", "tracks", "age")))
    return QuerySpec(InList(num, tuple(sorted({value_of(rng, docs, num) for _ in range(4)}))))


def not_(rng: random.Random, kind: str, docs: list[Doc]) -> QuerySpec:
    name, values = pick_cat(rng, kind)
    if rng.random() < 0.5:
        num = pick_num(rng, kind)
        return QuerySpec(Not(AllOf((Cond(name, "=", rng.choice(values)), Cond(num, ">", value_of(rng, docs, num))))))
    return QuerySpec(InList(name, tuple(rng.sample(values, len(values) - 2)), negated=True))


def nested(rng: random.Random, kind: str, docs: list[Doc]) -> QuerySpec:
    name, values = pick_cat(rng, kind)
    a, b = rng.sample(values, 2)
    num = pick_num(rng, kind)
    return QuerySpec(
        AllOf((AnyOf((Cond(name, "=", a), Cond(name, "=", b))), Not(Cond(num, "<", value_of(rng, docs, num)))))
    )


FAMILIES = {"and": and_, "or": or_, "in": in_, "not": not_, "nested": nested}


SPEC = register_query_phase(
    "query-complex",
    "boolean combinations (and, or, in, not, nested); each result checked against the expected answer",
    QueryComplexKnobs,
    lambda k: FAMILIES,
)

__all__ = ["FAMILIES", "SPEC", "QueryComplexKnobs"]
