"""asv-* phases: what the asv suite's targets compare with the raw anchors.

Each measures the anchors' own payloads (`anchors.album_props`), one operation at a time, so
a figure divided by its anchor is a stack's overhead over the physical limit:

- `asv-albums-create`: album payloads created in batches, us per entity;
- `asv-albums-get`: the same read by id in random order, us per get through the client
  contract, and through the stack's `native_get` hook when it has one;
- `asv-notify-lag`: commit -> notification, one update at a time, with the raw anchors
  (queue hop, WebSocket one-way, the stack's codec floor) measured in the same run;
- `asv-idle-memory`: bytes per idle ORDER BY + LIMIT live query;
- `asv-gate-leveldb`, `asv-gate-lag`: the pull-request gate's paired samples
  (`benchmarks/gate.py`): each sample a stack figure and its raw anchor measured right next
  to each other, so their ratio does not move with the machine's load.

Their figures are `extra` values of the phase result (names below); their names stay as
the asv suite has always used them, so results across commits stay comparable.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import math
import random
import shutil
import statistics
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from sprout_harness.contracts import hooks
from sprout_harness.contracts.errors import Unsupported
from sprout_harness.contracts.query import Cond, Order, QuerySpec
from sprout_harness.workloads import datasets
from sprout_harness.workloads.anchors import (
    album_payloads,
    album_props,
    codec_hop_p50_us,
    no_gc,
    queue_hop_us,
    ws_one_way_latencies_us,
)
from sprout_harness.workloads.catalog import PhaseSpec, register_phase
from sprout_harness.workloads.context import NodeRef, PhaseContext
from sprout_harness.workloads.knobs import knob


@dataclass
class AlbumsKnobs:
    count: int = knob(1000, "album payloads per repetition", min=1)
    batch_size: int = knob(500, "entities per create call", min=1)
    repeats: int = knob(3, "repetitions (fresh collection each); the median is kept", min=1)
    gets: int = knob(1000, "gets per repetition (asv-albums-get), random ids", min=1)


@dataclass
class LagKnobs:
    samples: int = knob(200, "writes, one at a time, each waited for", min=1)


@dataclass
class IdleKnobs:
    queries: int = knob(50, "idle live queries opened on the first target", min=1)
    live_limit: int = knob(10, "LIMIT (window size) of each", min=1)


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


async def _holds(sub: Any, count: int) -> bool:
    return len(sub.results) == count


# --- albums ----------------------------------------------------------------------------------


async def _create_albums(ctx: PhaseContext, node: NodeRef, coll: str, k: AlbumsKnobs,
                         docs: list[dict[str, Any]]) -> tuple[float, list[str]]:
    ids: list[str] = []
    with no_gc():
        t0 = time.perf_counter_ns()
        for i in range(0, len(docs), k.batch_size):
            batch = docs[i:i + k.batch_size]
            ack = await ctx.timed("albums_create_batch", node.client.create(coll, batch))
            ctx.require("one id per created entity", len(ack.ids) == len(batch),
                        f"{len(ack.ids)} ids for {len(batch)} entities")
            ids.extend(ack.ids)
        us = (time.perf_counter_ns() - t0) / len(docs) / 1e3
    return us, ids


async def _albums_readback(ctx: PhaseContext, node: NodeRef, coll: str, ids: list[str],
                           docs: list[dict[str, Any]]) -> None:
    sample = ctx.rng.sample(range(len(ids)), min(50, len(ids)))

    async def landed() -> bool:
        for j in sample:
            d = await node.client.get(coll, ids[j])
            if d is None or d.props.get("no") != docs[j]["no"]:
                return False
        return True

    ctx.require("every album landed", await ctx.retry(landed), f"a sample of {coll} is missing or differs")


async def albums_create(ctx: PhaseContext, k: AlbumsKnobs) -> None:
    """Album payloads created in batches on the first target; us per entity (median):
    extra `create_us_per_entity`."""
    node = ctx.targets[0]
    docs = album_props(k.count)
    per_entity = []
    for r in range(k.repeats):
        coll = f"asv_albums_c{r}"
        us, ids = await _create_albums(ctx, node, coll, k, docs)
        per_entity.append(us)
        await _albums_readback(ctx, node, coll, ids, docs)
    ctx.recorder.extra["create_us_per_entity"] = _median(per_entity)


async def albums_get(ctx: PhaseContext, k: AlbumsKnobs) -> None:
    """Album payloads created, then every one read by id in random order; us per get
    (median): extra `get_us` through the client contract, and `native_get_us` through the
    stack's `native_get` hook (absent when the stack has none)."""
    node = ctx.targets[0]
    docs = album_props(k.count)
    coll = "asv_albums_g"
    _, ids = await _create_albums(ctx, node, coll, k, docs)
    await _albums_readback(ctx, node, coll, ids, docs)
    order = ctx.rng.sample(range(len(ids)), min(k.gets, len(ids)))
    get = node.client.get
    for j in order:  # warm-up pass (both sides read what was just written, like the anchor)
        await get(coll, ids[j])
    per_get = []
    for _ in range(k.repeats):
        wrong = 0
        with no_gc():
            t0 = time.perf_counter_ns()
            for j in order:
                d = await get(coll, ids[j])
                if d is None or d.props.get("no") != docs[j]["no"]:
                    wrong += 1
            per_get.append((time.perf_counter_ns() - t0) / len(order) / 1e3)
        ctx.require("every get returned its album", wrong == 0, f"{wrong} of {len(order)} gets wrong")
    ctx.recorder.extra["get_us"] = _median(per_get)
    native = native_get(ctx, node)
    if native is None:
        return
    missing = sum([await native(coll, ids[j]) is None for j in order[:50]])
    ctx.require("every native get finds its album", missing == 0, f"{missing} of {min(50, len(order))} not found")
    per_get = []
    for _ in range(k.repeats):
        with no_gc():
            t0 = time.perf_counter_ns()
            for j in order:
                await native(coll, ids[j])
            per_get.append((time.perf_counter_ns() - t0) / len(order) / 1e3)
    ctx.recorder.extra["native_get_us"] = _median(per_get)


