"""The mix phases (`crud`, `ycsb-a` … `ycsb-f` but `ycsb-e`) with their clients on workers.

With the knob `processes` > 0 the phase's clients run in client workers: worker processes of
this machine, or Ray actors on the cluster `runner.placement` names (`workers` actors, else
`processes`), the fleets the realtime phases use (`realtime.start_worker_fleet`). Each worker
opens its own connections to every durable node over the stack's network connector (the
stack's `connection_address` / `connect_address` hooks; a stack that cannot give a remote
client an address makes the phase `unsupported`) and runs the in-process mix code
(`CrudRun`, `YcsbRun`) on its share:

- keys: crud — every `processes`-th id of each group's dataset (and what it creates); YCSB —
  the table's key numbers `k` with `k % workers == worker` (its stream's key number `j` is the
  table's `j * workers + worker`; its inserts continue that way);
- its own seeded stream (the in-process stream's generator, the worker's seed): each worker
  reports the kinds it drew and the driver replays the generator to check them exactly;
- its share of `workers`, `operations` and `rate`; `duration_s`, `warmup_s`, `ramp_up_s` as set.

No entity is written by two workers, so each worker's `History` judges its reads exactly.
Steps go through the driver as barriers (`ShardedFleet.job`): every worker prepared (its
connections open) before any starts; all finished before any judges the final state; then
the driver checks that every entity of the store is exactly one worker's, merges the per-kind
latency histograms (exactly: they are mergeable), sums counters, combines checks (one failed
on any worker fails the phase, naming it) and reports where the clients ran (`placement`,
`mode`, per worker `workers`). `ycsb-e` is unsupported on workers: a scan's slice crosses
the workers' key shares.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from sprout_harness.contracts import Unsupported, hooks
from sprout_harness.contracts.client import Capabilities, Client
from sprout_harness.load.fleet import close_clients
from sprout_harness.metrics.histogram import Histogram
from sprout_harness.metrics.recorder import PhaseRecorder
from sprout_harness.workloads.context import Model, NodeRef, PhaseContext
from sprout_harness.workloads.loadphase import LoadKnobs, fetch_collection, verify_final_states
from sprout_harness.workloads.realtime import fleet_mode, start_worker_fleet, worker_address

RUNNER = f"{__name__}:MixJob"
ROW_BLOCK = 256  # rows a worker reserves at a time (crud builds its create rows in chunks of this)
MAX_CONNECTIONS = 8  # per worker and durable node
POLL_S = 0.2


def split(total: int, parts: int, part: int) -> int:
    """Part `part` of `total` split into `parts` as evenly as whole numbers allow."""
    return total // parts + (1 if part < total % parts else 0)


def worker_knobs(k: LoadKnobs, workers: int, w: int) -> dict[str, Any]:
    """Worker `w`'s knobs: its share of `workers`, `operations` and `rate`; the rest as set."""
    d = dataclasses.asdict(k)
    d["processes"] = 0
    d["workers"] = max(1, split(k.workers, workers, w))
    d["operations"] = split(k.operations, workers, w)
    if k.rate is not None:
        d["rate"] = k.rate / workers
    return d


# --- the driver's side --------------------------------------------------------------------------


