"""create — batched creates on the target nodes; checks every write landed.

Rows come from the dataset builder (continuing the seeded sequence); batch j goes to target
j mod T, `concurrency` batches in flight. Latency per batch (`create_batch`); counters
`entities` and `batches`. Checks: each ack returned one id per row; a fetch of the phase's
row range on each durable equals the expected rows; every target reads back a sample.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sprout_harness.contracts.query import AllOf, Cond, QuerySpec
from sprout_harness.workloads import datasets, reference
from sprout_harness.workloads.catalog import PhaseSpec, register_phase
from sprout_harness.workloads.context import PhaseContext, chunks
from sprout_harness.workloads.knobs import ENTITY_BYTES, knob


@dataclass
class CreateKnobs:
    collection: str = knob("albums", "dataset kind (and collection) to create", choices=datasets.kinds())
    count: int = knob(2000, "entities to create in total (over all targets)", min=1)
    batch_size: int = knob(100, "entities per create call (one transaction)", min=1)
    concurrency: int = knob(4, "create calls in flight at once", min=1)
    readback_sample: int = knob(50, "ids read back on every target node", min=0)

    def memory_bytes(self) -> int:
        """What the created entities cost the run (validation checks it against the machine)."""
        return self.count * ENTITY_BYTES


def seq_range(start: int, end: int) -> QuerySpec:
    return QuerySpec(AllOf((Cond("seq", ">=", start), Cond("seq", "<", end))), kind="seq_range")


async def run(ctx: PhaseContext, k: CreateKnobs) -> None:
    coll = k.collection
    start = ctx.allocate(coll, k.count)
    rows = datasets.build(coll, k.count, ctx.seed, start)
    batches = list(chunks(rows, k.batch_size))
    targets = ctx.targets
    sem = asyncio.Semaphore(k.concurrency)
    created: dict[int, list[str]] = {}  # group -> ids
    bad_acks: list[str] = []

    async def one(j: int, batch: list[dict]) -> None:
        node = targets[j % len(targets)]
        async with sem:
            ack = await ctx.timed("create_batch", node.client.create(coll, batch))
        ids = list(ack.ids)
        if len(ids) != len(batch) or len(set(ids)) != len(ids):
            bad_acks.append(f"{node.name} batch {j}: {len(ids)} ids for {len(batch)} rows")
            return
        model = ctx.model(node)
        for id_, row in zip(ids, batch):
            model.put(coll, id_, row)
        created.setdefault(node.group, []).extend(ids)
        ctx.recorder.count("entities", len(batch))
        ctx.recorder.count("batches")
        ctx.advance(len(batch))

    ctx.set_total(sum(len(b) for b in batches))
    await asyncio.gather(*(one(j, b) for j, b in enumerate(batches)))
    ctx.require("acks", not bad_acks, "; ".join(bad_acks[:3]))
    total = sum(len(v) for v in created.values())
    ctx.require("every write acknowledged", total == k.count, f"{total} of {k.count} entities acknowledged")

    q = seq_range(start, start + k.count)
    for group in created:
        durable = ctx.durables[group]
        model = ctx.models[group]
        expected = reference.evaluate(q, model.docs(coll))
        got = await ctx.timed("verify_fetch", durable.client.fetch(coll, q))
        ok, detail = reference.same_result(q, got, expected)
        ctx.require(f"every write landed on {durable.name}", ok, detail)

    for node in targets:
        ids = created.get(node.group, [])
        sample = ctx.rng.sample(ids, min(k.readback_sample, len(ids)))
        model = ctx.model(node)
        missing: list[str] = []

        async def all_visible() -> bool:
            missing.clear()
            for id_ in sample:
                doc = await node.client.get(coll, id_)
                if doc is None or not reference.same_props(doc.props, model.get(coll, id_) or {}):
                    missing.append(id_)
            return not missing

        ok = await ctx.retry(all_visible)
        ctx.require(
            f"{node.name} reads its writes",
            ok,
            f"{len(missing)} of {len(sample)} sampled ids missing or different, e.g. {missing[:2]}",
        )


register_phase(
    PhaseSpec(
        name="create",
        summary="batched creates (batch size knob); checks every write landed",
        run=run,
        knobs=CreateKnobs,
        needs=("create", "fetch", "get"),
        metrics=("create_batch", "verify_fetch"),
    )
)

__all__ = ["CreateKnobs", "run", "seq_range"]
