"""crud — a weighted create / read / update (partial) / delete mix over a seeded dataset.

Operations come from `load.mixes.CrudWorkload` (presets `write-heavy`, `read-heavy`,
`balanced`, or `preset: custom` with `weights`) over the ids of the seeded collection;
creates insert new rows of the dataset kind (continuing its `seq`), updates set one
property, deletes remove the entity (its id leaves the pool when the delete is generated).
The load driver runs them on the group's durable node (closed loop, or open loop at
`rate`). Latency per op kind: `create`, `read`, `update`, `delete`.

Checks: every read returned a value some acknowledged (or concurrent) write gave it (see
`loadphase.History`); at the end a fetch of the whole collection equals the expected state
built from every acknowledged create, update and delete; no operation failed. An update
rejected because a delete of the same entity ran first is the expected outcome of that
race (counter `updates_after_delete`), not an error.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import dataclass
from typing import Any

from sprout_harness.contracts.errors import ConfigError
from sprout_harness.load.mixes import KINDS, PRESETS, CrudOperation, CrudWorkload, KeyPool, crud_mix
from sprout_harness.workloads import datasets
from sprout_harness.workloads.catalog import PhaseSpec, register_phase
from sprout_harness.workloads.context import PhaseContext
from sprout_harness.workloads.knobs import knob
from sprout_harness.workloads.loadphase import EXISTS, History, LoadKnobs, ReadStats, defer, drive, verify_final_state

_ROW_CHUNK = 256
# The property an update sets, per dataset kind, and how to draw a value of its one type.
UPDATES: dict[str, tuple[str, Any]] = {
    "albums": ("rating", lambda r: round(r.uniform(0.0, 5.0), 2)),
    "pets": ("weight", lambda r: round(r.uniform(0.1, 60.0), 1)),
}


@dataclass
class CrudKnobs(LoadKnobs):
    collection: str = knob("pets", "dataset kind (and collection) the mix runs on", choices=datasets.kinds())
    preset: str = knob("balanced", "operation weights: a preset, or custom (then `weights`)",
                       choices=(*PRESETS, "custom"))
    weights: dict[str, float] = knob({}, "with preset custom: weight per operation (create, read, update, delete)")
    key_distribution: str = knob("uniform", "which live ids operations pick", choices=("uniform", "zipfian"))

    def validate(self, path: str) -> None:
        super().validate(path)
        if self.preset == "custom":
            if not self.weights:
                raise ConfigError("preset custom needs weights, e.g. {create: 1, read: 8, update: 1, delete: 0}",
                                  f"{path}.weights")
            for name, w in self.weights.items():
                if name not in KINDS:
                    raise ConfigError(f"unknown operation; allowed: {', '.join(KINDS)}", f"{path}.weights.{name}")
                if w < 0:
                    raise ConfigError(f"got {w}; weights must be >= 0", f"{path}.weights.{name}")
            if not any(w > 0 for w in self.weights.values()):
                raise ConfigError(f"got {self.weights}; at least one weight must be > 0", f"{path}.weights")
        elif self.weights:
            raise ConfigError(f"weights are only used with preset custom (preset is {self.preset!r})", f"{path}.weights")


async def run(ctx: PhaseContext, k: CrudKnobs) -> None:
    coll = k.collection
    node = ctx.targets[0]
    # Group 0's durable node, or every one of its ephemerals in turn (see docs/workloads.md)
    clients = [n.client for n in ctx.targets if n.group == node.group]
    next_client = itertools.cycle(clients).__next__
    model = ctx.model(node)
    initial_ids = sorted(model.ids(coll))
    ctx.require("dataset present", bool(initial_ids),
                f"collection {coll!r} is empty: set datasets.{coll} > 0")
    mix = crud_mix(k.weights if k.preset == "custom" else k.preset)
    pool = KeyPool(initial_ids)
    workload = CrudWorkload(mix, pool, seed=ctx.seed, key_distribution=k.key_distribution)  # type: ignore[arg-type]
    update_field, draw = UPDATES[coll]
    values = random.Random(f"{ctx.seed}:{ctx.title}:values")
    history = History(lambda id_: model.get(coll, id_))
    reads = ReadStats()
    counts = {"updates_after_delete": 0}
    clock = history.clock

    rows: list[dict[str, Any]] = []

    def next_op() -> CrudOperation:
        op = workload.next_operation()
        if op.op == "create":
            if not rows:  # rows are built in chunks: building one costs more than a fast create
                rows.extend(reversed(datasets.build(coll, _ROW_CHUNK, ctx.seed, ctx.allocate(coll, _ROW_CHUNK))))
            return CrudOperation("create", None, rows.pop())
        if op.op == "update":
            return CrudOperation("update", op.key, {update_field: draw(values)})
        return op

    def judge(token: int, id_: str, props: Any, rs: int, re: int) -> None:
        reads.add(*history.judge(id_, props, rs, re))
        history.forget(token)

    async def execute(op: CrudOperation) -> None:
        client = next_client()
        if op.op == "read":
            token, rs = history.begin_read()
            try:
                doc = await client.get(coll, op.key)
            except BaseException:
                history.forget(token)
                raise
            defer(judge, token, op.key, None if doc is None else doc.props, rs, clock())
        elif op.op == "create":
            start = clock()
            ack = await client.create(coll, [op.props])
            end = clock()
            (id_,) = ack.ids
            history.record_create(id_, op.props, start, end)
            pool.add(id_)
        elif op.op == "update":
            h = history.begin_write(op.key, op.props)
            try:
                await client.update(coll, op.key, op.props)
            except Exception:
                if any(w.value is False and w.start < clock() for w in history.regs[op.key][EXISTS]):
                    history.abandon_write(h)  # lost the race with this entity's delete
                    counts["updates_after_delete"] += 1
                    return
                raise
            history.end_write(h)
        else:
            h = history.begin_write(op.key, {EXISTS: False})
            await client.delete(coll, op.key)
            history.end_write(h)

    ctx.recorder.extra["crud"] = {"preset": mix.name, "weights": mix.weights(), "collection": coll,
                                  "initial_entities": len(initial_ids), "clients": len(clients)}
    await drive(ctx, k, execute, next_op, ctx.seed)
    await asyncio.sleep(0)  # let deferred read verdicts run
    ctx.recorder.count("updates_after_delete", counts["updates_after_delete"])
    reads.record(ctx, "reads", "every read returned the value of an acknowledged (or concurrent) write")
    # read from the authority: through an ephemeral the whole collection can be more than
    # one protocol message may carry
    state = await verify_final_state(ctx, ctx.durable_of(node), coll, history, initial_ids)
    model.data[coll] = state


register_phase(PhaseSpec(
    name="crud",
    summary="weighted create/read/update/delete mix (presets write-heavy, read-heavy, balanced); "
            "closed or open loop; reads and final state checked",
    run=run,
    knobs=CrudKnobs,
    needs=("create", "get", "update", "delete", "fetch"),
    targets=("durable", "ephemeral"),
))

__all__ = ["CrudKnobs", "run"]
