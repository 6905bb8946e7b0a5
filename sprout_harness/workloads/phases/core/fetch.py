"""fetch — get-by-id rounds and fetch rounds over a predicate mix; every answer is checked.

Expected answers come from the harness's reference evaluator over the expected state, so
a wrong result fails the phase whatever its speed. Latency per op: `get`, and
`fetch:<family>` per predicate family (equality, range, in, and_or, order_limit, not).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sprout_harness.workloads import datasets, predicates, reference
from sprout_harness.workloads.catalog import PhaseSpec, register_phase
from sprout_harness.workloads.context import PhaseContext
from sprout_harness.workloads.knobs import knob


@dataclass
class FetchKnobs:
    collection: str = knob("albums", "dataset kind (and collection) to read", choices=datasets.kinds())
    get_ops: int = knob(1000, "get-by-id calls (spread over the targets)", min=0)
    fetch_ops: int = knob(200, "fetch calls (spread over the targets)", min=0)
    predicate_mix: dict[str, float] = knob(dict(predicates.DEFAULT_MIX), "weight per predicate family")
    limit: int = knob(20, "LIMIT of order_limit queries", min=1)
    concurrency: int = knob(4, "calls in flight at once", min=1)

    def validate(self, path: str) -> None:
        predicates.check_mix(self.predicate_mix, path)


async def run(ctx: PhaseContext, k: FetchKnobs) -> None:
    coll = k.collection
    targets = ctx.targets
    sem = asyncio.Semaphore(k.concurrency)
    wrong: list[str] = []
    docs_by_group = {g: m.docs(coll) for g, m in ctx.models.items()}
    ids_by_group = {g: [d.id for d in docs] for g, docs in docs_by_group.items()}
    if not any(ids_by_group.values()) and k.get_ops:
        ctx.require(
            "dataset present", False, f"collection {coll!r} is empty: set datasets.{coll} > 0 or run create first"
        )

    async def one_get(i: int) -> None:
        node = targets[i % len(targets)]
        model = ctx.model(node)
        id_ = ctx.rng.choice(ids_by_group[node.group])
        async with sem:
            doc = await ctx.timed("get", node.client.get(coll, id_))
        expected = model.get(coll, id_)
        if doc is None or doc.id != id_ or not reference.same_props(doc.props, expected or {}):
            wrong.append(f"get {id_} on {node.name}: got {doc}, expected {expected}")
        ctx.advance(1)

    queries = predicates.generate(ctx.rng, coll, k.predicate_mix, k.fetch_ops, k.limit)

    async def one_fetch(i: int) -> None:
        node = targets[i % len(targets)]
        q = queries[i]
        async with sem:
            got = await ctx.timed(f"fetch:{q.kind}", node.client.fetch(coll, q))
        ok, detail = reference.same_result(q, got, reference.evaluate(q, docs_by_group[node.group]))
        if not ok:
            wrong.append(f"fetch `{q.text}` on {node.name}: {detail}")
        ctx.recorder.count("rows_returned", len(got))
        ctx.advance(1)

    ctx.set_total(k.get_ops + len(queries))
    await asyncio.gather(*(one_get(i) for i in range(k.get_ops)))
    ctx.check(
        "every get returned the expected entity",
        not any(w.startswith("get") for w in wrong),
        "; ".join(w for w in wrong if w.startswith("get"))[:500],
    )
    await asyncio.gather(*(one_fetch(i) for i in range(len(queries))))
    bad = [w for w in wrong if w.startswith("fetch")]
    ctx.check(
        "every fetch equals the expected answer", not bad, f"{len(bad)} wrong, first: {bad[0][:400]}" if bad else ""
    )


register_phase(
    PhaseSpec(
        name="fetch",
        summary="get-by-id and fetch rounds over a predicate mix; each result checked against the expected answer",
        run=run,
        knobs=FetchKnobs,
        needs=("get", "fetch"),
        metrics=("get", "fetch:*"),
    )
)
