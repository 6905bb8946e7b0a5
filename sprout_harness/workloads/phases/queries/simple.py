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
from sprout_harness.workloads.catalog import PhaseSpec, register_phase
from sprout_harness.workloads.context import PhaseContext
from sprout_harness.workloads.queryrun import (
    QueryKnobs,
    generate,
    pick_cat,
    pick_num,
    require_dataset,
    run_queries,
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


async def run(ctx: PhaseContext, k: QuerySimpleKnobs) -> None:
    docs = require_dataset(ctx, k.collection)
    queries = generate(ctx.rng, k.collection, docs, FAMILIES, k.queries)
    await run_queries(ctx, k.collection, queries, k.concurrency)


register_phase(PhaseSpec(
    name="query-simple",
    summary="single comparisons (eq, gt, lt); each result checked against the expected answer",
    run=run,
    knobs=QuerySimpleKnobs,
    needs=("fetch",),
    metrics=tuple(f"query:{name}" for name in FAMILIES),
))

__all__ = ["FAMILIES", "QuerySimpleKnobs", "run"]
