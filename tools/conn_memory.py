"""Server memory per idle WebSocket connection: loam serve beside bare websockets (its floor),
as docs/performance.md ("Server memory per connection") quotes it.

    python tools/conn_memory.py loam 1000      # one live query per connection, memory engine
    python tools/conn_memory.py bare 1000      # bare websockets, the handler only waits

The server runs in this process; the clients connect from a child process (their memory is not
counted). Prints RSS and tracemalloc growth per connection and the largest traced sources.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import tracemalloc
from typing import Any

CLIENT = r"""
import asyncio, sys
from websockets.asyncio.client import connect
url, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == "loam":
    from loam.protocol import codec, messages as m

async def one(i, conns):
    ws = await connect(url, compression=None, max_size=None)
    if mode == "loam":
        await ws.send(codec.encode(m.Hello(rid=1, token=None, node_id=f"c{i}")))
        await ws.recv()
        q = f"where shelter = 's{i % 50}' order by seq limit 10"
        await ws.send(codec.encode(m.Subscribe(rid=2, collection="pets", query=q)))
        await ws.recv()
    conns.append(ws)

async def main():
    conns = []
    for k in range(0, n, 50):
        await asyncio.gather(*(one(i, conns) for i in range(k, min(n, k + 50))))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

asyncio.run(main())
"""


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def start_server(mode: str) -> tuple[str, Any]:
    if mode == "bare":
        from websockets.asyncio.server import ServerConnection, serve

        async def handler(ws: ServerConnection) -> None:
            await ws.wait_closed()

        server = await serve(handler, "127.0.0.1", 0, compression=None)
        return f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}", server
    from loam.model import Context
    from loam.node.durable import DurableNode
    from loam.storage import create_engine
    from loam.transport.websocket import NodeServer

    node = DurableNode(create_engine("memory"))
    await node.start()
    for b in range(10):
        rows = [{"shelter": f"s{i % 50}", "seq": i, "species": "cat"} for i in range(b * 1000, (b + 1) * 1000)]
        await node.create("pets", rows, Context())
    loam_server = NodeServer(node, "127.0.0.1", 0)
    await loam_server.start()
    return loam_server.url, loam_server


def source(filename: str) -> str:
    for marker in ("site-packages/", "/loam/loam/", "/lib/python3.11/"):
        if marker in filename:
            return filename.split(marker)[-1]
    return filename


async def main(mode: str, n: int) -> None:
    url, _server = await start_server(mode)
    gc.collect()
    tracemalloc.start(1)
    rss0, snap0 = rss(), tracemalloc.take_snapshot()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, url, str(n), mode, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdin is not None
    line = await proc.stdout.readline()
    if line.strip() != b"ready":
        raise SystemExit(f"the clients did not connect: {line!r}")
    await asyncio.sleep(0.5)
    gc.collect()
    rss1, snap1 = rss(), tracemalloc.take_snapshot()
    stats = snap1.compare_to(snap0, "filename")
    traced = sum(s.size_diff for s in stats)
    print(f"{mode} x {n}: RSS {(rss1 - rss0) / n / 1024:.1f} KiB, traced {traced / n / 1024:.1f} KiB per connection")
    by_source: dict[str, int] = {}
    for s in stats:
        key = source(s.traceback[0].filename)
        by_source[key] = by_source.get(key, 0) + s.size_diff
    for key, size in sorted(by_source.items(), key=lambda kv: -kv[1])[:14]:
        print(f"  {size / n:8.0f} B  {key}")
    proc.stdin.write(b"\n")
    await proc.stdin.drain()
    await proc.wait()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("loam", "bare") or not sys.argv[2].isdigit():
        raise SystemExit(__doc__)
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
