"""Anchors: the raw physical limits under loam, measured in the same run, machine and commit.

Each class measures one raw library on the same payloads the loam benchmarks use
(`album_payloads`), so every loam figure can be read as a ratio to its anchor. Each class
runs its workload once in `setup_cache` (`scale().repeats` batches, or a latency
distribution cut into `scale().repeats` consecutive slices) and its `track_` methods report
per-operation times in microseconds, lower is better, as asv *samples*
(`_common.asv_samples`: one per batch or slice; asv shows and stores their median, and keeps
statistics so `asv compare` can test a change).

The payloads and the anchors that the harness's asv phases also measure in their own runs
(the asyncio queue hop, the websockets one-way latency) are the harness's functions
(`sprout_harness.workloads.anchors`): the stand-alone anchors here and the paired ones in a
phase run the same code.

PostgreSQL anchors need `SPROUT_PG_DSN` (set by `make bench-asv`); without it they show n/a.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from types import ModuleType
from typing import Any

from ._common import (
    UNIT_US,
    TempDir,
    album_payloads,
    asv_samples,
    cache_or_skip,
    chunked_percentiles,
    median_us_per_op,
    postgres_dsn_or_skip,
    require,
    scale,
    shuffled,
    skip_if_skipped,
)

CACHE_TIMEOUT = 300


def _harness_anchors() -> ModuleType:
    """The raw anchors the harness's phases measure too (n/a on a commit without them)."""
    return require("sprout_harness.workloads.anchors")


# --- LevelDB (plyvel) ------------------------------------------------------------------------


def _measure_leveldb() -> dict[str, list[float]]:
    plyvel = require("plyvel")
    sc = scale()
    pairs = album_payloads(sc.records)
    keys = shuffled([k for k, _ in pairs])
    tmp = TempDir()
    put, get = [], []
    try:
        for r in range(sc.repeats):
            db = plyvel.DB(tmp.sub(f"db{r}"), create_if_missing=True)
            try:
                t0 = time.perf_counter()
                with db.write_batch() as wb:
                    for k, v in pairs:
                        wb.put(k, v)
                put.append((time.perf_counter() - t0) / len(pairs) * 1e6)

                read = db.get
                t0 = time.perf_counter()
                for k in keys:
                    if read(k) is None:
                        raise AssertionError(f"plyvel lost key {k!r}")
                get.append((time.perf_counter() - t0) / len(keys) * 1e6)
            finally:
                db.close()
    finally:
        tmp.cleanup()
    return {"put_write_batch": put, "get_random": get}


class AnchorLevelDB:
    """Raw plyvel on a fresh DB: puts in one write_batch, then point gets in random order."""

    unit = UNIT_US
    timeout = CACHE_TIMEOUT

    def setup_cache(self) -> Any:
        return cache_or_skip(_measure_leveldb)

    setup_cache.timeout = CACHE_TIMEOUT  # type: ignore[attr-defined]

    def setup(self, cache: Any) -> None:
        skip_if_skipped(cache)

    def track_put_write_batch(self, cache: dict[str, list[float]]) -> dict[str, Any]:
        """us per put, all records in one write_batch."""
        return asv_samples(cache["put_write_batch"])

    def track_get_random(self, cache: dict[str, list[float]]) -> dict[str, Any]:
        """us per point get, random key order."""
        return asv_samples(cache["get_random"])


# --- PostgreSQL (psycopg) --------------------------------------------------------------------