def native_get(ctx: PhaseContext, node: NodeRef) -> Callable[[str, str], Any] | None:
    """The stack's direct read under `node`'s client (the `native_get` hook), or None."""
    hook = hooks.find(ctx.stack, "native_get")
    return hook(node.client) if hook is not None else None


# --- lag -------------------------------------------------------------------------------------


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


async def notify_lag(ctx: PhaseContext, k: LagKnobs) -> None:
    """One plain live query on every target; one update at a time through the durable
    node, each waited for on every target before the next: commit -> notification lag
    without queueing (with 4 ephemerals, a fan-out to 4 subscribers). Extras
    `paired_queue_hop_us`, `paired_ws_one_way_p50_us` and, with the `notify_codec` hook,
    `paired_codec_floor_us`."""
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
    q = QuerySpec(Cond("hot", "=", True), kind="equality")
    subs = []

    on_notify = tracks_watcher(lags, got)

    def relay(seen_here: dict[str, int]) -> Callable[[Any], None]:
        return lambda n: on_notify(n, seen_here)

    # The raw anchors again, in this process and event loop, right before and after the
    # samples: a ratio to them does not depend on how the machine was doing minutes
    # earlier, when the stand-alone anchors ran in their own process (docs/performance.md).
    raw = [v for _, v in album_payloads(200)]
    # The stack's own codec plus one loop turn, no node work: how much of the in-process
    # lag the codec that the connector keeps costs by itself (when the stack says how
    # it encodes a notify)
    codec_hook = hooks.find(ctx.stack, "notify_codec")
    codec = codec_hook() if codec_hook is not None else None
    floor_docs = [dict(d, tracks=1000 + i) for i, d in enumerate(docs)]
    floors = [await codec_hop_p50_us(codec[0], codec[1], 2000, floor_docs)] if codec else []
    hops = [await queue_hop_us(2000, raw)]
    one_way = await ws_one_way_latencies_us(max(50, k.samples // 2), raw)
    try:
        for node in ctx.targets:
            seen.append({})
            subs.append(await ctx.timed("subscribe", node.client.subscribe(coll, q, relay(seen[-1]))))
        for node, sub in zip(ctx.targets, subs):
            ok = await ctx.retry(functools.partial(_holds, sub, len(ids)))
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
            floors.append(await codec_hop_p50_us(codec[0], codec[1], 2000, floor_docs))
            ctx.recorder.extra["paired_codec_floor_us"] = sum(floors) / len(floors)
        one_way += await ws_one_way_latencies_us(max(50, k.samples // 2), raw)
        ctx.recorder.extra["paired_queue_hop_us"] = sum(hops) / len(hops)
        ctx.recorder.extra["paired_ws_one_way_p50_us"] = sorted(one_way)[len(one_way) // 2]
    finally:
        for sub in subs:
            await ctx.timed("unsubscribe", sub.close())


# --- memory ----------------------------------------------------------------------------------


async def idle_memory(ctx: PhaseContext, k: IdleKnobs) -> None:
    """Memory per idle live query (tracemalloc, every allocation in this process: the
    target node, and for an ephemeral the durable node's side too): extra
    `bytes_per_idle_query`."""
    node = ctx.targets[0]
    queries = [QuerySpec(Cond("genre", "=", datasets.GENRES[i % len(datasets.GENRES)]),
                         order_by=(Order("rating", descending=True), Order("seq")),
                         limit=k.live_limit, kind="order_limit") for i in range(k.queries)]
    # one subscription first: lazily built structures are not charged to the idle queries
    # (timed here, outside the measured window, so the phase reports a latency as well)
    warm = await ctx.timed("subscribe", node.client.subscribe("albums", queries[0], lambda n: None))
    await ctx.timed("unsubscribe", warm.close())
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


# --- the pull-request gate -------------------------------------------------------------------
# benchmarks/gate.py reads these: every sample r pairs a stack figure and its raw anchor
# measured right next to each other (same process and loop), each side the fastest of
# `passes` passes spread over the whole measurement, so load that slows both cancels in
# their ratio. A sample's figures are `extra` values `<ratio>#r` and `<side>_us#r`.

_SHUFFLE_SALT = 0x5EED  # as the asv suite's `shuffled`: the same random order of reads


@dataclass
class GateLevelDBKnobs:
    repeats: int = knob(9, "samples (each one ratio)", min=1)
    passes: int = knob(3, "passes over all samples; each sample keeps its fastest pass per side", min=1)
    count: int = knob(2000, "album payloads created per measurement (fresh collection / DB)", min=1)
    gets: int = knob(1000, "gets per measurement, random ids", min=1)
    batch_size: int = knob(500, "entities per create call", min=1)


@dataclass
class GateLagKnobs:
    repeats: int = knob(9, "samples (each one ratio)", min=1)
    passes: int = knob(3, "passes over all samples; each sample keeps its fastest pass per side", min=1)
    updates: int = knob(100, "updates per measurement, one at a time, each awaited", min=1)


def keep_samples(extra: dict[str, Any], best: dict[str, list[float]], ratios: dict[str, tuple[str, str]]) -> None:
    """Each sample r of a phase into its `extra`: every ratio (`name#r` = num / den of that
    sample's best passes) and the raw figures beside it (`<side>_us#r`)."""
    for r in range(len(next(iter(best.values())))):
        for name, (num, den) in ratios.items():
            extra[f"{name}#{r}"] = best[num][r] / best[den][r]
        for n, v in best.items():
            extra[f"{n}_us#{r}"] = v[r]


def _shuffled(items: list[Any], seed: int) -> list[Any]:
    out = list(items)
    random.Random(seed ^ _SHUFFLE_SALT).shuffle(out)
    return out


async def gate_leveldb(ctx: PhaseContext, k: GateLevelDBKnobs) -> None:
    """Sample r: the stack creates `count` album payloads (fresh collection), raw plyvel puts
    the same payloads in one write_batch (fresh DB); the stack gets `gets` of them by id on
    its `native_get` hook, plyvel gets the same keys in random order (no gets, and no get
    ratio, for a stack without the hook). Every sample is measured once per pass, passes
    one after the other over all samples (so a sample's passes are ~R measurements apart in
    time); a sample keeps the fastest pass of each side. Extras `create_ratio#r`,
    `get_ratio#r`, `native_get`."""
    try:
        import plyvel  # the LevelDB anchor's binding: loaded only when this phase runs
    except ImportError as exc:
        raise Unsupported(f"plyvel is not importable: {exc}") from None
    node = ctx.targets[0]
    docs = album_props(k.count)
    pairs = album_payloads(k.count)
    # the stack's own API under the client (the `leveldb-get` target): no stand-in without it
    native = native_get(ctx, node)
    ctx.recorder.extra["native_get"] = float(native is not None)
    get = native or node.client.get  # keeps the loop's shape; its figures are dropped below
    tmp = Path(tempfile.mkdtemp(prefix="sprout-gate-"))
    dbs: dict[int, Any] = {}
    reads: dict[int, tuple[str, list[str], list[bytes]]] = {}
    best: dict[str, list[float]] = {n: [math.inf] * k.repeats for n in ("create", "put", "get", "raw_get")}
    try:
        for p in range(k.passes):
            for r in range(-1 if p == 0 else 0, k.repeats):  # r = -1 warms up: dropped
                coll = f"gate_albums_{p}_{r + 1}"
                ids: list[str] = []
                with no_gc():
                    t0 = time.perf_counter_ns()
                    for i in range(0, len(docs), k.batch_size):
                        ack = await node.client.create(coll, docs[i:i + k.batch_size])
                        ids.extend(ack.ids)
                    create_us = (time.perf_counter_ns() - t0) / len(docs) / 1e3
                ctx.require("one id per created entity", len(ids) == len(docs), f"{len(ids)} ids for {len(docs)}")
                db = plyvel.DB(str(tmp / f"db{p}-{r + 1}"), create_if_missing=True)
                with no_gc():
                    t0 = time.perf_counter_ns()
                    with db.write_batch() as wb:
                        for key, value in pairs:
                            wb.put(key, value)
                    put_us = (time.perf_counter_ns() - t0) / len(pairs) / 1e3
                if r not in reads:  # the first pass's collection and DB serve every pass's gets
                    picks = ctx.rng.sample(range(len(ids)), min(k.gets, len(ids)))
                    reads[r] = (coll, [ids[j] for j in picks], _shuffled([pairs[j][0] for j in picks], r + 1))
                    dbs[r] = db
                    for id_ in reads[r][1][:50]:  # warm-up, and every get must find its album
                        ctx.require("every get returns its album", await get(coll, id_) is not None,
                                    f"{coll}/{id_} missing")
                else:
                    db.close()
                rcoll, rids, rkeys = reads[r]
                with no_gc():
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
        shutil.rmtree(tmp, ignore_errors=True)
    ratios = {"create_ratio": ("create", "put"), "get_ratio": ("get", "raw_get")}
    if native is None:
        del best["get"], best["raw_get"], ratios["get_ratio"]
    keep_samples(ctx.recorder.extra, best, ratios)


async def gate_lag(ctx: PhaseContext, k: GateLagKnobs) -> None:
    """One live query on every target. Sample r: the asyncio hop and the websockets one-way
    latency p50 (raw anchors), then `updates` updates through the durable node, one at a
    time, each awaited on every target (commit -> notification p50). Passes as in
    `gate_leveldb`; a sample keeps the fastest pass of each side. Extras `lag_hop_ratio#r`,
    `lag_ws_ratio#r`."""
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
    q = QuerySpec(Cond("hot", "=", True), kind="equality")
    subs = []
    best: dict[str, list[float]] = {n: [math.inf] * k.repeats for n in ("lag", "hop", "ws_one_way")}
    try:
        for node in ctx.targets:
            seen.append({})
            subs.append(await node.client.subscribe(coll, q, lambda n, s=seen[-1]: on_notify(n, s)))
        for node, sub in zip(ctx.targets, subs):
            ok = await ctx.retry(functools.partial(_holds, sub, len(ids)))
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
                        ok = await guard.wait(got, lambda: got.is_set() and all(s.get(id_, -1) >= value for s in seen))
                        if not ctx.check("no missed notification", ok,
                                         f"update ({id_} tracks={value}) not notified on every target "
                                         f"within {ctx.check_timeout_s:g} s"):
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


register_phase(PhaseSpec(name="asv-albums-create", summary="album payloads created in batches (the anchors' payloads)",
                         run=albums_create, knobs=AlbumsKnobs, needs=("create", "get"), metrics=("albums_create_batch",)))
register_phase(PhaseSpec(name="asv-albums-get", summary="album payloads read by id in random order",
                         run=albums_get, knobs=AlbumsKnobs, needs=("create", "get"), metrics=("albums_create_batch",)))
register_phase(PhaseSpec(name="asv-notify-lag", summary="commit -> notification lag, one write at a time",
                         run=notify_lag, knobs=LagKnobs, needs=("subscribe", "update", "create"),
                         metrics=("subscribe", "update", "unsubscribe", "lag.notify_single")))
register_phase(PhaseSpec(name="asv-idle-memory", summary="memory per idle ORDER BY + LIMIT live query",
                         run=idle_memory, knobs=IdleKnobs, needs=("subscribe", "live_limit", "order_by"),
                         metrics=("subscribe", "unsubscribe")))
register_phase(PhaseSpec(name="asv-gate-leveldb", summary="create/get over raw plyvel, paired per repeat",
                         run=gate_leveldb, knobs=GateLevelDBKnobs, needs=("create", "get")))
register_phase(PhaseSpec(name="asv-gate-lag",
                         summary="commit -> notification p50 over the raw hop / ws one-way, paired per repeat",
                         run=gate_lag, knobs=GateLagKnobs, needs=("subscribe", "update", "create")))
