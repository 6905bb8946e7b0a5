"""crud — a weighted create / read / update (partial) / delete mix over a seeded dataset.

Operations come from `crud_mixes.CrudWorkload` (presets `write-heavy`, `read-heavy`,
`balanced`, or `preset: custom` with `weights`) over the ids of the seeded collection;
creates insert new rows of the dataset kind (continuing its `seq`), updates set one
property, deletes remove the entity (its id leaves the pool when the delete is generated).
The load driver runs them (closed loop, or open loop at `rate`) on every durable group in
turn: through its durable node, or through each of its ephemerals in turn (`target:
ephemeral`); each group has its own ids, stream and history. Latency per op kind:
`create`, `read`, `update`, `delete`.

Checks: every read returned a value some acknowledged (or concurrent) write gave it (see
`loadphase.History`); at the end a fetch of the whole collection equals the expected state
built from every acknowledged create, update and delete; no operation failed. An update
rejected because a delete of the same entity ran first is the expected outcome of that
race (counter `updates_after_delete`), not an error.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

from sprout_harness.contracts.errors import ConfigError
from sprout_harness.workloads import datasets
from sprout_harness.workloads.catalog import PhaseSpec, register_phase
from sprout_harness.workloads.context import PhaseContext
from sprout_harness.workloads.knobs import knob
from sprout_harness.workloads.loadphase import (
    EXISTS,
    History,
    LoadKnobs,
    ReadStats,
    defer,
    drive,
    lane_clients,
    lane_turns,
    verify_final_states,
)
from sprout_harness.workloads.phases.mixes import remote
from sprout_harness.workloads.phases.mixes.crud_mixes import (
    KINDS,
    PRESETS,
    CrudOperation,
    CrudWorkload,
    KeyPool,
    crud_mix,
    drawn_kinds,
)

_ROW_CHUNK = 256
# The property an update sets, per dataset kind, and how to draw a value of its one type.
UPDATES: dict[str, tuple[str, Any]] = {
    "albums": ("rating", lambda r: round(r.uniform(0.0, 5.0), 2)),
    "pets": ("weight", lambda r: round(r.uniform(0.1, 60.0), 1)),
}


@dataclass
class CrudKnobs(LoadKnobs):
    collection: str = knob("pets", "dataset kind (and collection) the mix runs on", choices=datasets.kinds())
    preset: str = knob(
        "balanced", "operation weights: a preset, or custom (then `weights`)", choices=(*PRESETS, "custom")
    )
    weights: dict[str, float] = knob({}, "with preset custom: weight per operation (create, read, update, delete)")
    key_distribution: str = knob("uniform", "which live ids operations pick", choices=("uniform", "zipfian"))

    def validate(self, path: str) -> None:
        super().validate(path)
        if self.preset == "custom":
            if not self.weights:
                raise ConfigError(
                    "preset custom needs weights, e.g. {create: 1, read: 8, update: 1, delete: 0}", f"{path}.weights"
                )
            for name, w in self.weights.items():
                if name not in KINDS:
                    raise ConfigError(f"unknown operation; allowed: {', '.join(KINDS)}", f"{path}.weights.{name}")
                if w < 0:
                    raise ConfigError(f"got {w}; weights must be >= 0", f"{path}.weights.{name}")
            if not any(w > 0 for w in self.weights.values()):
                raise ConfigError(f"got {self.weights}; at least one weight must be > 0", f"{path}.weights")
        elif self.weights:
            raise ConfigError(
                f"weights are only used with preset custom (preset is {self.preset!r})", f"{path}.weights"
            )


class _Lane:
    """One durable group's share of the mix: its clients (the durable node, or each of its
    ephemerals in turn), its ids, its own operation stream and the history that judges it."""

    def __init__(self, ctx: PhaseContext, k: CrudKnobs, group: int, reads: ReadStats, counts: dict[str, int]) -> None:
        coll = self.coll = k.collection
        self.ctx, self.group, self.reads, self.counts = ctx, group, reads, counts
        self.clients, self.next_client = lane_clients(ctx, group)
        self.model = ctx.models[group]
        self.initial_ids = sorted(self.model.ids(coll))
        ctx.require(
            "dataset present",
            bool(self.initial_ids),
            f"collection {coll!r} is empty in group {group}: set datasets.{coll} > 0",
        )
        self.pool = KeyPool(self.initial_ids)
        # group 0 draws exactly the stream a one-group run draws
        seed = self.workload_seed = ctx.seed if group == 0 else ctx.seed * 1_000_003 + group
        self.workload = CrudWorkload(
            crud_mix(k.weights if k.preset == "custom" else k.preset),
            self.pool,
            seed=seed,
            key_distribution=k.key_distribution,
        )  # type: ignore[arg-type]
        self.update_field, self.draw = UPDATES[coll]
        self.values = random.Random(f"{ctx.seed}:{ctx.title}:values" + (f":{group}" if group else ""))
        self.rows: list[dict[str, Any]] = []
        model = self.model
        self.history = History(lambda id_: model.get(coll, id_))

    def next_op(self) -> CrudOperation:
        op = self.workload.next_operation()
        if op.op == "create":
            rows = self.rows
            if not rows:  # rows are built in chunks: building one costs more than a fast create
                ctx = self.ctx
                rows.extend(
                    reversed(datasets.build(self.coll, _ROW_CHUNK, ctx.seed, ctx.allocate(self.coll, _ROW_CHUNK)))
                )
            return CrudOperation("create", None, rows.pop())
        if op.op == "update":
            return CrudOperation("update", op.key, {self.update_field: self.draw(self.values)})
        return op

    def judge(self, token: int, id_: str, props: Any, rs: int, re: int) -> None:
        self.reads.add(*self.history.judge(id_, props, rs, re))
        self.history.forget(token)

    async def execute(self, op: CrudOperation) -> None:
        client, coll, history = self.next_client(), self.coll, self.history
        clock = history.clock
        if op.op == "read":
            token, rs = history.begin_read()
            try:
                doc = await client.get(coll, op.key)
            except BaseException:
                history.forget(token)
                raise
            defer(self.judge, token, op.key, None if doc is None else doc.props, rs, clock())
        elif op.op == "create":
            start = clock()
            ack = await client.create(coll, [op.props])
            end = clock()
            (id_,) = ack.ids
            history.record_create(id_, op.props, start, end)
            self.pool.add(id_)
        elif op.op == "update":
            h = history.begin_write(op.key, op.props)
            try:
                await client.update(coll, op.key, op.props)
            except Exception:
                if any(w.value is False and w.start < clock() for w in history.regs[op.key][EXISTS]):
                    history.abandon_write(h)  # lost the race with this entity's delete
                    self.counts["updates_after_delete"] += 1
                    return
                raise
            history.end_write(h)
        else:
            h = history.begin_write(op.key, {EXISTS: False})
            await client.delete(coll, op.key)
            history.end_write(h)


class CrudRun:
    """The mix over every durable group of `ctx` (a lane each): built, driven, then judged.
    A client worker (`remote.py`) runs one on its own share of every group's keys."""

    def __init__(self, ctx: PhaseContext, k: CrudKnobs) -> None:
        self.ctx, self.k = ctx, k
        self.reads = ReadStats()
        self.counts = {"updates_after_delete": 0}
        groups = sorted({n.group for n in ctx.targets})
        self.lanes = [_Lane(ctx, k, g, self.reads, self.counts) for g in groups]

    def describe(self) -> dict[str, Any]:
        mix = self.lanes[0].workload.mix
        return {
            "preset": mix.name,
            "weights": mix.weights(),
            "collection": self.k.collection,
            "initial_entities": sum(len(lane.initial_ids) for lane in self.lanes),
            "groups": len(self.lanes),
            "clients": sum(len(lane.clients) for lane in self.lanes),
        }

    async def drive(self) -> None:
        next_op, execute = lane_turns(self.lanes, _Lane.next_op)
        await drive(self.ctx, self.k, execute, next_op, self.ctx.seed)
        await asyncio.sleep(0)  # let deferred read verdicts run

    def record(self) -> None:
        self.ctx.recorder.count("updates_after_delete", self.counts["updates_after_delete"])
        self.reads.record(self.ctx, "reads", "every read returned the value of an acknowledged (or concurrent) write")

    async def prepare(self) -> None:
        pass

    def drawn(self) -> list[tuple[int, dict[str, int]]]:
        """Per lane: its stream's seed and the operation kinds it drew."""
        return [(lane.workload_seed, dict(lane.workload.drawn)) for lane in self.lanes]

    def expected_drawn(self, seed: int, n: int) -> dict[str, int]:
        """The kinds the first `n` draws of a stream of `seed` give."""
        return dict(drawn_kinds(self.lanes[0].workload.mix, seed, n))

    def shares(self, group: int, workers: int) -> list[list[Any]]:
        """Group `group`'s entities split over `workers` (every `workers`-th id), as `[id, props]`."""
        data = self.ctx.models[group].data.get(self.k.collection, {})
        out: list[list[Any]] = [[] for _ in range(workers)]
        for i, id_ in enumerate(sorted(data)):
            out[i % workers].append([id_, data[id_]])
        return out


def worker_mix(ctx: PhaseContext, knobs: dict[str, Any], share: tuple[int, int]) -> CrudRun:
    """A client worker's share of the mix (`remote.MixJob`): its ids are those in its models."""
    return CrudRun(ctx, CrudKnobs(**knobs))


async def run(ctx: PhaseContext, k: CrudKnobs) -> None:
    mix = CrudRun(ctx, k)
    ctx.recorder.extra["crud"] = mix.describe()
    if k.processes:
        await remote.run_on_workers(ctx, k, mix, f"{__name__}:worker_mix")
        return
    await mix.drive()
    mix.record()
    await verify_final_states(ctx, mix.lanes, k.collection)


register_phase(
    PhaseSpec(
        name="crud",
        summary="weighted create/read/update/delete mix (presets write-heavy, read-heavy, balanced); "
        "closed or open loop; reads and final state checked",
        run=run,
        knobs=CrudKnobs,
        needs=("create", "get", "update", "delete", "fetch"),
        targets=("durable", "ephemeral"),
        metrics=KINDS,
    )
)

__all__ = ["CrudKnobs", "CrudRun", "run"]