def _measure_postgres() -> dict[str, list[float]]:
    dsn = postgres_dsn_or_skip()
    psycopg = require("psycopg")
    sc = scale()
    pairs = album_payloads(sc.records)
    table = f"sprout_anchor_{uuid.uuid4().hex[:12]}"
    insert = f"INSERT INTO {table} (k, v) VALUES (%s, %s)"
    copy_sql = f"COPY {table} (k, v) FROM STDIN"

    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:

        def fresh_table() -> None:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(f"CREATE TABLE {table} (k bytea PRIMARY KEY, v bytea NOT NULL)")

        def executemany() -> int:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(insert, pairs)
            return len(pairs)

        def copy() -> int:
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(copy_sql) as cp:
                    for row in pairs:
                        cp.write_row(row)
            return len(pairs)

        try:
            out = {}
            for name, batch in (("executemany_one_tx", executemany), ("copy", copy)):
                per_op = []
                for _ in range(sc.repeats):
                    fresh_table()
                    per_op.append(median_us_per_op(batch, 1))
                out[name] = per_op
            (rows,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            if rows != len(pairs):
                raise AssertionError(f"COPY stored {rows} rows, expected {len(pairs)}")
            return out
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


class AnchorPostgres:
    """Raw psycopg into a fresh (k bytea primary key, v bytea) table: executemany in one
    transaction, and COPY FROM STDIN. n/a unless SPROUT_PG_DSN is set."""

    unit = UNIT_US
    timeout = CACHE_TIMEOUT

    def setup_cache(self) -> Any:
        return cache_or_skip(_measure_postgres)

    setup_cache.timeout = CACHE_TIMEOUT  # type: ignore[attr-defined]

    def setup(self, cache: Any) -> None:
        skip_if_skipped(cache)

    def track_executemany_one_tx(self, cache: dict[str, list[float]]) -> dict[str, Any]:
        """us per row, executemany INSERT of all records in one transaction."""
        return asv_samples(cache["executemany_one_tx"])

    def track_copy(self, cache: dict[str, list[float]]) -> dict[str, Any]:
        """us per row, COPY FROM STDIN of all records in one transaction."""
        return asv_samples(cache["copy"])


# --- WebSockets (loopback) -------------------------------------------------------------------


async def _ws_workload() -> dict[str, list[float]]:
    ws_server = require("websockets.asyncio.server")
    ws_client = require("websockets.asyncio.client")
    sc = scale()
    payloads = [v for _, v in album_payloads(sc.records)]
    sink_target = 0
    sink_count = 0
    sink_done = asyncio.Event()

    async def handler(ws: Any) -> None:
        nonlocal sink_count
        if ws.request.path == "/echo":
            async for msg in ws:
                await ws.send(msg)
        else:
            async for _ in ws:
                sink_count += 1
                if sink_count == sink_target:
                    sink_done.set()

    opts = {"compression": None, "ping_interval": None}
    async with ws_server.serve(handler, "127.0.0.1", 0, **opts) as server:
        port = server.sockets[0].getsockname()[1]

        async with ws_client.connect(f"ws://127.0.0.1:{port}/echo", **opts) as ws:
            for p in payloads[:50]:  # warm-up
                await ws.send(p)
                await ws.recv()
            rtts = []
            for i in range(sc.samples):
                p = payloads[i % len(payloads)]
                t0 = time.perf_counter()
                await ws.send(p)
                await ws.recv()
                rtts.append((time.perf_counter() - t0) * 1e6)

        one_way = []
        async with ws_client.connect(f"ws://127.0.0.1:{port}/sink", **opts) as ws:
            for _ in range(sc.repeats):
                sink_count, sink_target = 0, len(payloads)
                sink_done.clear()
                t0 = time.perf_counter()
                for p in payloads:
                    await ws.send(p)
                await sink_done.wait()
                one_way.append((time.perf_counter() - t0) / len(payloads) * 1e6)

    latencies = await _harness_anchors().ws_one_way_latencies_us(sc.samples, payloads)
    return {
        "round_trip_p50": chunked_percentiles(rtts, 50, sc.repeats),
        "round_trip_p99": chunked_percentiles(rtts, 99, sc.repeats),
        "one_way": one_way,
        "one_way_latency_p50": chunked_percentiles(latencies, 50, sc.repeats),
        "one_way_latency_p99": chunked_percentiles(latencies, 99, sc.repeats),
    }


class AnchorWebsockets:
    """Raw websockets on 127.0.0.1 in one process (asyncio, compression off): request/reply
    round trips one at a time, one-way messages one at a time (send -> the server has read
    it), and one-way messages streamed to a counting sink."""

    unit = UNIT_US
    timeout = CACHE_TIMEOUT

    def setup_cache(self) -> Any:
        return cache_or_skip(lambda: asyncio.run(_ws_workload()))

    setup_cache.timeout = CACHE_TIMEOUT  # type: ignore[attr-defined]

    def setup(self, cache: Any) -> None:
        skip_if_skipped(cache)

    def track_round_trip_p50(self, cache: dict[str, list[float]]) -> dict[str, Any]:
        """us, median round trip of one album payload."""
        return asv_samples(cache["round_trip_p50"])

    def track_round_trip_p99(self, cache: dict[str, list[float]]) -> dict[str, Any]:
        """us, 99th percentile round trip of one album payload."""
        return asv_samples(cache["round_trip_p99"])

    def track_one_way(self, cache: dict[str, list[float]]) -> dict[str, Any]:
        """us per message, streamed one way until the server has read them all."""
        return asv_samples(cache["one_way"])

    def track_one_way_latency_p50(self, cache: dict[str, list[float]]) -> dict[str, Any]:
        """us, median send -> the server has read it, one message at a time."""
        return asv_samples(cache["one_way_latency_p50"])

    def track_one_way_latency_p99(self, cache: dict[str, list[float]]) -> dict[str, Any]:
        """us, 99th percentile send -> the server has read it, one message at a time."""
        return asv_samples(cache["one_way_latency_p99"])


# --- asyncio queue -----------------------------------------------------------------------------


async def _queue_workload() -> dict[str, list[float]]:
    sc = scale()
    payloads = [v for _, v in album_payloads(sc.records)]

    queue_hop_us = _harness_anchors().queue_hop_us

    async def ping_pong(n: int) -> float:
        return await queue_hop_us(n, payloads)

    async def burst() -> float:
        # Throughput floor: all items queued, one consumer drains them.
        q: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def drain() -> int:
            got = 0
            while await q.get() is not None:
                got += 1
            return got

        task = asyncio.create_task(drain())
        t0 = time.perf_counter()
        for p in payloads:
            q.put_nowait(p)
        q.put_nowait(None)
        got = await task
        if got != len(payloads):
            raise AssertionError(f"queue delivered {got} of {len(payloads)} items")
        return (time.perf_counter() - t0) / len(payloads) * 1e6

    await ping_pong(100)  # warm-up
    hops = [await ping_pong(sc.samples) for _ in range(sc.repeats)]
    bursts = [await burst() for _ in range(sc.repeats)]
    return {"hop": hops, "burst": bursts}


class AnchorAsyncioQueue:
    """Raw asyncio.Queue in one event loop: the floor under an in-process connector."""

    unit = UNIT_US
    timeout = CACHE_TIMEOUT

    def setup_cache(self) -> Any:
        return cache_or_skip(lambda: asyncio.run(_queue_workload()))

    setup_cache.timeout = CACHE_TIMEOUT  # type: ignore[attr-defined]

    def setup(self, cache: Any) -> None:
        skip_if_skipped(cache)

    def track_hop(self, cache: dict[str, list[float]]) -> dict[str, Any]:
        """us per hop: queue put plus the waiting task waking up (ping-pong / 2)."""
        return asv_samples(cache["hop"])

    def track_burst(self, cache: dict[str, list[float]]) -> dict[str, Any]:
        """us per item: a burst put without yielding, drained by one consumer."""
        return asv_samples(cache["burst"])
