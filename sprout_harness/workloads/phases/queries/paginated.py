"""query-paginated — keyset pagination: walk a whole result page by page with LIMIT and a
start-after cursor, and check that the pages concatenate to the full expected answer.

A walk picks a filter (none, `genre = x`, or `year >= y`) and an order: `id` (next page:
`id > <last id>`) or a property with `id` as tie-break (ascending: `f > v or (f = v and id >
<last id>)`; descending: `f < v or (f = v and id > <last id>)`), each page `limit page_size`.
It ends at the first page shorter than `page_size`.

Latency per page: `query:page_by_id`, `query:page_by_field`; counters `walks`, `pages`,
`rows_returned`. Checks: every walk's concatenation equals the reference evaluator's full
ordered answer — no row twice, none missing, none extra, in order; a walk never needs more
pages than the answer has.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from sprout_harness.contracts.client import Doc
from sprout_harness.contracts.query import AllOf, AnyOf, Cond, Order, Pred, QuerySpec
from sprout_harness.workloads import reference
from sprout_harness.workloads.catalog import PhaseSpec, register_phase
from sprout_harness.workloads.context import NodeRef, PhaseContext
from sprout_harness.workloads.knobs import knob
from sprout_harness.workloads.queryrun import (
    QueryKnobs,
    check_answers,
    check_result,
    on_targets,
    pick_cat,
    pick_num,
    require_dataset,
    value_of,
)


@dataclass
class QueryPaginatedKnobs(QueryKnobs):
    queries: int = knob(20, "walks in total (each walks one whole result)", min=1)
    page_size: int = knob(25, "LIMIT of each page", min=1)


@dataclass(frozen=True)
class Walk:
    base: Pred | None
    order: Order | None  # None: by id

    def page(self, after: Doc | None, size: int) -> QuerySpec:
        order_by = (self.order,) if self.order is not None else (Order("id"),)
        kind = "page_by_field" if self.order is not None else "page_by_id"
        cursor: Pred | None = None
        if after is not None:
            if self.order is None:
                cursor = Cond("id", ">", after.id)
            else:
                f, v = self.order.field, after.props[self.order.field]
                cursor = AnyOf(
                    (
                        Cond(f, "<" if self.order.descending else ">", v),
                        AllOf((Cond(f, "=", v), Cond("id", ">", after.id))),
                    )
                )
        parts = tuple(p for p in (self.base, cursor) if p is not None)
        where = None if not parts else parts[0] if len(parts) == 1 else AllOf(parts)
        return QuerySpec(where, order_by=order_by, limit=size, kind=kind)

    def full(self) -> QuerySpec:
        return QuerySpec(self.base, order_by=(self.order,) if self.order is not None else (Order("id"),))


def make_walk(rng: random.Random, kind: str, docs: list[Doc]) -> Walk:
    r = rng.random()
    if r < 0.25:
        base: Pred | None = None
    elif r < 0.6:
        name, values = pick_cat(rng, kind)
        base = Cond(name, "=", rng.choice(values))
    else:
        num = pick_num(rng, kind)
        base = Cond(num, ">=", value_of(rng, docs, num))
    order = None if rng.random() < 0.4 else Order(pick_num(rng, kind), descending=rng.random() < 0.5)
    return Walk(base, order)


async def run(ctx: PhaseContext, k: QueryPaginatedKnobs) -> None:
    coll = k.collection
    docs = require_dataset(ctx, coll)
    walks = [make_walk(ctx.rng, coll, docs) for _ in range(k.queries)]
    totals = {"pages": 0, "rows": 0}

    async def walk(i: int, node: NodeRef, docs: list[Doc], sem: asyncio.Semaphore) -> str | None:
        w = walks[i]
        full = w.full()
        expected = reference.evaluate(full, docs)
        max_pages = len(expected) // k.page_size + 1
        got: list[Doc] = []
        after: Doc | None = None
        for _ in range(max_pages + 1):
            q = w.page(after, k.page_size)
            async with sem:
                page = await ctx.timed(f"query:{q.kind}", node.client.fetch(coll, q))
            totals["pages"] += 1
            totals["rows"] += len(page)
            got.extend(page)
            if len(page) < k.page_size:
                break
            after = page[-1]
        else:
            return (
                f"walk `{full.text}` page {k.page_size} on {node.name}: still full pages after "
                f"{max_pages + 1} pages for {len(expected)} expected rows"
            )
        ids = [d.id for d in got]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            return f"walk `{full.text}` on {node.name}: {dup} returned twice"
        ok, detail = check_result(full, got, expected)
        ctx.advance(1)
        return None if ok else f"walk `{full.text}` page {k.page_size} on {node.name}: {detail}"

    wrong = await on_targets(ctx, coll, len(walks), k.concurrency, walk)
    ctx.recorder.count("walks", len(walks))
    ctx.recorder.count("pages", totals["pages"])
    ctx.recorder.count("rows_returned", totals["rows"])
    check_answers(
        ctx,
        "every walk's pages concatenate to the full expected answer (no duplicates, no gaps)",
        wrong,
        len(walks),
        "walks",
    )


register_phase(
    PhaseSpec(
        name="query-paginated",
        summary="LIMIT pages with a start-after (keyset) cursor; every walk's pages must equal the full answer",
        run=run,
        knobs=QueryPaginatedKnobs,
        needs=("fetch", "order_by"),
        metrics=("query:page_by_id", "query:page_by_field"),
    )
)

__all__ = ["QueryPaginatedKnobs", "Walk", "run"]
