"""Protocol and transport bounds, each against a real WebSocket server on loopback.

Clock admission (a far-future commit clock is refused and cannot poison the durable
node), the per-connection bounds on queued bytes and on subscriptions, request ids,
entity id / collection syntax on the wire, and the numeric flags of `loam serve`.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from loam.node.api import Context
from loam.node.clock import DEFAULT_MAX_DRIFT, MAX_CLOCK
from loam.node.durable import DurableNode
from loam.node.ephemeral import EphemeralNode
from loam.protocol import codec
from loam.protocol import messages as m
from loam.storage import create_engine
from loam.transport.websocket import NodeServer, WebSocketConnector
from transport_helpers import wait_until

CTX = Context()
_CTX_WIRE = {"user": None, "data": {}}


async def _raw(url: str) -> ClientConnection:
    ws = await connect(url, compression=None, proxy=None, max_size=None)
    await ws.send(codec.encode(m.Hello(1, None, "raw")))
    assert isinstance(codec.decode(await asyncio.wait_for(ws.recv(), 10)), m.Welcome)
    return ws


async def _send(ws: ClientConnection, msg: dict[str, Any]) -> None:
    await ws.send(orjson.dumps({**msg, "sent_ns": 0}))


async def _reply(ws: ClientConnection) -> m.Message:
    return codec.decode(await asyncio.wait_for(ws.recv(), 10))


async def _close_code(ws: ClientConnection) -> int:
    with pytest.raises(ConnectionClosed) as info:
        while True:  # skip anything sent before the close
            await asyncio.wait_for(ws.recv(), 10)
    frame = info.value.rcvd
    assert frame is not None, "the server should close with a close frame"
    return frame.code


def _commit(rid: int, clock: int, collection: str = "pets", id: str = "p1", commit_id: str = "raw:1") -> dict[str, Any]:
    tx = {"commit_id": commit_id, "node_id": "raw", "clock": clock, "ops": [["c", collection, id, {"a": 1}]]}
    return {"t": "commit", "rid": rid, "tx": tx, "ctx": _CTX_WIRE}


async def _leveldb_server(path: Path, **kw: Any) -> tuple[DurableNode, NodeServer]:
    durable = DurableNode(create_engine("leveldb", path=str(path)))
    await durable.start()
    return durable, await NodeServer(durable, **kw).start()


# --- A. clock admission ----------------------------------------------------------


async def test_a_poisoned_commit_clock_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    durable, server = await _leveldb_server(tmp_path / "db")
    e = EphemeralNode(WebSocketConnector(server.url, request_timeout=10))
    try:
        await e.start()
        await e.create("pets", [{"n": 0}], CTX)
        before = durable.clock.value
        ws = await _raw(server.url)
        await _send(ws, _commit(7, 2**64 - 1))
        err = await _reply(ws)
        assert isinstance(err, m.Error) and err.rid == 7 and err.code == "validation", err
        assert str(2**64 - 1) in err.message and str(MAX_CLOCK) in err.message
        # a jump past the drift bound is refused the same way, naming the bound
        await _send(ws, _commit(8, before + DEFAULT_MAX_DRIFT + 1, commit_id="raw:2"))
        err = await _reply(ws)
        assert isinstance(err, m.Error) and err.rid == 8 and err.code == "validation", err
        assert str(DEFAULT_MAX_DRIFT) in err.message and "max_clock_drift" in err.message
        assert durable.clock.value == before
        assert await durable.get("pets", "p1", CTX) is None
        # the connection stays usable, and a commit within the bound is acked
        await _send(ws, _commit(9, before + 1000, commit_id="raw:3"))
        ack = await _reply(ws)
        assert isinstance(ack, m.Ack) and ack.rid == 9 and ack.clock == before + 1000
        await ws.close()
        for i in range(3):  # the ephemeral node keeps committing
            _, rec = await e.create("pets", [{"n": i}], CTX)
            assert rec.clock < before + 2000
    finally:
        await e.close()
        await server.close()
        await durable.close()
    # after a restart on the same LevelDB the clock is where the accepted commits left it
    durable, server = await _leveldb_server(tmp_path / "db")
    e = EphemeralNode(WebSocketConnector(server.url, request_timeout=10))
    try:
        assert before + 1000 <= durable.clock.value < before + 2000
        await e.start()
        ids, rec = await e.create("pets", [{"n": 9}], CTX)
        assert rec.clock < before + 2000 and await e.get("pets", ids[0], CTX) is not None
    finally:
        await e.close()
        await server.close()
        await durable.close()


async def test_durable_node_max_clock_drift_is_configurable(tmp_path: Path) -> None:
    durable = DurableNode(create_engine("memory"), max_clock_drift=10)
    await durable.start()
    from loam.errors import ValidationError
    from loam.model import Create, Transaction

    try:
        await durable.apply_transaction(Transaction("x:1", "x", 10, (Create("c", "a", {}),)), CTX)
        with pytest.raises(ValidationError, match="at most 10"):
            await durable.apply_transaction(Transaction("x:2", "x", 21, (Create("c", "b", {}),)), CTX)
        assert durable.clock.value == 10
        rec = await durable.apply_transaction(Transaction("x:3", "x", 20, (Create("c", "b", {}),)), CTX)
        assert rec.clock == 20
    finally:
        await durable.close()
