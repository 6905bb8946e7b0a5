"""Raw anchors: the physical limits under a stack, measured on the same payloads as its figures.

Stack-agnostic (raw asyncio, raw websockets, a codec a stack hands over through the
`notify_codec` hook). The asv suite's stand-alone anchor classes (`benchmarks/anchors.py`)
and the asv phases (`workloads/asv_phases.py`, which measure them again in the phase's own
process and loop, next to the figure they anchor) run these same functions.

The album payloads are the documents both sides share: `album_docs(n)` encode to exactly
`PAYLOAD_BYTES` bytes of JSON (`album_payloads`); `album_props` is the same documents as
entity properties.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import random
import string
import time
from typing import Any, Callable, Iterator, Sequence

import msgspec
import orjson

PAYLOAD_BYTES = 100
ALBUM_SEED = 20261126

_WORDS = (
    "amber blue cedar delta ember fern glass harbor iris juniper kelp lumen moss north "
    "ochre pine quartz river slate tide umber violet willow xenon yarrow zephyr"
).split()


# --- payloads ------------------------------------------------------------------------------


def album_key(i: int) -> bytes:
    """Key of album number `i` (fixed width, so key order = insertion order)."""
    return b"album/%08d" % i


def album_id(i: int) -> str:
    """Entity id of album number `i` (the string form of `album_key`'s suffix)."""
    return f"alb{i:08d}"


@functools.lru_cache(maxsize=16)
def album_docs(n: int, seed: int = ALBUM_SEED) -> tuple[dict[str, Any], ...]:
    """`n` deterministic album dicts, each orjson-encoding to exactly PAYLOAD_BYTES bytes.

    Read-only: the result is cached and shared between callers.
    """
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        doc: dict[str, Any] = {
            "id": album_id(i),
            "artist": rng.choice(_WORDS).title(),
            "year": rng.randint(1955, 2025),
            "tracks": rng.randint(1, 30),
            "rating": rng.randint(0, 50) / 10,
            "title": "",
        }
        pad = PAYLOAD_BYTES - len(orjson.dumps(doc))
        doc["title"] = "".join(rng.choice(string.ascii_lowercase) for _ in range(pad))
        docs.append(doc)
    return tuple(docs)


@functools.lru_cache(maxsize=16)
def album_payloads(n: int, seed: int = ALBUM_SEED) -> tuple[tuple[bytes, bytes], ...]:
    """`n` (key, value) pairs: `album_key(i)` and the orjson encoding of `album_docs(n, seed)[i]`."""
    return tuple((album_key(i), orjson.dumps(doc)) for i, doc in enumerate(album_docs(n, seed)))


def album_props(n: int) -> list[dict[str, Any]]:
    """`album_docs(n)` as entity properties: `id` is reserved for the entity id, so it is
    renamed `no` (same encoded size: the documents stay the anchors' 100-byte payloads)."""
    return [{("no" if k == "id" else k): v for k, v in d.items()} for d in album_docs(n)]


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Timed loops run with the cyclic GC off (as asv's own `time_` benchmarks do): one
    full collection of the process's heap would otherwise dominate a few-us op."""
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# --- WebSockets (loopback) -------------------------------------------------------------------

# Both ends read their socket 64 KiB at a time, as a tuned WebSocket transport does: asyncio's
# default 256 KiB read buffer can cost ~15-25 us per message in a process whose malloc serves
# it with mmap (a harness process, not a fresh one). Without this the in-phase anchor would be
# slowed by what a stack may have fixed for itself, and the ratio would flatter the stack.
READ_SIZE = 64 * 1024
WS_OPTIONS: dict[str, Any] = {"compression": None, "ping_interval": None}


def set_read_size(ws: Any) -> None:
    """Read `ws`'s socket READ_SIZE bytes at a time (where its transport allows it)."""
    t = getattr(ws, "transport", None)
    if t is not None and isinstance(getattr(t, "max_size", None), int):
        t.max_size = READ_SIZE


async def ws_one_way_latencies_us(samples: int, payloads: Sequence[bytes], warmup: int = 50) -> list[float]:
    """One message at a time, each awaited at the server: send -> the server has read it,
    on one clock (same process, same loop), the analogue of a commit -> notification lag."""
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    arrived = asyncio.Event()
    arrived_ns = 0

    async def handler(ws: Any) -> None:
        nonlocal arrived_ns
        set_read_size(ws)
        async for _ in ws:
            arrived_ns = time.perf_counter_ns()
            arrived.set()

    latencies = []
    async with serve(handler, "127.0.0.1", 0, **WS_OPTIONS) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", **WS_OPTIONS) as ws:
            set_read_size(ws)
            for i in range(warmup + samples):
                arrived.clear()
                t0 = time.perf_counter_ns()
                await ws.send(payloads[i % len(payloads)])
                await arrived.wait()
                if i >= warmup:
                    latencies.append((arrived_ns - t0) / 1e3)
    return latencies


# --- asyncio queue and a stack's codec ----------------------------------------------------------


async def queue_hop_us(n: int, payloads: Sequence[bytes]) -> float:
    """us per hop, ping-pong between two tasks over asyncio.Queue / 2 (one hop = put on a
    queue + the other task waking up to get it)."""
    there: asyncio.Queue[bytes | None] = asyncio.Queue()
    back: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def echo() -> None:
        while (item := await there.get()) is not None:
            back.put_nowait(item)

    task = asyncio.create_task(echo())
    t0 = time.perf_counter()
    for i in range(n):
        there.put_nowait(payloads[i % len(payloads)])
        await back.get()
    elapsed = time.perf_counter() - t0
    there.put_nowait(None)
    await task
    return elapsed / (2 * n) * 1e6


class _RawEntity(msgspec.Struct, array_like=True):
    id: str
    props: dict[str, Any]


class _RawNotify(msgspec.Struct, tag_field="t", tag="notify"):
    """A change notification as any store could put it on a wire: query id, commit stamp, the
    changed entities, the send stamp. Not any stack's format: the raw codec floor's."""

    q: str
    commit_ns: int
    updated: list[_RawEntity]
    sent_ns: int


_RAW_ENCODER = msgspec.json.Encoder()
_RAW_DECODER = msgspec.json.Decoder(_RawNotify)


def raw_notify_codec() -> tuple[Callable[[str, dict[str, Any], int], bytes], Callable[[bytes], int]]:
    """`(encode, decode)` of a notification of one changed entity with msgspec alone (typed
    encode and decode of a small Struct): what encoding a notify can cost in Python on this
    machine whatever the store, the anchor of an in-process lag that keeps a wire codec."""

    def encode(id: str, props: dict[str, Any], commit_ns: int) -> bytes:
        return _RAW_ENCODER.encode(_RawNotify("q", commit_ns, [_RawEntity(id, props)], time.perf_counter_ns()))

    def decode(data: bytes) -> int:
        return _RAW_DECODER.decode(data).commit_ns

    return encode, decode


def _median(values: Sequence[float]) -> float:
    """Nearest-rank p50 (the figure the asv suite has always reported for the codec floor)."""
    ordered = sorted(values)
    return ordered[max(1, min(len(ordered), round(0.5 * len(ordered) + 0.5))) - 1]


async def codec_hop_p50_us(
    encode: Callable[[str, dict[str, Any], int], bytes],
    decode: Callable[[bytes], int],
    n: int,
    docs: Sequence[dict[str, Any]],
) -> float:
    """us, median commit stamp -> received, where the message goes through the stack's own
    wire codec (`encode(id, props, commit_ns) -> bytes`, `decode(bytes) -> commit_ns`; the
    `notify_codec` hook) and one event-loop turn, with no node work at all: the floor of an
    in-process connector that keeps the wire codec."""
    loop = asyncio.get_running_loop()
    got = asyncio.Event()
    lags: list[int] = []
    wrong: list[int] = []

    def receive(data: bytes, sent: int) -> None:
        commit_ns = decode(data)
        lags.append(time.perf_counter_ns() - commit_ns)
        if commit_ns != sent:
            wrong.append(commit_ns)
        got.set()

    total = n + n // 10  # the first tenth warms up
    for i in range(total):
        got.clear()
        commit_ns = time.perf_counter_ns()
        loop.call_soon(receive, encode(f"e{i % len(docs)}", docs[i % len(docs)], commit_ns), commit_ns)
        await got.wait()
    if len(lags) != total or wrong:
        raise AssertionError(
            f"codec floor: {len(lags)} of {total} messages received, "
            f"{len(wrong)} with a commit stamp other than the one sent"
        )
    return _median([v / 1e3 for v in lags[n // 10 :]])
