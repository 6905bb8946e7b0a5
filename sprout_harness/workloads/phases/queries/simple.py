"""query-simple — single comparisons: `eq` (`genre = 'jazz'`, `year = 1987`), `gt`
(`rating > 3.2`), `lt` (`tracks < 9`); values are ones the dataset really holds.

Queries cycle through the three types and spread over the targets, `concurrency` in flight.
Latency per type: `query:eq`, `query:gt`, `query:lt`; counters `queries`, `rows_returned`.
Check: every result equals the reference evaluator's answer over the expected state.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sprout_harness.contracts.client import Doc
from sprout_harness.contracts.query import Cond, QuerySpec
from sprout_harness.workloads import predicates
from sprout_harness.workloads.queryrun import (
    QueryKnobs,
    pick_cat,
    pick_num,
    register_query_phase,
    value_of,
)


@dataclass
class QuerySimpleKnobs(QueryKnobs):
    pass


def eq(rng: random.Random, kind: str, docs: list[Doc]) -> QuerySpec:
    if rng.random() < 0.5:
        name, values = pick_cat(rng, kind)
        return QuerySpec(Cond(name, "=", rng.choice(values)))
    name = rng.choice(sorted(n for n in predicates.NUMERIC[kind] if n in predicates.INTEGER_FIELDS))
    return QuerySpec(Cond(name, "=", value_of(rng, docs, name)))


def gt(rng: random.Random, kind: str, docs: list[Doc]) -> QuerySpec:
    name = pick_num(rng, kind)
    return QuerySpec(Cond(name, ">", value_of(rng, docs, name)))


def lt(rng: random.Random, kind: str, docs: list[Doc]) -> QuerySpec:
    name = pick_num(rng, kind)
    return QuerySpec(Cond(name, "<", value_of(rng, docs, name)))


FAMILIES = {"eq": eq, "gt": gt, "lt": lt}


SPEC = register_query_phase(
    "query-simple",
    "single comparisons (eq, gt, lt); each result checked against the expected answer",
    QuerySimpleKnobs,
    lambda k: FAMILIES,
)

__all__ = ["FAMILIES", "SPEC", "QuerySimpleKnobs"]
