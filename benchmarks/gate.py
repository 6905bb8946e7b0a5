"""The pull-request gate: loam figures over a raw anchor measured right next to them, each
returned to asv as a *sample* of paired ratios so `asv continuous` can test it statistically.

Why (measured, docs/asv.md "The gate"): the absolute `track_` figures of this suite are single
values per commit. asv keeps no samples for them, so `asv continuous --factor 1.2` flags any
one-off wobble beyond 20 % (25 of 61 "slower" between two commits that differ only in a doc).
Two things are wrong with such a figure as a gate:

- it is one sample: asv cannot tell a shift from noise (it only tests benchmarks that carry
  samples; see `_samples`);
- it is absolute: a busier or slower machine (2 shared cores, other jobs) moves every figure
  of one commit's run together (the asyncio hop read 3.9 us quiet and 8.2 us busy).

So each gated figure here is a *ratio* (loam time per op / anchor time per op, lower is
better), and each of its `gate_repeats` samples pairs loam and its anchor measured right next
to each other in the same process and event loop, each side the fastest of `PASSES` passes
spread over the whole measurement: load that slows both cancels in the ratio, and a burst
that hits one pass does not make the sample. A `track_` method returns
`{"samples": [...], "number": 1}`: asv's runner (asv/runner.py,
`_run_benchmark_single_param`) treats any benchmark result that is a dict with `samples` and
`number` as a timing result, so `Results.add_result` computes stats (median, 99 % CI) from the
samples, `asv continuous` records them, and `asv compare`'s `_is_result_better` requires a
Mann-Whitney U difference (p < 0.002) on top of the factor. The value shown is the median.
With fewer than 7 samples per side that test can never reach p < 0.002 (two-sided exact
U test, complete separation at 6 + 6 gives p = 2/924), hence `gate_repeats` >= 9 in
`_common.SCALES` (15 at full scale).

The gated figures, all on loam's LevelDB engine (no PostgreSQL needed, so a pull request's
gate cannot turn n/a on a machine without it):

| benchmark | loam (per op) | anchor (per op), same process, right next to it |
|---|---|---|
| `GateLevelDB.track_create_vs_write_batch` | create of album payloads, batches of 500 | plyvel put in one write_batch, same payloads |
| `GateLevelDB.track_get_vs_plyvel_get` | get by id through the `native_get` hook: loam's node API (random ids) | plyvel get, same keys, random order |
| `GateNotifyLag.track_inprocess_lag_vs_queue_hop` | commit -> notification p50, 1 in-process ephemeral | asyncio queue hop |
| `GateNotifyLag.track_websocket_lag_vs_ws_one_way` | the same over WebSocket | websockets one-way latency p50 |

The absolute figures of the other modules stay on the page for the trend; they are not
gated (`sprout_harness.asvtools.continuous` selects `GATE_BENCH`: this module and the
statistically sampled `time_` benchmarks).
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from typing import Any

from ._common import (
    TempDir,
    album_payloads,
    album_props,
    asv_samples,
    cache_or_skip,
    require,
    scale,
    shuffled,
    skip_if_skipped,
)
from ._topology import CACHE_TIMEOUT, ERROR, NA, entry

UNIT_RATIO = "ratio"
DURABLE = ("loam-leveldb", "inprocess", 0)
INPROCESS_1 = ("loam-leveldb", "inprocess", 1)
WEBSOCKET_1 = ("loam-leveldb", "websocket", 1)
# Sizes (`_common.SCALES`): `gate_repeats` samples (paired measurements) per gated figure
# and commit; `gate_records` / `gate_gets` / `gate_lag_updates` loam ops per measurement.
#: passes over all samples: each sample keeps its fastest pass per side (loam and anchor)
PASSES = 3


_samples = asv_samples


# --- the phases (registered in the harness's open workload catalog) -------------------------

_REGISTERED: list[bool] = []


def keep_samples(extra: dict[str, Any], best: dict[str, list[float]], ratios: dict[str, tuple[str, str]]) -> None:
    """Each sample r of a phase into its `extra`: every ratio (`name#r` = num / den of that
    sample's best passes) and the raw figures beside it (`<side>_us#r`)."""
    for r in range(len(next(iter(best.values())))):
        for name, (num, den) in ratios.items():
            extra[f"{name}#{r}"] = best[num][r] / best[den][r]
        for n, v in best.items():
            extra[f"{n}_us#{r}"] = v[r]


def _register() -> None:
    if _REGISTERED:
        return
    catalog = require("sprout_harness.workloads.catalog")
    knob = require("sprout_harness.workloads.knobs").knob
    query = require("sprout_harness.contracts.query")
    anchors = require("sprout_harness.workloads.anchors")
    asv_phases = require("sprout_harness.workloads.asv_phases")
    from dataclasses import dataclass as dc

    _no_gc, tracks_watcher = anchors.no_gc, asv_phases.tracks_watcher
    queue_hop_us, ws_one_way_latencies_us = anchors.queue_hop_us, anchors.ws_one_way_latencies_us

    @dc
    class LevelDBKnobs:
        repeats: int = knob(9, "samples (each one ratio)", min=1)
        passes: int = knob(3, "passes over all samples; each sample keeps its fastest pass per side", min=1)
        count: int = knob(2000, "album payloads created per measurement (fresh collection / DB)", min=1)
        gets: int = knob(1000, "gets per measurement, random ids", min=1)
        batch_size: int = knob(500, "entities per create call", min=1)

    async def leveldb_pairs(ctx: Any, k: LevelDBKnobs) -> None:
        """Sample r: loam creates `count` album payloads (fresh collection), raw plyvel puts
        the same payloads in one write_batch (fresh DB); loam gets `gets` of them by id on
        its `native_get` hook, plyvel gets the same keys in random order (no gets, and no get
        ratio, for a stack without the hook). Every sample is measured
        once per pass, passes one after the other over all samples (so a sample's passes
        are ~R measurements apart in time); a sample keeps the fastest pass of each side."""
        plyvel = require("plyvel")
        node = ctx.targets[0]
        docs = album_props(k.count)
        pairs = album_payloads(k.count)
        # the stack's own API under the client (the `leveldb-get` target): no stand-in without it
        native = asv_phases.native_get(ctx, node)
        ctx.recorder.extra["native_get"] = float(native is not None)
        get = native or node.client.get  # keeps the loop's shape; its figures are dropped below
        tmp = TempDir("sprout-gate-")
        dbs: dict[int, Any] = {}
        reads: dict[int, tuple[str, list[str], list[bytes]]] = {}
        best: dict[str, list[float]] = {n: [math.inf] * k.repeats for n in ("create", "put", "get", "raw_get")}
        try:
            for p in range(k.passes):
                for r in range(-1 if p == 0 else 0, k.repeats):  # r = -1 warms up: dropped
                    coll = f"gate_albums_{p}_{r + 1}"
                    ids: list[str] = []
                    with _no_gc():
                        t0 = time.perf_counter_ns()
                        for i in range(0, len(docs), k.batch_size):
                            ack = await node.client.create(coll, docs[i : i + k.batch_size])
                            ids.extend(ack.ids)
                        create_us = (time.perf_counter_ns() - t0) / len(docs) / 1e3
                    ctx.require("one id per created entity", len(ids) == len(docs), f"{len(ids)} ids for {len(docs)}")
                    db = plyvel.DB(tmp.sub(f"db{p}-{r + 1}"), create_if_missing=True)
                    with _no_gc():
                        t0 = time.perf_counter_ns()
                        with db.write_batch() as wb:
                            for key, value in pairs:
                                wb.put(key, value)
                        put_us = (time.perf_counter_ns() - t0) / len(pairs) / 1e3
                    if r not in reads:  # the first pass's collection and DB serve every pass's gets
                        picks = ctx.rng.sample(range(len(ids)), min(k.gets, len(ids)))
                        reads[r] = (coll, [ids[j] for j in picks], shuffled([pairs[j][0] for j in picks], seed=r + 1))
                        dbs[r] = db
                        for id_ in reads[r][1][:50]:  # warm-up, and every get must find its album
                            ctx.require(
                                "every get returns its album", await get(coll, id_) is not None, f"{coll}/{id_} missing"
                            )
                    else:
                        db.close()
                    rcoll, rids, rkeys = reads[r]
                    with _no_gc():
                        t0 = time.perf_counter_ns()
                        for id_ in rids:
                            await get(rcoll, id_)
                        get_us = (time.perf_counter_ns() - t0) / len(rids) / 1e3
                        read = dbs[r].get
                        t0 = time.perf_counter_ns()
                        for key in rkeys:
                            read(key)
                        raw_get_us = (time.perf_counter_ns() - t0) / len(rkeys) / 1e3
                    if r < 0:
                        continue
                    for n, v in (("create", create_us), ("put", put_us), ("get", get_us), ("raw_get", raw_get_us)):
                        best[n][r] = min(best[n][r], v)
        finally:
            for db in dbs.values():
                db.close()
            tmp.cleanup()
        ratios = {"create_ratio": ("create", "put"), "get_ratio": ("get", "raw_get")}
        if native is None:
            del best["get"], best["raw_get"], ratios["get_ratio"]
        keep_samples(ctx.recorder.extra, best, ratios)

    @dc
    class LagKnobs:
        repeats: int = knob(9, "samples (each one ratio)", min=1)
        passes: int = knob(3, "passes over all samples; each sample keeps its fastest pass per side", min=1)
        updates: int = knob(100, "updates per measurement, one at a time, each awaited", min=1)

    async def lag_pairs(ctx: Any, k: LagKnobs) -> None:
        """One live query on every target. Sample r: the asyncio hop and the websockets
        one-way latency p50 (raw anchors), then `updates` updates through the durable node,
        one at a time, each awaited on every target (commit -> notification p50). Passes as
        in `leveldb_pairs`; a sample keeps the fastest pass of each side."""
        coll = "gate_lag"
        docs = album_props(8)
        for d in docs:
            d["hot"] = True
        writer = ctx.durables[0]
        ids = list((await writer.client.create(coll, docs)).ids)
        got = asyncio.Event()
        lags: list[int] = []
        seen: list[dict[str, int]] = []

        on_notify = tracks_watcher(lags, got)

        raw = [v for _, v in album_payloads(200)]
        q = query.QuerySpec(query.Cond("hot", "=", True), kind="equality")
        subs = []
        best: dict[str, list[float]] = {n: [math.inf] * k.repeats for n in ("lag", "hop", "ws_one_way")}
        try:
            for node in ctx.targets:
                seen.append({})
                subs.append(await node.client.subscribe(coll, q, lambda n, s=seen[-1]: on_notify(n, s)))
            for node, sub in zip(ctx.targets, subs):
                ok = await ctx.retry(lambda sub=sub: _true(len(sub.results) == len(ids)))
                ctx.require("initial result", ok, f"{node.name}: {len(sub.results)} of {len(ids)} entities")
            value = 1000
            async with ctx.stall_guard() as guard:
                for p in range(k.passes):
                    for r in range(-1 if p == 0 else 0, k.repeats):  # r = -1 warms up: dropped
                        hop = await queue_hop_us(2000, raw)
                        one_way = statistics.median(await ws_one_way_latencies_us(50, raw, warmup=20))
                        lags.clear()
                        for i in range(k.updates):
                            id_ = ids[i % len(ids)]
                            value += 1
                            got.clear()
                            await writer.client.update(coll, id_, {"tracks": value})
                            ok = await guard.wait(
                                got, lambda: got.is_set() and all(s.get(id_, -1) >= value for s in seen)
                            )
                            if not ctx.check(
                                "no missed notification",
                                ok,
                                f"update ({id_} tracks={value}) not notified on every target "
                                f"within {ctx.check_timeout_s:g} s",
                            ):
                                return
                        ctx.require("commit timestamps carried", bool(lags), "no notification carried commit_ns")
                        if r < 0:
                            continue
                        for n, v in (("lag", statistics.median(lags) / 1e3), ("hop", hop), ("ws_one_way", one_way)):
                            best[n][r] = min(best[n][r], v)
        finally:
            for sub in subs:
                await sub.close()
        keep_samples(ctx.recorder.extra, best, {"lag_hop_ratio": ("lag", "hop"), "lag_ws_ratio": ("lag", "ws_one_way")})

    catalog.register_phase(
        catalog.PhaseSpec(
            name="asv-gate-leveldb",
            summary="loam create/get over raw plyvel, paired per repeat",
            run=leveldb_pairs,
            knobs=LevelDBKnobs,
            needs=("create", "get"),
        )
    )
    catalog.register_phase(
        catalog.PhaseSpec(
            name="asv-gate-lag",
            summary="commit -> notification p50 over the raw hop / ws one-way, paired per repeat",
            run=lag_pairs,
            knobs=LagKnobs,
            needs=("subscribe", "update", "create"),
        )
    )
    _REGISTERED.append(True)


async def _true(value: bool) -> bool:
    return value


def _run() -> dict[tuple[str, str, int], Any]:
    sc = scale()
    _register()
    passes = PASSES if sc.name != "tiny" else 1
    leveldb = {
        "repeats": sc.gate_repeats,
        "passes": passes,
        "count": sc.gate_records,
        "gets": sc.gate_gets,
        "batch_size": 500,
    }
    lag = {"repeats": sc.gate_repeats, "passes": passes, "updates": sc.gate_lag_updates}
    return {
        DURABLE: entry(DURABLE, {"albums": 0, "pets": 0}, [("asv-gate-leveldb", leveldb)]),
        INPROCESS_1: entry(INPROCESS_1, {"albums": 0, "pets": 0}, [("asv-gate-lag", lag)]),
        WEBSOCKET_1: entry(WEBSOCKET_1, {"albums": 0, "pets": 0}, [("asv-gate-lag", lag)]),
    }


def _setup_cache(self: Any) -> Any:
    return cache_or_skip(_run)


_setup_cache.timeout = CACHE_TIMEOUT  # type: ignore[attr-defined]


class _Gate:
    unit = UNIT_RATIO
    timeout = CACHE_TIMEOUT
    setup_cache = _setup_cache

    def setup(self, cache: Any) -> None:
        skip_if_skipped(cache)
        self.cache = cache

    def _ratios(self, key: tuple[str, str, int], phase: str, name: str) -> dict[str, Any] | float:
        got = self.cache.get(key)
        if got is None:
            raise NotImplementedError(f"{key}: not run")
        if got["status"] == NA:
            raise NotImplementedError(got["reason"])
        if got["status"] == ERROR:
            raise RuntimeError(got["reason"])
        ph = got["phases"][phase]
        if ph["status"] != "ok":
            raise NotImplementedError(ph.get("reason", "unsupported"))
        if name == "get_ratio" and not ph["extra"].get("native_get", 1.0):
            return math.nan  # the stack has no native_get hook: n/a (setup is shared with the create ratio)
        values = [v for k, v in sorted(ph["extra"].items(), key=lambda kv: kv[0]) if k.startswith(name + "#")]
        if not values:
            raise RuntimeError(f"{'/'.join(map(str, key))} {phase}: no {name} samples")
        return _samples(values)


class GateLevelDB(_Gate):
    """loam on LevelDB (durable node, no ephemerals) over raw plyvel, paired per sample."""

    def track_create_vs_write_batch(self, cache: Any) -> dict[str, Any] | float:
        """loam us per created album payload / plyvel us per put in one write_batch."""
        return self._ratios(DURABLE, "asv-gate-leveldb", "create_ratio")

    def track_get_vs_plyvel_get(self, cache: Any) -> dict[str, Any] | float:
        """us per get by id through the stack's native_get hook (loam: its node API) /
        plyvel us per get, random order; n/a without the hook."""
        return self._ratios(DURABLE, "asv-gate-leveldb", "get_ratio")


class GateNotifyLag(_Gate):
    """Commit -> notification p50 on one ephemeral over the raw anchor of its connector."""

    def track_inprocess_lag_vs_queue_hop(self, cache: Any) -> dict[str, Any] | float:
        """in-process ephemeral: lag p50 / asyncio queue hop (measured right before)."""
        return self._ratios(INPROCESS_1, "asv-gate-lag", "lag_hop_ratio")

    def track_websocket_lag_vs_ws_one_way(self, cache: Any) -> dict[str, Any] | float:
        """WebSocket ephemeral: lag p50 / websockets one-way latency p50 (measured right before)."""
        return self._ratios(WEBSOCKET_1, "asv-gate-lag", "lag_ws_ratio")
