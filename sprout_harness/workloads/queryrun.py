"""What the query scenarios (`query-simple`, `query-complex`, `query-sorted`, `query-paginated`,
`query-large`) share: knobs, field domains of the dataset kinds, and the run-and-check loop.

Every result is compared with the answer of the harness's reference evaluator
(`workloads/reference.py`) over the expected-state model — ordered when the query has
ORDER BY — so a wrong answer fails the phase whatever its speed. Latency is recorded per
query type as `query:<type>`.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Callable

from sprout_harness.contracts.client import Doc
from sprout_harness.contracts.query import QuerySpec, Value
from sprout_harness.workloads import datasets, predicates, reference
from sprout_harness.workloads.context import PhaseContext
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


def generate(rng: random.Random, kind: str, docs: list[Doc], families: dict[str, Family], count: int) -> list[QuerySpec]:
    """`count` queries, cycling through the families in order so each type gets its share."""
    names = list(families)
    out = []
    for i in range(count):
        name = names[i % len(names)]
        q = families[name](rng, kind, docs)
        out.append(QuerySpec(q.where, q.order_by, q.limit, kind=name))
    return out


async def run_queries(ctx: PhaseContext, collection: str, queries: list[QuerySpec], concurrency: int) -> None:
    """Run `queries` over the targets (query i on target i mod T) and check every answer."""
    targets = ctx.targets
    docs_by_group = {g: m.docs(collection) for g, m in ctx.models.items()}
    sem = asyncio.Semaphore(concurrency)
    wrong: list[str] = []
    rows = [0]

    async def one(i: int) -> None:
        node = targets[i % len(targets)]
        q = queries[i]
        async with sem:
            got = await ctx.timed(f"query:{q.kind}", node.client.fetch(collection, q))
        ok, detail = check_result(q, got, reference.evaluate(q, docs_by_group[node.group]))
        if not ok:
            wrong.append(f"{q.kind} `{q.text}` on {node.name}: {detail}")
        rows[0] += len(got)
        ctx.advance(1)

    ctx.set_total(len(queries))
    await asyncio.gather(*(one(i) for i in range(len(queries))))
    ctx.recorder.count("queries", len(queries))
    ctx.recorder.count("rows_returned", rows[0])
    ctx.check("every query equals the expected answer", not wrong,
              f"{len(wrong)} of {len(queries)} wrong, first: {wrong[0][:400]}" if wrong else "")


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
        if all(a.id == b.id and a.props == b.props for a, b in zip(g, e)) and \
                all(type(a.props[k]) is bool for a in g for k in bools):
            return True, ""
    return reference.same_result(query, got, expected)


def require_dataset(ctx: PhaseContext, collection: str) -> list[Doc]:
    docs = ctx.model(ctx.targets[0]).docs(collection)
    ctx.require("dataset present", bool(docs), f"collection {collection!r} is empty: set datasets.{collection} > 0")
    return docs


__all__ = ["CATEGORICAL", "Family", "NUMERIC", "QueryKnobs", "STRINGS", "check_result", "generate", "pick_cat", "pick_num",
           "require_dataset", "run_queries", "value_of"]
