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
from support.transport import wait_until

CTX = Context()
_CTX_WIRE = {"user": None, "data": {}}


async def _raw(url: str) -> ClientConnection:
    ws = await connect(url, compression=None, proxy=None, max_size=None)
    await ws.send(codec.encode(m.Hello(1, None, "raw")))
    assert isinstance(codec.decode(await asyncio.wait_for(ws.recv(), 10)), m.Welcome)
    return ws


async def _send(ws: ClientConnection, msg: dict[str, Any]) -> None:
    """Send `msg` as JSON with `sent_ns`; integers beyond 64 bits are written as they are."""
    big: dict[str, int] = {}
    d = {**msg, "sent_ns": 0}
    for k, v in d.items():
        if type(v) is int and not -(2**63) <= v < 2**64:  # orjson refuses these: a placeholder
            big[k], d[k] = v, f"@big:{k}@"
    data = orjson.dumps(d)
    for k, v in big.items():
        data = data.replace(f'"@big:{k}@"'.encode(), str(v).encode())
    await ws.send(data)


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


# --- B. per-connection bounds: queued bytes, subscriptions -----------------------


async def _memory_server(**kw: Any) -> tuple[DurableNode, NodeServer]:
    durable = DurableNode(create_engine("memory"))
    await durable.start()
    return durable, await NodeServer(durable, **kw).start()


async def test_a_client_that_does_not_read_is_closed_past_max_pending_bytes() -> None:
    """Few, large notifications: far below max_pending messages, but past the byte bound
    the server closes the connection (1013) instead of holding them; the queue never
    holds more than the bound plus one message, and a reading client is unaffected."""
    limit = 4 << 20
    durable, server = await _memory_server(max_pending=10_000, max_pending_bytes=limit)
    good = EphemeralNode(WebSocketConnector(server.url, request_timeout=10))
    try:
        await good.start()
        good_lq = await good.subscribe("big", "ORDER BY n DESC LIMIT 1", CTX)
        ws = await _raw(server.url)
        await _send(
            ws, {"t": "subscribe", "rid": 2, "collection": "big", "query": "ORDER BY n DESC LIMIT 1", "ctx": _CTX_WIRE}
        )
        assert isinstance(await _reply(ws), m.Subscribed)
        ws.transport.pause_reading()  # the client stops reading; the server's queue for it grows
        blob = "x" * 500_000
        most = 0
        for i in range(200):  # ~100 MB of notifications if nothing stopped them
            await durable.create("big", [{"n": i, "blob": blob}], CTX)
            await asyncio.sleep(0)
            most = max([most, *(p._out_bytes for p in server.service.peers)])
            if server.service.slow_peers_closed:
                break
        assert server.service.slow_peers_closed == 1, "the server should have closed the client that does not read"
        assert i < 100 and 0 < most <= limit
        ws.transport.resume_reading()
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1013
        assert "bytes waiting" in info.value.rcvd.reason
        await wait_until(
            lambda: bool(good_lq.results) and good_lq.results[0].props["n"] == i,
            what="the reading client's notifications",
        )
        await wait_until(lambda: durable.stats()["live_queries"] == 1, what="the closed client's live query released")
    finally:
        await good.close()
        await server.close()
        await durable.close()


async def test_subscriptions_per_connection_are_bounded() -> None:
    durable, server = await _memory_server(max_subscriptions=3)
    try:
        await durable.create("c", [{"n": 1}], CTX)
        ws = await _raw(server.url)
        # sent at once: the bound holds for subscribes that are still being set up
        for rid in range(10, 15):
            await _send(ws, {"t": "subscribe", "rid": rid, "collection": "c", "query": "ORDER BY n", "ctx": _CTX_WIRE})
        replies = [await _reply(ws) for _ in range(5)]
        ok = [r for r in replies if isinstance(r, m.Subscribed)]
        refused = [r for r in replies if isinstance(r, m.Error)]
        assert len(ok) == 3 and len(refused) == 2
        assert all(
            r.code == "validation" and "3 live queries" in r.message and "max_subscriptions" in r.message
            for r in refused
        )
        assert durable.stats()["live_queries"] == 3
        # the existing ones are unaffected
        await durable.create("c", [{"n": 2}], CTX)
        notes = [await _reply(ws) for _ in range(3)]
        assert sorted(n.query_id for n in notes if isinstance(n, m.Notify)) == sorted(s.query_id for s in ok)
        # after an unsubscribe there is room for one more
        await _send(ws, {"t": "unsubscribe", "rid": 20, "query_id": ok[0].query_id})
        assert isinstance(await _reply(ws), m.Unsubscribed)
        await _send(ws, {"t": "subscribe", "rid": 21, "collection": "c", "query": "ORDER BY n", "ctx": _CTX_WIRE})
        assert isinstance(await _reply(ws), m.Subscribed)
        await _send(ws, {"t": "subscribe", "rid": 22, "collection": "c", "query": "ORDER BY n", "ctx": _CTX_WIRE})
        err = await _reply(ws)
        assert isinstance(err, m.Error) and err.rid == 22 and err.code == "validation"
        await ws.close()
    finally:
        await server.close()
        await durable.close()


