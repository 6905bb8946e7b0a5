"""asv-* phases: what the asv suite's targets compare with the raw anchors.

Each measures the anchors' own payloads (`anchors.album_props`), one operation at a time, so
a figure divided by its anchor is a stack's overhead over the physical limit:

- `asv-albums-create`: album payloads created in batches, us per entity;
- `asv-albums-get`: the same read by id in random order, us per get through the client
  contract, and through the stack's `native_get` hook when it has one;
- `asv-notify-lag`: commit -> notification, one update at a time, with the raw anchors
  (queue hop, WebSocket one-way, the stack's codec floor) measured in the same run;
- `asv-idle-memory`: bytes per idle ORDER BY + LIMIT live query.

Their figures are `extra` values of the phase result (names below); their names stay as
the asv suite has always used them, so results across commits stay comparable.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any, Callable

from sprout_harness.contracts import hooks
from sprout_harness.contracts.query import Cond, Order, QuerySpec
from sprout_harness.workloads import datasets
from sprout_harness.workloads.anchors import (
    album_payloads,
    album_props,
    codec_hop_p50_us,
    no_gc,
    queue_hop_us,
    raw_notify_codec,
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


async def _create_albums(
    ctx: PhaseContext, node: NodeRef, coll: str, k: AlbumsKnobs, docs: list[dict[str, Any]]
) -> tuple[float, list[str]]:
    ids: list[str] = []
    with no_gc():
        t0 = time.perf_counter_ns()
        for i in range(0, len(docs), k.batch_size):
            batch = docs[i : i + k.batch_size]
            ack = await ctx.timed("albums_create_batch", node.client.create(coll, batch))
            ctx.require(
                "one id per created entity", len(ack.ids) == len(batch), f"{len(ack.ids)} ids for {len(batch)} entities"
            )
            ids.extend(ack.ids)
        us = (time.perf_counter_ns() - t0) / len(docs) / 1e3
    return us, ids


async def _albums_readback(
    ctx: PhaseContext, node: NodeRef, coll: str, ids: list[str], docs: list[dict[str, Any]]
) -> None:
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
    `paired_queue_hop_us`, `paired_ws_one_way_p50_us`, `paired_raw_codec_floor_us` (a
    notify encoded and decoded with msgspec alone, plus one loop turn) and, with the
    `notify_codec` hook, `paired_codec_floor_us` (the stack's own codec)."""
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
    # it encodes a notify); and the same with msgspec alone, a floor no stack's code is in
    # (the in-process lag's anchor)
    codec_hook = hooks.find(ctx.stack, "notify_codec")
    codecs = {"paired_raw_codec_floor_us": raw_notify_codec()}
    if codec_hook is not None:
        codecs["paired_codec_floor_us"] = codec_hook()
    floor_docs = [dict(d, tracks=1000 + i) for i, d in enumerate(docs)]
    floors = {name: [await codec_hop_p50_us(enc, dec, 2000, floor_docs)] for name, (enc, dec) in codecs.items()}
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
                if not ctx.check(
                    "no missed notification",
                    ok,
                    f"update {i} ({id_} tracks={value}) not notified on every target within {ctx.check_timeout_s:g} s",
                ):
                    break
        ctx.check("commit timestamps carried", bool(lags), "no notification carried commit_ns")
        for v in lags:
            ctx.recorder.lag("notify_single", max(0, v))
        hops.append(await queue_hop_us(2000, raw))
        for name, (enc, dec) in codecs.items():
            floors[name].append(await codec_hop_p50_us(enc, dec, 2000, floor_docs))
            ctx.recorder.extra[name] = sum(floors[name]) / len(floors[name])
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
    queries = [
        QuerySpec(
            Cond("genre", "=", datasets.GENRES[i % len(datasets.GENRES)]),
            order_by=(Order("rating", descending=True), Order("seq")),
            limit=k.live_limit,
            kind="order_limit",
        )
        for i in range(k.queries)
    ]
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


register_phase(
    PhaseSpec(
        name="asv-albums-create",
        summary="album payloads created in batches (the anchors' payloads)",
        run=albums_create,
        knobs=AlbumsKnobs,
        needs=("create", "get"),
        metrics=("albums_create_batch",),
    )
)
register_phase(
    PhaseSpec(
        name="asv-albums-get",
        summary="album payloads read by id in random order",
        run=albums_get,
        knobs=AlbumsKnobs,
        needs=("create", "get"),
        metrics=("albums_create_batch",),
    )
)
register_phase(
    PhaseSpec(
        name="asv-notify-lag",
        summary="commit -> notification lag, one write at a time",
        run=notify_lag,
        knobs=LagKnobs,
        needs=("subscribe", "update", "create"),
        metrics=("subscribe", "update", "unsubscribe", "lag.notify_single"),
    )
)
register_phase(
    PhaseSpec(
        name="asv-idle-memory",
        summary="memory per idle ORDER BY + LIMIT live query",
        run=idle_memory,
        knobs=IdleKnobs,
        needs=("subscribe", "live_limit", "order_by"),
        metrics=("subscribe", "unsubscribe"),
    )
)