async def run_on_workers(ctx: PhaseContext, k: Any, mix: Any, factory: str) -> None:
    """Run `mix` (a `CrudRun` or `YcsbRun` of this process, prepared: its dataset or table in
    the models) with knobs `k` on `k.processes` workers; each builds its own share with
    `factory` (`module:attr`, called with its context, knobs and `(worker, workers)`)."""
    if ctx.target != "durable":
        raise Unsupported(
            "clients on workers (processes > 0) reach the durable nodes over the network; "
            "target ephemeral runs in this process only (processes: 0)"
        )
    (address_of,) = hooks.require(ctx, "connection_address")
    if not callable(getattr(type(ctx.stack), "connect_address", None)):
        hooks.require(ctx, "connect_address")
    coll = k.collection
    groups = sorted({n.group for n in ctx.targets})
    addresses = {g: await worker_address(ctx, address_of, ctx.durables[g].index, "") for g in groups}
    rec = ctx.recorder
    fleet = await start_worker_fleet(ctx, k.processes, addresses[groups[0]], "")
    try:
        n = fleet.processes
        ctx.require(
            "every worker has at least one operation",
            k.operations == 0 or k.operations >= n,
            f"operations {k.operations} split over {n} workers",
        )
        shares = [mix.shares(g, n) for g in groups]
        empty = [f"group {g}, worker {w}" for g, share in zip(groups, shares) for w in range(n) if not share[w]]
        ctx.require(
            f"every worker has a share of {coll!r}",
            not empty,
            f"fewer entities than workers: no share for {', '.join(empty[:3])}",
        )
        connections = max(1, min(MAX_CONNECTIONS, -(-k.workers // n)))
        seq_base = ctx.sequences.get(coll, ctx.datasets.get(coll, 0))
        params = [
            {
                "runner": RUNNER,
                "params": {
                    "factory": factory,
                    "knobs": worker_knobs(k, n, w),
                    "title": f"{ctx.title}#worker{w}",
                    "seed": ctx.seed * 7919 + 104_729 * (w + 1),
                    "share": w,
                    "shares": n,
                    "groups": [
                        {"group": g, "address": addresses[g], "docs": share[w]} for g, share in zip(groups, shares)
                    ],
                    "connections": connections,
                    "check_timeout_s": ctx.check_timeout_s,
                    "datasets": dict(ctx.datasets),
                    "seq_base": seq_base,
                },
            }
            for w in range(n)
        ]
        rec.extra["mode"] = fleet_mode(ctx, k.processes)
        if "placement" not in rec.extra:  # Ray actors: set with their nodes and clocks
            rec.extra["placement"] = f"local: {n} worker processes"
        await fleet.job("prepare", params)  # barrier: every worker's connections open
        rec.start()
        await fleet.job("start")
        stopping, done = False, 0
        while True:
            polls = await fleet.job("poll")
            now = sum(int(p["done"]) for p in polls)
            ctx.advance(now - done)
            done = now
            if all(p["finished"] for p in polls):
                break
            if ctx.stop_requested and not stopping:
                await fleet.job("stop")
                stopping = True
            await asyncio.sleep(POLL_S)
        rec.stop()
        results = await fleet.job("finish")  # barrier: all ran before any judges the final state
        if ctx.stop_requested:
            raise asyncio.CancelledError("stop requested")
        await _merge(ctx, k, mix, groups, results, seq_base)
    finally:
        await fleet.close()


async def _merge(
    ctx: PhaseContext,
    k: Any,
    mix: Any,
    groups: list[int],
    results: list[dict[str, Any]],
    seq_base: int,
) -> None:
    """The workers' figures and verdicts into the phase (see the module docstring)."""
    rec, coll = ctx.recorder, k.collection
    checks: dict[str, list[str]] = {}
    load: dict[str, Any] = {}
    per_worker = []
    for w, r in enumerate(results):
        ops = {}
        for op, d in r["latencies"].items():
            h = Histogram.from_dict(d)
            rec.latency(op).merge(h)
            ops[op] = h.count
        for name, v in r["counters"].items():
            if name not in ("achieved_rate_ops_s", "target_rate_ops_s"):
                rec.count(name, v)
        for name, ok, detail in r["checks"]:
            failed = checks.setdefault(name, [])
            if not ok:
                failed.append(f"worker {w}: {detail}")
        for cat, (count, samples) in r["errors"].items():
            for s in samples[:count]:
                rec.error(cat, f"worker {w}: {s}")
            for _ in range(count - len(samples)):
                rec.error(cat)
        wl = r["load"] or {}
        for key in ("issued", "completed", "errors", "late", "dropped", "unstarted", "cancelled", "warmup_ops"):
            load[key] = load.get(key, 0) + int(wl.get(key, 0))
        per_worker.append(
            {"worker": w, "pid": r["pid"], "ops": ops, "completed": wl.get("completed", 0), "drawn": r["drawn"]}
        )
        if r["seq_end"] > seq_base:
            ctx.sequences[coll] = max(ctx.sequences.get(coll, 0), r["seq_end"])
    for name, failed in checks.items():
        ctx.check(name, not failed, "; ".join(failed)[:600])
    # every worker's stream is the generator's: replay it for the kinds it drew
    wrong = []
    for w, r in enumerate(results):
        for seed, drawn in r["drawn"]:
            expect = mix.expected_drawn(seed, sum(drawn.values()))
            if expect != drawn:
                wrong.append(f"worker {w}: drew {drawn}, its stream gives {expect}")
    ctx.check_none("every worker ran its seeded share of the operation stream", wrong)
    measured = sum(sum(p["ops"].values()) for p in per_worker)
    ctx.check(
        "every completed operation is in the merged latency figures",
        measured == load.get("completed", 0) - load.get("errors", 0) == sum(h.count for h in _lat(rec)),
        f"{measured} in the workers' histograms, {load.get('completed', 0)} completed ({load.get('errors', 0)} failed)",
    )
    wall_s = rec.elapsed_ns / 1e9
    achieved = load.get("completed", 0) / wall_s if wall_s > 0 else 0.0
    rec.count("achieved_rate_ops_s", round(achieved))
    if k.rate is not None:
        rec.count("target_rate_ops_s", round(k.rate))
    rec.extra["load"] = {
        **load,
        "mode": "open-loop" if k.rate is not None else "closed-loop",
        "workers": k.workers,
        "target_rate": k.rate,
        "achieved_rate": achieved,
        "measured_s": wall_s,
    }
    rec.extra["achieved_rate"] = achieved
    rec.extra["workers"] = per_worker
    # the store as a whole: every entity is exactly one worker's (each judged it against its history)
    for j, g in enumerate(groups):
        owned = [i for r in results for i in r["owned"][j]]
        docs = await fetch_collection(ctx.durables[g].client, coll, len(owned))
        state = {d.id: dict(d.props) for d in docs}
        strays = sorted(set(state) - set(owned))
        ctx.check(
            "every entity in the store is exactly one worker's",
            not strays and len(owned) == len(set(owned)) == len(state),
            f"group {g}: {len(state)} entities, {len(owned)} judged by workers "
            f"({len(owned) - len(set(owned))} twice), none judged: {strays[:2]}",
        )
        ctx.models[g].data[coll] = state


def _lat(rec: PhaseRecorder) -> list[Histogram]:
    return [rec.latency(op) for op in rec.peek().latencies]


# --- the worker's side ----------------------------------------------------------------------------


@dataclass
class _WorkerContext(PhaseContext):
    """A phase context in a client worker: `allocate` hands out rows in blocks interleaved
    with the other workers' (block `b` of worker `w` is the `b * workers + w`-th after
    `seq_base`), so no two workers create rows with the same numbers."""

    share: int = 0
    shares: int = 1
    seq_base: int = 0
    blocks: dict[str, int] = field(default_factory=dict)
    seq_end: int = 0

    def allocate(self, kind: str, count: int) -> int:
        if count > ROW_BLOCK:
            raise ValueError(f"a client worker allocates at most {ROW_BLOCK} rows at a time, not {count}")
        b = self.blocks.get(kind, 0)
        self.blocks[kind] = b + 1
        start = self.seq_base + (b * self.shares + self.share) * ROW_BLOCK
        self.seq_end = max(self.seq_end, start + ROW_BLOCK)
        return start


class MixJob:
    """A mix phase's share in one client worker (`WorkerState`'s job protocol): its own
    connections, its share of the keys, its own recorder."""

    def __init__(self, connect: Callable[[Any, int], Awaitable[Client]], params: dict[str, Any]) -> None:
        self.connect, self.p = connect, params
        self.clients: list[Client] = []
        self.done = 0
        self.ctx: _WorkerContext | None = None
        self.mix: Any = None
        self.stopped = False

    async def _open(self, address: Any) -> Client:
        c = await self.connect(address, self.p["share"] * 1_000_000 + len(self.clients))
        self.clients.append(c)
        return c

    def _advance(self, n: int) -> None:
        self.done += n

    async def prepare(self) -> dict[str, Any]:
        p = self.p
        coll = p["knobs"]["collection"]
        durables: list[NodeRef] = []
        ephemerals: list[NodeRef] = []
        models: dict[int, Model] = {}
        for g in p["groups"]:
            group = g["group"]
            durables.append(NodeRef("durable", group, group, await self._open(g["address"])))
            for _ in range(p["connections"]):
                ephemerals.append(NodeRef("ephemeral", len(ephemerals), group, await self._open(g["address"])))
            model = models[group] = Model()
            for id_, props in g["docs"]:
                model.put(coll, id_, props)
        self.ctx = ctx = _WorkerContext(
            title=p["title"],
            target="ephemeral",  # each of `connections` a client of the group's durable node
            recorder=PhaseRecorder(p["title"]),
            capabilities=Capabilities(),
            durables=durables,
            ephemerals=ephemerals,
            models=models,
            datasets=dict(p["datasets"]),
            seed=p["seed"],
            check_timeout_s=p["check_timeout_s"],
            advance=self._advance,
            share=p["share"],
            shares=p["shares"],
            seq_base=p["seq_base"],
        )
        module, _, path = str(p["factory"]).partition(":")
        attr, _, key = path.partition(".")
        factory = getattr(importlib.import_module(module), attr)
        if key:  # `module:MAPPING.key`
            factory = factory[key]
        self.mix = factory(ctx, p["knobs"], (p["share"], p["shares"]))
        await self.mix.prepare()
        return {"ok": True, "pid": os.getpid(), "connections": len(self.clients)}

    async def run(self) -> None:
        assert self.ctx is not None
        try:
            await self.mix.drive()
        except asyncio.CancelledError:
            if not self.ctx.stop_requested:
                raise
            self.stopped = True

    def progress(self) -> dict[str, Any]:
        return {"done": self.done}

    def stop(self) -> None:
        if self.ctx is not None:
            self.ctx.stop_requested = True

    async def finish(self) -> dict[str, Any]:
        ctx = self.ctx
        assert ctx is not None
        self.mix.record()
        owned = await verify_final_states(ctx, self.mix.lanes, self.p["knobs"]["collection"], own_only=True)
        res = ctx.recorder.result()
        return {
            "latencies": {op: h.to_dict() for op, h in res.latencies.items()},
            "counters": res.counters,
            "checks": [[c.name, c.ok, c.detail] for c in res.checks],
            "errors": {cat: [e.count, list(e.samples)] for cat, e in res.errors.items()},
            "load": res.extra.get("load"),
            "drawn": self.mix.drawn(),
            "owned": owned,
            "seq_end": ctx.seq_end,
            "stopped": self.stopped,
            "pid": os.getpid(),
        }

    async def close(self) -> None:
        await close_clients(self.clients)
        self.clients = []


__all__ = ["MixJob", "run_on_workers", "split", "worker_knobs"]