def test_server_bounds_are_validated() -> None:
    node = DurableNode(create_engine("memory"))
    with pytest.raises(ValueError, match="max_size must be at least 4096"):
        NodeServer(node, max_size=-5)
    with pytest.raises(ValueError, match="max_pending_bytes must be at least max_size"):
        NodeServer(node, max_size=1 << 20, max_pending_bytes=1000)
    with pytest.raises(ValueError, match="max_subscriptions must be a positive number"):
        NodeServer(node, max_subscriptions=0)
    with pytest.raises(ValueError, match="port must be in 0..65535"):
        NodeServer(node, port=99999)
    s = NodeServer(node, max_size=100 << 20)
    assert s.service.max_pending_bytes == 100 << 20  # the default grows with the message limit
    assert NodeServer(node).service.max_pending_bytes == 64 << 20
    assert NodeServer(node).service.max_subscriptions == 1000


# --- C. request ids, ids and collection names ------------------------------------


@pytest.mark.parametrize("rid", [999999999999999999999999999, 2**64 - 1, 2**53, -1])
async def test_an_out_of_range_rid_gets_malformed_and_a_close(rid: int) -> None:
    durable, server = await _memory_server()
    try:
        for t in ("get", "ping"):
            ws = await _raw(server.url)
            msg = (
                {"t": "ping", "rid": rid}
                if t == "ping"
                else {"t": "get", "rid": rid, "collection": "c", "id": "x", "ctx": _CTX_WIRE}
            )
            await _send(ws, msg)
            err = await _reply(ws)
            assert isinstance(err, m.Error) and err.code == "malformed" and err.rid is None, (t, err)
            assert await _close_code(ws) == 1008
        ws = await _raw(server.url)
        await _send(ws, {"t": "ping", "rid": m.MAX_RID})  # the highest rid is answered
        pong = await _reply(ws)
        assert isinstance(pong, m.Pong) and pong.rid == m.MAX_RID
        await ws.close()
    finally:
        await server.close()
        await durable.close()


async def test_a_malformed_request_with_a_readable_rid_names_it_in_the_error() -> None:
    durable, server = await _memory_server()
    try:
        ws = await _raw(server.url)
        await _send(ws, {"t": "get", "rid": 41, "collection": "c", "id": 5, "ctx": _CTX_WIRE})
        err = await _reply(ws)
        assert isinstance(err, m.Error) and err.code == "malformed" and err.rid == 41 and "$.id" in err.message
        assert await _close_code(ws) == 1008
    finally:
        await server.close()
        await durable.close()


@pytest.mark.parametrize(
    "collection,id",
    [
        ("../../etc", "p1"),
        ("pets", "../../etc"),
        ("pets", "a\x00b"),
        ("pets", "x" * 129),
        ("a/b", "p1"),
        ("pets", " p1"),
    ],
)
async def test_ids_and_collections_outside_the_wire_syntax_are_refused(collection: str, id: str) -> None:
    durable, server = await _memory_server()
    try:
        ws = await _raw(server.url)
        await _send(ws, _commit(3, 1, collection=collection, id=id))
        err = await _reply(ws)
        assert isinstance(err, m.Error) and err.rid == 3 and err.code == "validation", err
        assert "is invalid" in err.message
        await _send(ws, {"t": "get", "rid": 4, "collection": collection, "id": id, "ctx": _CTX_WIRE})
        err = await _reply(ws)
        assert isinstance(err, m.Error) and err.rid == 4 and err.code == "validation", err
        if collection != "pets":
            for rid, t in ((5, "fetch"), (6, "subscribe")):
                await _send(ws, {"t": t, "rid": rid, "collection": collection, "query": "", "ctx": _CTX_WIRE})
                err = await _reply(ws)
                assert isinstance(err, m.Error) and err.rid == rid and err.code == "validation", err
        assert durable.commits == 0 and durable.stats()["live_queries"] == 0
        # the connection stays open and well-formed requests work
        await _send(ws, _commit(7, 1, collection="pets", id="p-1:x.y_Z"))
        assert isinstance(await _reply(ws), m.Ack)
        await ws.close()
    finally:
        await server.close()
        await durable.close()


def test_loam_serve_port_out_of_range_is_an_argparse_error() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "loam", "serve", "--storage", "memory", "--port", "99999"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == "python -m loam serve: error: --port must be in 0..65535, got 99999"


@pytest.mark.parametrize(
    "args,flag",
    [
        (["--max-message-size", "-5"], "--max-message-size"),
        (["--max-message-size", "0"], "--max-message-size"),
        (["--max-pending", "0"], "--max-pending"),
        (["--max-pending-bytes", "4095"], "--max-pending-bytes"),
        (["--max-message-size", "2000000", "--max-pending-bytes", "1999999"], "--max-pending-bytes"),
        (["--max-subscriptions", "0"], "--max-subscriptions"),
        (["--pool-size", "0"], "--pool-size"),
        (["--port", "-1"], "--port"),
    ],
)
def test_loam_serve_numeric_flags_are_checked(args: list[str], flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    from loam.cli_serve import main

    with pytest.raises(SystemExit) as info:
        main(["--storage", "memory", *args])
    assert info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"python -m loam serve: error: {flag} must be "), last
