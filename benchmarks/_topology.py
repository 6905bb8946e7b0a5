"""Shared machinery of the workload benchmarks: the topology matrix, one harness run per
parameter combination, and the figures kept from it.

Each workload module (bench_create, bench_fetch, bench_live_limit, bench_writers,
bench_churn) runs its family once per commit: its `setup_cache` calls `run_family`, which
builds a config per parameter combination, runs it through the harness's topology runner
(`sprout_harness.topology.runner.run_sync`: stack factories, seeding, sync barrier,
phases with their own checks, teardown) and keeps plain figures (`figures()`): asv pickles
the cache, so no histograms or live objects cross into it.

The matrix (`PARAMS` / `PARAM_NAMES`): stack x connector x ephemeral count.
- `loam-leveldb`, `loam-postgres`: loam on its LevelDB / PostgreSQL engine;
  `pgnotify`: the second stack (plain PostgreSQL, triggers, LISTEN/NOTIFY), durable only.
- connector `inprocess` / `websocket`: how ephemerals reach the durable node. With 0
  ephemerals there is nothing to connect: the durable-only run is listed under
  `inprocess` and `websocket` is n/a.
- ephemerals 0 (phases target the durable node), 1 or 4 (phases target the ephemerals).
Combinations that make no sense, or that cannot run here (no `SPROUT_PG_DSN`, pgnotify
not installed, a commit that predates the harness), are n/a (`NotImplementedError` in
`setup`). A run whose phase status is not "ok" (a check failed: a lost write, a stale
window, a missed notification...) is a *failure* of that combination, raised in `setup`.

Everything from the project is imported lazily through `require()`, so older commits show
n/a instead of breaking discovery of the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

from ._common import album_docs, album_payloads, postgres_dsn_or_skip, require, scale

STACKS = ("loam-leveldb", "loam-postgres", "pgnotify")
CONNECTORS = ("inprocess", "websocket")
EPHEMERALS = (0, 1, 4)
PARAM_NAMES = ["stack", "connector", "ephemerals"]
PARAMS = [list(STACKS), list(CONNECTORS), list(EPHEMERALS)]

# stack parameter value -> (stack entry point name, storage engine)
STACK_SETTINGS = {
    "loam-leveldb": ("loam", "leveldb"),
    "loam-postgres": ("loam", "postgres"),
    "pgnotify": ("pgnotify", "postgres"),
}
# The live-limit windows are `genre = G ORDER BY rating DESC LIMIT K`: with the compound
# index [genre, rating] a LevelDB refill walks the genre's entries in rating order from the
# window's last member and stops after K matches. LevelDB only: PostgreSQL would build the
# btree ((doc -> 'genre'), (doc -> 'rating')), but the compiled ORDER BY sorts by type-rank
# CASE expressions it cannot match, so it would only add write cost (docs/storage.md), and
# pgnotify takes single fields.
INDEXES = {"albums": ["genre", "year", "rating", ["genre", "rating"]], "pets": ["shelter", "species"]}
NA, ERROR = "na", "error"
CACHE_TIMEOUT = 1200  # a whole family (every combination) at full scale, with margin

Key = tuple[str, str, int]


# --- sizes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """Workload sizes per `SPROUT_BENCH_SCALE` (see `_common.scale()`)."""

    dataset: int  # seeded albums / pets
    create: int  # entities of the harness's create phase
    get_ops: int
    fetch_ops: int
    live_subscribers: int
    live_ops: int
    writer_ops: int
    churn_subscribers: int
    churn_cycles: int
    lag_samples: int
    idle_queries: int
    album_batch: int  # entities per create call in the album-payload workloads


SIZES = {
    "tiny": Sizes(300, 300, 100, 24, 2, 10, 200, 2, 1, 30, 20, 100),
    "quick": Sizes(600, 600, 200, 36, 3, 20, 400, 3, 1, 100, 40, 500),
    "full": Sizes(3000, 4000, 1000, 200, 4, 150, 3000, 6, 4, 1000, 200, 500),
}


def sizes() -> Sizes:
    return SIZES[scale().name]


# --- the matrix ------------------------------------------------------------------------------


def not_applicable(stack: str, connector: str, ephemerals: int) -> str | None:
    """Why a combination makes no sense (n/a), or None."""
    if stack == "pgnotify" and ephemerals:
        return "pgnotify builds no ephemeral nodes (durable only): n/a with ephemerals"
    if ephemerals == 0 and connector != CONNECTORS[0]:
        return f"no ephemerals, nothing to connect: the durable-only run is listed under connector={CONNECTORS[0]}"
    return None


def combinations(stacks: Sequence[str] = STACKS) -> list[Key]:
    """The combinations of `PARAMS` that make sense, restricted to `stacks`."""
    return [(s, c, e) for s, c, e in itertools.product(STACKS, CONNECTORS, EPHEMERALS)
            if s in stacks and not_applicable(s, c, e) is None]


def album_props(n: int) -> list[dict[str, Any]]:
    """`album_docs(n)` as entity properties: `id` is reserved for the entity id, so it is
    renamed `no` (same encoded size: the documents stay the anchors' 100-byte payloads)."""
    return [{("no" if k == "id" else k): v for k, v in d.items()} for d in album_docs(n)]


def config_dict(key: Key, datasets: dict[str, int], phases: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The harness config (as YAML would give it) for one combination."""
    stack, connector, ephemerals = key
    name, engine = STACK_SETTINGS[stack]
    indexes = INDEXES if engine == "leveldb" else {c: [f for f in fs if isinstance(f, str)] for c, fs in INDEXES.items()}
    storage: dict[str, Any] = {"engine": engine, "params": {"indexes": indexes}}
    if engine == "postgres":
        storage["dsn"] = postgres_dsn_or_skip()
        storage["pool_size"] = 4
    target = "ephemeral" if ephemerals else "durable"
    return {
        "name": f"asv-{stack}-{connector}-{ephemerals}",
        "seed": 42,
        "stack": {"name": name},
        "storage": storage,
        "policy": {"id": "permissive"},
        "topology": {"durable": 1, "ephemeral": ephemerals, "connector": connector},
        "datasets": dict(datasets),
        "phases": [{"name": p, "target": target, "label": p, "params": dict(params)} for p, params in phases],
        # Checks wait for convergence with a deadline; a healthy stack converges in ms, and a
        # failing one should not stall the suite (SPROUT_BENCH_CHECK_TIMEOUT: tests lower it).
        "runner": {"check_timeout_s": float(os.environ.get("SPROUT_BENCH_CHECK_TIMEOUT", "3")),
                   "sync_timeout_s": 60.0},
    }


# --- running ---------------------------------------------------------------------------------


def _ms(ns: float) -> float:
    return float(ns) / 1e6


def figures(result: Any) -> dict[str, Any]:
    """Plain figures of a RunResult: per phase, p50/p99 (ms) of every op and lag, wall time,
    counters and numeric extras. Raises for a phase that did not pass (see `entry`)."""
    out: dict[str, Any] = {}
    for ph in result.phases:
        if ph.status == "unsupported":
            out[ph.name] = {"status": NA, "reason": ph.reason or "unsupported"}
            continue
        if ph.status != "ok":
            failed = "; ".join(f"{c.name}: {c.detail}" for c in ph.failed_checks)[:600]
            errors = "; ".join(f"{k} x{e.count}: {e.samples[:1]}" for k, e in ph.errors.items())[:400]
            raise RuntimeError(f"phase {ph.name} {ph.status}: {ph.reason or ''}"
                               + (f"; failed checks: {failed}" if failed else "")
                               + (f"; errors: {errors}" if errors else ""))
        summaries = {}
        latencies = dict(ph.latencies)
        fetches = [h for op, h in latencies.items() if op.startswith("fetch:")]
        if fetches:  # every predicate family together
            merged = type(fetches[0])()
            for h in fetches:
                merged.merge(h)
            latencies["fetch:all"] = merged
        for group, hists in (("latency", latencies), ("lag", ph.lags)):
            summaries[group] = {}
            for op, h in hists.items():
                s = h.summary()
                if s.get("count", 0):
                    summaries[group][op] = {"p50": _ms(s["p50"]), "p99": _ms(s["p99"]), "mean": _ms(s["mean"]),
                                            "count": int(s["count"])}
        out[ph.name] = {
            "status": "ok",
            **summaries,
            "wall_s": ph.wall_ns / 1e9,
            "counters": dict(ph.counters),
            "extra": {k: float(v) for k, v in ph.extra.items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)},
        }
    return out


def entry(key: Key, datasets: dict[str, int], phases: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Run one combination: {"status": "ok", "phases": ...}, or status "na" / "error" with a reason."""
    stack = key[0]
    try:
        config = require("sprout_harness.config")
        runner = require("sprout_harness.topology.runner")
        plugins = require("sprout_harness.plugins")
        register_phases()
        try:
            plugins.resolve_stack(STACK_SETTINGS[stack][0])
        except Exception as exc:  # not installed in this environment (or this commit)
            raise NotImplementedError(f"{stack}: {exc}") from None
        raw = config_dict(key, datasets, phases)
    except NotImplementedError as exc:
        return {"status": NA, "reason": str(exc)}
    where = "/".join(map(str, key))
    t0 = time.perf_counter()
    try:
        cfg = config.config_from_dict(raw)
        result = runner.run_sync(cfg)
        if result.status not in ("ok", "failed"):
            raise RuntimeError(f"run {result.status}: {result.reason}")
        figs = figures(result)
    except Exception as exc:
        return {"status": ERROR, "reason": f"{where}: {type(exc).__name__}: {exc}"}
    return {"status": "ok", "phases": figs, "seconds": time.perf_counter() - t0}


def run_family(datasets: dict[str, int], phases: Sequence[tuple[str, dict[str, Any]]],
               stacks: Sequence[str] = STACKS, log: Callable[[str], None] | None = None) -> dict[Key, dict[str, Any]]:
    """`entry()` for every sensible combination (the rest are n/a in `FamilyBenchmark.setup`)."""
    out = {}
    for key in combinations(stacks):
        out[key] = entry(key, datasets, phases)
        if log is not None or os.environ.get("SPROUT_BENCH_VERBOSE"):
            (log or print)(f"{key}: {out[key]['status']} {out[key].get('seconds', 0):.1f}s {out[key].get('reason', '')}")
    return out


class FamilyBenchmark:
    """Base of the workload classes: the matrix, n/a and failures in `setup`, figure lookup.

    Subclasses define `setup_cache` themselves (asv keys the cache by the defining module
    and line, so a shared definition here would make every family share one cache).
    """

    params = PARAMS
    param_names = PARAM_NAMES
    unit = "ms"
    timeout = CACHE_TIMEOUT
    stacks: tuple[str, ...] = STACKS
    phase = ""  # the phase the track_ methods read by default

    def setup(self, cache: Any, stack: str, connector: str, ephemerals: int) -> None:
        from ._common import skip_if_skipped

        skip_if_skipped(cache)
        why = not_applicable(stack, connector, ephemerals)
        if why is None and stack not in self.stacks:
            why = f"{stack}: this workload does not apply to it"
        if why is not None:
            raise NotImplementedError(why)
        got = cache.get((stack, connector, ephemerals))
        if got is None:
            raise NotImplementedError(f"{stack}/{connector}/{ephemerals}: not run")
        if got["status"] == NA:
            raise NotImplementedError(got["reason"])
        if got["status"] == ERROR:
            raise RuntimeError(got["reason"])  # a failing check or a crash: fail loudly
        self.phases = got["phases"]

    def phase_figures(self, phase: str | None = None) -> dict[str, Any]:
        ph = self.phases[phase or self.phase]
        if ph["status"] != "ok":
            raise NotImplementedError(ph.get("reason", "unsupported"))
        return ph

    def fig(self, group: str, op: str, pct: str, phase: str | None = None) -> float:
        """p50/p99 (ms) of `op` in `group` ("latency" or "lag") of a phase."""
        ph = self.phase_figures(phase)
        try:
            return ph[group][op][pct]
        except KeyError:
            raise RuntimeError(f"phase {phase or self.phase}: no {group} figure for {op!r} "
                               f"(has: {sorted(ph.get(group, {}))})") from None

    def has_extra(self, name: str, phase: str | None = None) -> bool:
        return name in self.phase_figures(phase).get("extra", {})

    def extra(self, name: str, phase: str | None = None) -> float:
        ph = self.phase_figures(phase)
        try:
            return ph["extra"][name]
        except KeyError:
            raise RuntimeError(f"phase {phase or self.phase}: no figure {name!r} (has: {sorted(ph['extra'])})") from None


# --- phases the benchmarks add to the harness's catalog -----------------------------------------
#
# The workload catalog is open (catalog.register_phase, the same mechanism as the
# `sprout_harness.workloads` entry point). These phases measure what the targets compare
# with the anchors: the anchors' own payloads (`album_props`), one operation at a time.

_REGISTERED: list[bool] = []


def register_phases() -> None:
    if _REGISTERED:
        return
    catalog = require("sprout_harness.workloads.catalog")
    knobs = require("sprout_harness.workloads.knobs")
    phases = _phase_definitions(knobs.knob)
    for name, (summary, run, knob_cls, needs) in phases.items():
        catalog.register_phase(catalog.PhaseSpec(name=name, summary=summary, run=run, knobs=knob_cls, needs=needs))
    _REGISTERED.append(True)


def _phase_definitions(knob: Callable[..., Any]) -> dict[str, tuple]:
    from dataclasses import dataclass as dc

    query = require("sprout_harness.contracts.query")
    hooks = require("sprout_harness.contracts.hooks")

    @dc
    class AlbumsKnobs:
        count: int = knob(1000, "album payloads per repetition", min=1)
        batch_size: int = knob(500, "entities per create call", min=1)
        repeats: int = knob(3, "repetitions (fresh collection each); the median is kept", min=1)
        gets: int = knob(1000, "gets per repetition (asv-albums-get), random ids", min=1)

    async def create_albums(ctx: Any, node: Any, coll: str, k: AlbumsKnobs, docs: list[dict]) -> tuple[float, list[str]]:
        ids: list[str] = []
        with _no_gc():
            t0 = time.perf_counter_ns()
            for i in range(0, len(docs), k.batch_size):
                batch = docs[i:i + k.batch_size]
                ack = await ctx.timed("albums_create_batch", node.client.create(coll, batch))
                ctx.require("one id per created entity", len(ack.ids) == len(batch),
                            f"{len(ack.ids)} ids for {len(batch)} entities")
                ids.extend(ack.ids)
            us = (time.perf_counter_ns() - t0) / len(docs) / 1e3
        return us, ids

    async def albums_readback(ctx: Any, node: Any, coll: str, ids: list[str], docs: list[dict]) -> None:
        sample = ctx.rng.sample(range(len(ids)), min(50, len(ids)))

        async def landed() -> bool:
            for j in sample:
                d = await node.client.get(coll, ids[j])
                if d is None or d.props.get("no") != docs[j]["no"]:
                    return False
            return True

        ctx.require("every album landed", await ctx.retry(landed), f"a sample of {coll} is missing or differs")

    async def albums_create(ctx: Any, k: AlbumsKnobs) -> None:
        """Album payloads created in batches on the first target; us per entity (median)."""
        node = ctx.targets[0]
        docs = album_props(k.count)
        per_entity = []
        for r in range(k.repeats):
            coll = f"asv_albums_c{r}"
            us, ids = await create_albums(ctx, node, coll, k, docs)
            per_entity.append(us)
            await albums_readback(ctx, node, coll, ids, docs)
        ctx.recorder.extra["create_us_per_entity"] = sorted(per_entity)[len(per_entity) // 2]

    async def albums_get(ctx: Any, k: AlbumsKnobs) -> None:
        """Album payloads created, then every one read by id in random order; us per get (median)."""
        node = ctx.targets[0]
        docs = album_props(k.count)
        coll = "asv_albums_g"
        _, ids = await create_albums(ctx, node, coll, k, docs)
        await albums_readback(ctx, node, coll, ids, docs)
        order = ctx.rng.sample(range(len(ids)), min(k.gets, len(ids)))
        get = node.client.get
        for j in order:  # warm-up pass (both sides read what was just written, like the anchor)
            await get(coll, ids[j])
        per_get = []
        for _ in range(k.repeats):
            wrong = 0
            with _no_gc():
                t0 = time.perf_counter_ns()
                for j in order:
                    d = await get(coll, ids[j])
                    if d is None or d.props.get("no") != docs[j]["no"]:
                        wrong += 1
                per_get.append((time.perf_counter_ns() - t0) / len(order) / 1e3)
            ctx.require("every get returned its album", wrong == 0, f"{wrong} of {len(order)} gets wrong")
        ctx.recorder.extra["get_us"] = sorted(per_get)[len(per_get) // 2]
        # loam's own node API under the adapter (no harness Doc conversion), when there is one
        inner, inner_ctx = getattr(node.client, "node", None), getattr(node.client, "ctx", None)
        if inner is not None and inner_ctx is not None and hasattr(inner, "get"):
            per_get = []
            for _ in range(k.repeats):
                with _no_gc():
                    t0 = time.perf_counter_ns()
                    for j in order:
                        await inner.get(coll, ids[j], inner_ctx)
                    per_get.append((time.perf_counter_ns() - t0) / len(order) / 1e3)
            ctx.recorder.extra["node_get_us"] = sorted(per_get)[len(per_get) // 2]

    @dc
    class LagKnobs:
        samples: int = knob(200, "writes, one at a time, each waited for", min=1)

    async def notify_lag(ctx: Any, k: LagKnobs) -> None:
        """One plain live query on every target; one update at a time through the durable
        node, each waited for on every target before the next: commit -> notification lag
        without queueing (with 4 ephemerals, a fan-out to 4 subscribers)."""
        coll = "asv_lag"
        docs = album_props(8)
        for d in docs:
            d["hot"] = True
        writer = ctx.durables[0]
        ack = await writer.client.create(coll, docs)
        ids = list(ack.ids)
        got = asyncio.Event()
        lags: list[int] = []
        seen: list[dict[str, int]] = []
        q = query.QuerySpec(query.Cond("hot", "=", True), kind="equality")
        subs = []

        on_notify = tracks_watcher(lags, got)

        # The raw anchors again, in this process and event loop, right before and after the
        # samples: a ratio to them does not depend on how the machine was doing minutes
        # earlier, when anchors.py ran in its own process (see docs/performance.md).
        from .anchors import codec_hop_p50_us, queue_hop_us, ws_one_way_latencies_us

        raw = [v for _, v in album_payloads(200)]
        # The stack's own codec plus one loop turn, no node work: how much of the in-process
        # lag the codec that the connector keeps costs by itself (when the stack says how
        # it encodes a notify)
        codec_hook = hooks.find(ctx.stack, "notify_codec")
        codec = codec_hook() if codec_hook is not None else None
        floor_docs = [dict(d, tracks=1000 + i) for i, d in enumerate(docs)]
        floors = [await codec_hop_p50_us(*codec, 2000, floor_docs)] if codec else []
        hops = [await queue_hop_us(2000, raw)]
        one_way = await ws_one_way_latencies_us(max(50, k.samples // 2), raw)
        try:
            for node in ctx.targets:
                seen.append({})
                subs.append(await ctx.timed("subscribe", node.client.subscribe(
                    coll, q, lambda n, s=seen[-1]: on_notify(n, s))))
            for node, sub in zip(ctx.targets, subs):
                ok = await ctx.retry(lambda sub=sub: _true(len(sub.results) == len(ids)))
                ctx.require("initial result", ok, f"{node.name}: {len(sub.results)} of {len(ids)} entities")
            async with ctx.stall_guard() as guard:
                for i in range(k.samples):
                    id_ = ids[i % len(ids)]
                    value = 1000 + i
                    got.clear()
                    t0 = time.perf_counter_ns()
                    await writer.client.update(coll, id_, {"tracks": value})
                    t1 = time.perf_counter_ns()
                    # Nothing but the wait between the commit and the notification (as in
                    # the raw anchors): the write's latency is recorded once it arrived.
                    # `got` first: until a notification came nothing can be done, and the
                    # check before the first wait runs inside the measured window
                    ok = await guard.wait(got, lambda: got.is_set() and all(s.get(id_, -1) >= value for s in seen))
                    ctx.recorder.record("update", t1 - t0)
                    if ctx.stop_requested:
                        raise asyncio.CancelledError("stop requested")
                    if not ctx.check("no missed notification", ok,
                                     f"update {i} ({id_} tracks={value}) not notified on every target "
                                     f"within {ctx.check_timeout_s:g} s"):
                        break
            ctx.check("commit timestamps carried", bool(lags), "no notification carried commit_ns")
            for v in lags:
                ctx.recorder.lag("notify_single", max(0, v))
            hops.append(await queue_hop_us(2000, raw))
            if codec:
                floors.append(await codec_hop_p50_us(*codec, 2000, floor_docs))
                ctx.recorder.extra["paired_codec_floor_us"] = sum(floors) / len(floors)
            one_way += await ws_one_way_latencies_us(max(50, k.samples // 2), raw)
            ctx.recorder.extra["paired_queue_hop_us"] = sum(hops) / len(hops)
            ctx.recorder.extra["paired_ws_one_way_p50_us"] = sorted(one_way)[len(one_way) // 2]
        finally:
            for sub in subs:
                await ctx.timed("unsubscribe", sub.close())

    @dc
    class IdleKnobs:
        queries: int = knob(50, "idle live queries opened on the first target", min=1)
        live_limit: int = knob(10, "LIMIT (window size) of each", min=1)

    async def idle_memory(ctx: Any, k: IdleKnobs) -> None:
        """Memory per idle live query (tracemalloc, every allocation in this process: the
        target node, and for an ephemeral the durable node's side too)."""
        import gc
        import tracemalloc

        datasets = require("sprout_harness.workloads.datasets")
        node = ctx.targets[0]
        queries = [query.QuerySpec(query.Cond("genre", "=", datasets.GENRES[i % len(datasets.GENRES)]),
                                   order_by=(query.Order("rating", descending=True), query.Order("seq")),
                                   limit=k.live_limit, kind="order_limit") for i in range(k.queries)]
        # one subscription first: lazily built structures are not charged to the idle queries
        warm = await node.client.subscribe("albums", queries[0], lambda n: None)
        await warm.close()
        subs = []
        gc.collect()
        was_tracing = tracemalloc.is_tracing()
        if not was_tracing:
            tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for q in queries:
                subs.append(await node.client.subscribe("albums", q, lambda n: None))
            await asyncio.sleep(0.05)  # let the subscriptions settle (server side of an ephemeral)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            if not was_tracing:
                tracemalloc.stop()
        full = sum(1 for s in subs if len(s.results) == k.live_limit)
        try:
            ctx.check("every window full", full == len(subs), f"{full} of {len(subs)} windows hold live_limit members")
            ctx.recorder.extra["bytes_per_idle_query"] = max(1.0, (after - before) / len(subs))
            window = sum(len(repr(dict(d.props))) + len(d.id) for s in subs for d in s.results) / len(subs)
            ctx.recorder.extra["window_repr_bytes"] = float(window)
        finally:
            for s in subs:
                await s.close()

    return {
        "asv-albums-create": ("album payloads created in batches (the anchors' payloads)", albums_create,
                              AlbumsKnobs, ("create", "get")),
        "asv-albums-get": ("album payloads read by id in random order", albums_get, AlbumsKnobs, ("create", "get")),
        "asv-notify-lag": ("commit -> notification lag, one write at a time", notify_lag, LagKnobs,
                           ("subscribe", "update", "create")),
        "asv-idle-memory": ("memory per idle ORDER BY + LIMIT live query", idle_memory, IdleKnobs,
                            ("subscribe", "live_limit", "order_by")),
    }


def tracks_watcher(lags: list[int], got: asyncio.Event) -> Callable[[Any, dict[str, int]], None]:
    """The notification callback of the lag measurements: for every entity whose `tracks`
    (>= 1000, set by the measured updates) rose past what this subscriber saw, note it in
    the subscriber's `seen` map and the lag (receipt - commit_ns) in `lags`; set `got`."""

    def on_notify(n: Any, seen_here: dict[str, int]) -> None:
        now = time.perf_counter_ns()
        if n.kind != "change":
            return
        for d in (*n.added, *n.updated):
            v = d.props.get("tracks")
            if isinstance(v, int) and v >= 1000 and v > seen_here.get(d.id, -1):
                seen_here[d.id] = v
                if n.commit_ns is not None:
                    lags.append(now - n.commit_ns)
        got.set()

    return on_notify


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Timed loops run with the cyclic GC off (as asv's own `time_` benchmarks do): one
    full collection of the benchmark process's heap would otherwise dominate a few-us op."""
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


async def _true(value: bool) -> bool:
    return value
