"""writers — W concurrent writers mutating existing entities; checks all nodes converge.

Writer w runs on target w mod T and updates entities of its own partition (ids of the
group, every W-th one) so the final value of each entity is known; with `overlap: true`
all writers share all entities (contention) and the check is agreement between nodes.
Latency per `update` (commit latency); throughput from the phase's wall time. Runs
`ops` updates in total, or for `duration_s` seconds when that is > 0.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sprout_harness.contracts.query import Cond, QuerySpec
from sprout_harness.workloads import datasets, reference
from sprout_harness.workloads.catalog import PhaseSpec, register_phase
from sprout_harness.workloads.context import PhaseContext
from sprout_harness.workloads.knobs import knob


@dataclass
class WritersKnobs:
    collection: str = knob("pets", "dataset kind (and collection) to mutate", choices=datasets.kinds())
    writers: int = knob(4, "concurrent writers", min=1)
    ops: int = knob(2000, "updates in total (ignored when duration_s > 0)", min=1)
    duration_s: float = knob(0.0, "run for this many seconds instead of `ops` updates (0: use ops)", min=0)
    overlap: bool = knob(False, "writers share entities (contention); false: disjoint partitions")
    readback_sample: int = knob(200, "touched ids compared by get on every node of the group", min=0)


def everything() -> QuerySpec:
    return QuerySpec(Cond("seq", ">=", 0), kind="all")


async def run(ctx: PhaseContext, k: WritersKnobs) -> None:
    coll = k.collection
    targets = ctx.targets
    counter = {"n": 0}
    touched: dict[int, set[str]] = {}
    deadline = time.monotonic() + k.duration_s if k.duration_s > 0 else None
    if deadline is None:
        ctx.set_total(k.ops)
    for g, m in ctx.models.items():
        ctx.require(
            "dataset present", m.size(coll) > 0, f"collection {coll!r} is empty on durable-{g}: set datasets.{coll} > 0"
        )

    async def writer(w: int) -> None:
        node = targets[w % len(targets)]
        model = ctx.model(node)
        ids = sorted(model.ids(coll))
        same_group = [x for x in range(k.writers) if targets[x % len(targets)].group == node.group]
        mine = ids if k.overlap else ids[same_group.index(w) :: len(same_group)]
        if not mine:
            return
        rng = ctx.rng.__class__(f"{ctx.seed}:writer:{w}")
        while True:
            if deadline is not None:
                if time.monotonic() >= deadline:
                    return
            elif counter["n"] >= k.ops:
                return
            counter["n"] += 1
            id_ = rng.choice(mine)
            props = {"mood": counter["n"], "weight": round(rng.uniform(0.1, 60.0), 1)}
            await ctx.timed("update", node.client.update(coll, id_, props))
            if not k.overlap:
                model.update(coll, id_, props)
            touched.setdefault(node.group, set()).add(id_)
            ctx.advance(1)
            # A stack call that completes without suspending (an inline engine) would let one
            # writer run all its ops before the next one starts: yield so writers interleave and
            # the loop can serve notifications, timers and stop requests.
            await asyncio.sleep(0)

    await asyncio.gather(*(writer(w) for w in range(k.writers)))
    ctx.recorder.count("updates", counter["n"])

    q = everything()
    for group in sorted(touched):
        nodes = ctx.group_nodes(group)
        model = ctx.models[group]
        if k.overlap:  # the durable node's state is the truth the others must reach
            for d in await nodes[0].client.fetch(coll, q):
                model.put(coll, d.id, d.props)
        expected = reference.evaluate(q, model.docs(coll))
        sample = ctx.rng.sample(sorted(touched[group]), min(k.readback_sample, len(touched[group])))
        for node in nodes:
            detail = {"d": ""}

            async def converged(node=node, detail=detail) -> bool:
                got = await node.client.fetch(coll, q)
                ok, detail["d"] = reference.same_result(q, got, expected)
                if not ok:
                    return False
                for id_ in sample:
                    doc = await node.client.get(coll, id_)
                    if doc is None or not reference.same_props(doc.props, model.get(coll, id_) or {}):
                        detail["d"] = f"get {id_}: {doc}, expected {model.get(coll, id_)}"
                        return False
                return True

            ok = await ctx.retry(converged)
            ctx.check(f"{node.name} converged", ok, detail["d"])


register_phase(
    PhaseSpec(
        name="writers",
        summary="W concurrent writers mutating existing entities; commit latency, throughput; all nodes converge",
        run=run,
        knobs=WritersKnobs,
        needs=("update", "fetch", "get"),
        metrics=("update",),
    )
)
