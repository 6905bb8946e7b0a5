"""The fan-out floor: one pre-encoded message broadcast with bare `websockets` to N connections
held by a worker process, receipt minus send start on the shared clock.

No store, no codec, no live query: the server keeps the N connections, stamps each message
with its send start, encodes it once and hands it to `websockets.broadcast` (frames written to
every connection without awaiting any); the worker (`python -m
sprout_harness.workloads.broadcast_floor URL N MESSAGES`) records, per message and connection,
its receipt time minus that stamp (`time.perf_counter_ns` is CLOCK_MONOTONIC: one clock for
every process of the machine). That is what Python and websockets can do at all for one commit
reaching N subscribers on this machine, the floor a store's fan-out lag is read against.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, broadcast, serve

from sprout_harness.metrics.histogram import Histogram
from sprout_harness.workloads.anchors import WS_OPTIONS, set_read_size

STAMP_DIGITS = 20  # the send stamp, zero-padded, at the start of every message


async def broadcast_floor(
    connections: int, messages: int, payload_bytes: int = 300, interval_s: float = 0.02, timeout_s: float = 120.0
) -> Histogram:
    """Lag samples of `messages` broadcasts to `connections` clients in a worker process.
    Raises AssertionError when a message did not reach every connection."""
    clients: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        set_read_size(ws)
        clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    async with serve(handler, "127.0.0.1", 0, max_queue=None, **WS_OPTIONS) as server:
        port = server.sockets[0].getsockname()[1]
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sprout_harness.workloads.broadcast_floor",
            f"ws://127.0.0.1:{port}",
            str(connections),
            str(messages),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=1 << 26,
        )
        assert worker.stdout is not None and worker.stderr is not None
        try:
            async with asyncio.timeout(timeout_s):
                ready = await worker.stdout.readline()
                if ready.strip() != b"ready" or len(clients) < connections:
                    err = (await worker.stderr.read(2000)).decode(errors="replace")
                    raise AssertionError(
                        f"broadcast floor: the worker did not connect {connections} clients "
                        f"({len(clients)} connected): {ready[:200]!r} {err[-500:]}"
                    )
                pad = b"x" * max(0, payload_bytes - STAMP_DIGITS)
                for _ in range(messages):
                    # one encode per message: the stamp and the body, shared by every connection
                    broadcast(clients, str(time.perf_counter_ns()).zfill(STAMP_DIGITS).encode() + pad)
                    await asyncio.sleep(interval_s)
                line = await worker.stdout.readline()
        finally:
            if worker.returncode is None:
                try:
                    async with asyncio.timeout(10):
                        await worker.wait()
                except TimeoutError:
                    worker.kill()
                    await worker.wait()
    if not line:
        raise AssertionError("broadcast floor: the worker exited without its figures")
    out: dict[str, Any] = json.loads(line)
    hist = Histogram.from_dict(out["lag"])
    if hist.count != connections * messages:
        raise AssertionError(f"broadcast floor: {hist.count} of {connections * messages} messages arrived")
    return hist


async def _worker(url: str, n: int, messages: int) -> None:
    lag = Histogram()
    sem = asyncio.Semaphore(50)

    async def open_one() -> Any:
        async with sem:
            ws = await connect(url, max_size=None, proxy=None, open_timeout=60, **WS_OPTIONS)
            set_read_size(ws)  # as a tuned client reads (anchors.READ_SIZE)
            return ws

    conns = await asyncio.gather(*(open_one() for _ in range(n)))
    sys.stdout.write("ready\n")
    sys.stdout.flush()

    async def read(ws: Any) -> None:
        for _ in range(messages):
            data = await ws.recv(decode=False)
            lag.record(max(0, time.perf_counter_ns() - int(data[:STAMP_DIGITS])))

    await asyncio.gather(*(read(ws) for ws in conns))
    sys.stdout.write(json.dumps({"lag": lag.to_dict()}) + "\n")
    sys.stdout.flush()
    await asyncio.gather(*(ws.close() for ws in conns))


if __name__ == "__main__":
    asyncio.run(_worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
