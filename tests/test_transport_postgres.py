"""Ephemeral nodes over WebSocket against a PostgreSQL-backed durable node (blocking storage path),
in this process and via `python -m loam serve --storage postgres`."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys

import pytest

from loam.node.api import Context
from loam.node.ephemeral import EphemeralNode
from loam.storage import create_engine
from loam.transport.websocket import WebSocketConnector
from support.transport import Cluster, settle

pytestmark = pytest.mark.postgres
CTX = Context()


async def test_limit_window_over_websocket_with_postgres_storage(pg_database: str) -> None:
    c = await Cluster("websocket", storage=create_engine("postgres", dsn=pg_database, pool_size=2)).start()
    try:
        a = await c.ephemeral()
        b = await c.ephemeral()
        q = "ORDER BY n LIMIT 3"
        ids, _ = await a.create("t", [{"n": i} for i in range(8)], CTX)
        lq = await b.subscribe("t", q, CTX)
        assert [x.props["n"] for x in lq.results] == [0, 1, 2]
        await asyncio.gather(*(a.delete("t", ids[i], CTX) for i in (0, 1)), b.update("t", ids[5], {"n": -1}, CTX))
        await settle(c)
        assert lq.results == await c.durable.fetch("t", q, CTX)
        assert [x.props["n"] for x in lq.results] == [-1, 2, 3]
    finally:
        await c.close()


async def test_python_m_loam_serve_postgres(pg_database: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "loam", "serve", "--storage", "postgres", "--dsn", pg_database, "--pool-size", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)  # type: ignore[union-attr]
        match = re.fullmatch(r"loam serving on (ws://127\.0\.0\.1:\d+)\n", line)
        assert match, f"unexpected first line {line!r}"
        e = EphemeralNode(WebSocketConnector(match.group(1)))
        await e.start()
        ids, rec = await e.create("t", [{"n": 1}, {"n": 2}], CTX)
        assert rec.node_id == e.node_id
        assert [x.id for x in await e.fetch("t", "ORDER BY n", CTX)] == ids
        await e.close()
        proc.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(proc.wait, 30) == 0, proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
