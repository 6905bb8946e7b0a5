"""query-sorted — ORDER BY: `asc` (`where genre = x order by year`), `desc` (`... order by
rating desc`), `string` (`where label = x order by title`), `multi` (`where year >= y order by
genre, rating desc`) and `top_k` (`where genre = x order by rating desc limit k`).

Results must come in the exact order of the reference evaluator: the ORDER BY keys, then
`id` ascending for ties. Latency per type: `query:asc`, `query:desc`, `query:string`,
`query:multi`, `query:top_k`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sprout_harness.contracts.client import Doc
from sprout_harness.contracts.query import Cond, Order, QuerySpec
from sprout_harness.workloads.knobs import knob
from sprout_harness.workloads.queryrun import (
    STRINGS,
    Family,
    QueryKnobs,
    pick_cat,
    pick_num,
    register_query_phase,
    value_of,
)


@dataclass
class QuerySortedKnobs(QueryKnobs):
    top_k: int = knob(10, "LIMIT of top_k queries", min=1)


def asc(rng: random.Random, kind: str, docs: list[Doc]) -> QuerySpec:
    name, values = pick_cat(rng, kind)
    return QuerySpec(Cond(name, "=", rng.choice(values)), order_by=(Order(pick_num(rng, kind)),))


def desc(rng: random.Random, kind: str, docs: list[Doc]) -> QuerySpec:
    name, values = pick_cat(rng, kind)
    return QuerySpec(Cond(name, "=", rng.choice(values)), order_by=(Order(pick_num(rng, kind), descending=True),))


def string(rng: random.Random, kind: str, docs: list[Doc]) -> QuerySpec:
    name, values = pick_cat(rng, kind)
    return QuerySpec(
        Cond(name, "=", rng.choice(values)), order_by=(Order(rng.choice(STRINGS[kind]), descending=rng.random() < 0.5),)
    )


def multi(rng: random.Random, kind: str, docs: list[Doc]) -> QuerySpec:
    num = pick_num(rng, kind)
    cat, _ = pick_cat(rng, kind)
    other = pick_num(rng, kind)
    return QuerySpec(Cond(num, ">=", value_of(rng, docs, num)), order_by=(Order(cat), Order(other, descending=True)))


def top_k_family(k: int):
    def top_k(rng: random.Random, kind: str, docs: list[Doc]) -> QuerySpec:
        name, values = pick_cat(rng, kind)
        return QuerySpec(
            Cond(name, "=", rng.choice(values)), order_by=(Order(pick_num(rng, kind), descending=True),), limit=k
        )

    return top_k


def families(k: QuerySortedKnobs) -> dict[str, Family]:
    return {"asc": asc, "desc": desc, "string": string, "multi": multi, "top_k": top_k_family(k.top_k)}


SPEC = register_query_phase(
    "query-sorted",
    "ORDER BY (asc, desc, string keys, multi-key, top-k); each result checked in order",
    QuerySortedKnobs,
    families,
    needs=("fetch", "order_by"),
)

__all__ = ["SPEC", "QuerySortedKnobs"]
