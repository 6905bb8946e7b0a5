"""What the query scenarios (`query-simple`, `query-complex`, `query-sorted`, `query-paginated`,
`query-large`) share: knobs, field domains of the dataset kinds, the run-and-check loop, and
`register_query_phase` for the scenarios that are a set of generated query families.

Every result is compared with the answer of the harness's reference evaluator
(`workloads/reference.py`) over the expected-state model — ordered when the query has
ORDER BY — so a wrong answer fails the phase whatever its speed. Latency is recorded per
query type as `query:<type>`.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from sprout_harness.contracts.client import Doc
from sprout_harness.contracts.query import QuerySpec, Value
from sprout_harness.workloads import datasets, predicates, reference
from sprout_harness.workloads.catalog import PhaseSpec, register_phase
from sprout_harness.workloads.context import NodeRef, PhaseContext
from sprout_harness.workloads.knobs import knob

# Fields queries may use, per dataset kind (every row has them, one type each).
CATEGORICAL = predicates.CATEGORICAL
NUMERIC = predicates.NUMERIC
STRINGS: dict[str, tuple[str, ...]] = {"albums": ("title", "artist"), "pets": ("name",)}

Family = Callable[[random.Random, str, list[Doc]], QuerySpec]


@dataclass
class QueryKnobs:
    collection: str = knob("albums", "dataset kind (and collection) queried", choices=datasets.kinds())
    queries: int = knob(200, "queries in total (spread over the types and the targets)", min=1)
    concurrency: int = knob(4, "queries in flight at once", min=1)


def pick_cat(rng: random.Random, kind: str) -> tuple[str, tuple[Value, ...]]:
    name = rng.choice(sorted(CATEGORICAL[kind]))
    return name, CATEGORICAL[kind][name]


def pick_num(rng: random.Random, kind: str) -> str:
    return rng.choice(sorted(NUMERIC[kind]))


def value_of(rng: random.Random, docs: list[Doc], name: str) -> Value:
    """A value the field really takes (so equality and thresholds hit rows)."""
    return rng.choice(docs).props[name] if docs else 0


def generate(
    rng: random.Random, kind: str, docs: list[Doc], families: dict[str, Family], count: int
) -> list[QuerySpec]:
    """`count` queries, cycling through the families in order so each type gets its share."""
    names = list(families)
    out = []
    for i in range(count):
        name = names[i % len(names)]
        q = families[name](rng, kind, docs)
        out.append(QuerySpec(q.where, q.order_by, q.limit, kind=name))
    return out


One = Callable[[int, NodeRef, list[Doc], asyncio.Semaphore], Awaitable[str | None]]


async def on_targets(ctx: PhaseContext, collection: str, count: int, concurrency: int, one: One) -> list[str]:
    """`one(i, node, expected_docs, sem)` for every i < count, all at once: item i on target
    i mod T with its group's expected `collection`, `sem` bounding the stack calls in flight
    to `concurrency`. The problems the items returned (None: right)."""
    targets = ctx.targets
    docs_by_group = {g: m.docs(collection) for g, m in ctx.models.items()}
    sem = asyncio.Semaphore(concurrency)
    wrong: list[str] = []

    async def run_one(i: int) -> None:
        node = targets[i % len(targets)]
        problem = await one(i, node, docs_by_group[node.group], sem)
        if problem is not None:
            wrong.append(problem)

    await asyncio.gather(*(run_one(i) for i in range(count)))
    return wrong


def check_answers(ctx: PhaseContext, name: str, wrong: list[str], total: int, noun: str = "") -> None:
    """The phase's one verdict on its answers, naming the first wrong one."""
    what = f"{noun} " if noun else ""
    ctx.check(name, not wrong, f"{len(wrong)} of {total} {what}wrong, first: {wrong[0][:400]}" if wrong else "")


async def run_queries(ctx: PhaseContext, collection: str, queries: list[QuerySpec], concurrency: int) -> None:
    """Run `queries` over the targets (query i on target i mod T) and check every answer."""
    rows = [0]

    async def one(i: int, node: NodeRef, docs: list[Doc], sem: asyncio.Semaphore) -> str | None:
        q = queries[i]
        async with sem:
            got = await ctx.timed(f"query:{q.kind}", node.client.fetch(collection, q))
        ok, detail = check_result(q, got, reference.evaluate(q, docs))
        rows[0] += len(got)
        ctx.advance(1)
        return None if ok else f"{q.kind} `{q.text}` on {node.name}: {detail}"

    ctx.set_total(len(queries))
    wrong = await on_targets(ctx, collection, len(queries), concurrency, one)
    ctx.recorder.count("queries", len(queries))
    ctx.recorder.count("rows_returned", rows[0])
    check_answers(ctx, "every query equals the expected answer", wrong, len(queries))


def register_query_phase(
    name: str,
    summary: str,
    knobs: type,
    families: Callable[[Any], dict[str, Family]],
    needs: tuple[str, ...] = ("fetch",),
    precheck: Callable[[PhaseContext, Any, list[Doc]], None] | None = None,
) -> PhaseSpec:
    """Register a scenario of generated queries: the dataset must be present (and pass
    `precheck`), then `k.queries` queries cycling through the families `families(k)` run
    over the targets and every answer is checked. Its metrics: `query:<family>`."""

    async def run(ctx: PhaseContext, k: Any) -> None:
        docs = require_dataset(ctx, k.collection)
        if precheck is not None:
            precheck(ctx, k, docs)
        queries = generate(ctx.rng, k.collection, docs, families(k), k.queries)
        await run_queries(ctx, k.collection, queries, k.concurrency)

    return register_phase(
        PhaseSpec(
            name=name,
            summary=summary,
            run=run,
            knobs=knobs,
            needs=needs,
            metrics=tuple(f"query:{family}" for family in families(knobs())),
        )
    )


def check_result(query: QuerySpec, got: list[Doc], expected: list[Doc]) -> tuple[bool, str]:
    """`reference.same_result`, with a fast path for the common case of a right answer.

    The fast path compares ids in order and props with dict equality (C speed), plus the
    one distinction dict equality misses in the datasets: a boolean must be a boolean
    (`True == 1`). Anything else, and every mismatch, goes through `same_result`, which
    gives the detail."""
    if len(got) == len(expected):
        g, e = list(got), list(expected)
        if not query.order_by:
            g.sort(key=lambda d: d.id)
            e.sort(key=lambda d: d.id)
        bools = [k for k, v in e[0].props.items() if isinstance(v, bool)] if e else []
        if all(a.id == b.id and a.props == b.props for a, b in zip(g, e)) and all(
            type(a.props[k]) is bool for a in g for k in bools
        ):
            return True, ""
    return reference.same_result(query, got, expected)


def require_dataset(ctx: PhaseContext, collection: str) -> list[Doc]:
    docs = ctx.model(ctx.targets[0]).docs(collection)
    ctx.require("dataset present", bool(docs), f"collection {collection!r} is empty: set datasets.{collection} > 0")
    return docs


__all__ = [
    "CATEGORICAL",
    "Family",
    "NUMERIC",
    "QueryKnobs",
    "STRINGS",
    "check_answers",
    "check_result",
    "generate",
    "on_targets",
    "pick_cat",
    "pick_num",
    "register_query_phase",
    "require_dataset",
    "run_queries",
    "value_of",
]
