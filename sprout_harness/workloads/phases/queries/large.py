"""query-large — result sets of thousands of rows: `range` (`year >= y`, y chosen so at
least `min_rows` match), `in` (`genre in (...)`, values added until `min_rows` match),
`sorted` (a large range `order by rating desc`) and `all` (the whole collection).

Needs a collection of at least `min_rows` entities. Latency per type: `query:range`,
`query:in`, `query:sorted`, `query:all`; counters `queries`, `rows_returned`.
Check: every result equals the reference evaluator's answer (in order when sorted).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sprout_harness.contracts.client import Doc
from sprout_harness.contracts.query import Cond, InList, Order, QuerySpec
from sprout_harness.workloads.context import PhaseContext
from sprout_harness.workloads.knobs import knob
from sprout_harness.workloads.queryrun import Family, QueryKnobs, pick_cat, pick_num, register_query_phase


@dataclass
class QueryLargeKnobs(QueryKnobs):
    queries: int = knob(40, "queries in total (spread over the types and the targets)", min=1)
    min_rows: int = knob(2000, "every query matches at least this many rows", min=1)
    concurrency: int = knob(2, "queries in flight at once", min=1)


def _threshold(rng: random.Random, docs: list[Doc], name: str, min_rows: int) -> float:
    """A `name >= t` threshold matching between min_rows and all rows."""
    vals = sorted(d.props[name] for d in docs)
    want = rng.randint(min(min_rows, len(vals)), len(vals))
    return vals[len(vals) - want]  # type: ignore[return-value]


def families(min_rows: int) -> dict[str, Family]:
    def range_(rng: random.Random, kind: str, docs: list[Doc]) -> QuerySpec:
        name = pick_num(rng, kind)
        return QuerySpec(Cond(name, ">=", _threshold(rng, docs, name, min_rows)))

    def in_(rng: random.Random, kind: str, docs: list[Doc]) -> QuerySpec:
        name, values = pick_cat(rng, kind)
        counts = {v: 0 for v in values}
        for d in docs:
            counts[d.props[name]] = counts.get(d.props[name], 0) + 1
        chosen, total = [], 0
        for v in rng.sample(values, len(values)):
            if total >= min_rows:
                break
            chosen.append(v)
            total += counts[v]
        return QuerySpec(InList(name, tuple(chosen)))

    def sorted_(rng: random.Random, kind: str, docs: list[Doc]) -> QuerySpec:
        name = pick_num(rng, kind)
        return QuerySpec(
            Cond(name, ">=", _threshold(rng, docs, name, min_rows)),
            order_by=(Order(pick_num(rng, kind), descending=True),),
        )

    def all_(rng: random.Random, kind: str, docs: list[Doc]) -> QuerySpec:
        return QuerySpec()

    return {"range": range_, "in": in_, "sorted": sorted_, "all": all_}


def _holds_min_rows(ctx: PhaseContext, k: QueryLargeKnobs, docs: list[Doc]) -> None:
    ctx.require(
        f"the collection holds at least min_rows ({k.min_rows}) entities",
        len(docs) >= k.min_rows,
        f"{k.collection!r} holds {len(docs)}: raise datasets.{k.collection} or lower min_rows",
    )


SPEC = register_query_phase(
    "query-large",
    "queries returning thousands of rows (range, in, sorted, all); each result checked",
    QueryLargeKnobs,
    lambda k: families(k.min_rows),
    needs=("fetch", "order_by"),
    precheck=_holds_min_rows,
)

__all__ = ["SPEC", "QueryLargeKnobs"]
