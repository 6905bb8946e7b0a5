"""WebSocket server robustness, reconnect/resubscribe, and `python -m loam serve` in a subprocess."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import AsyncIterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from loam.errors import AuthError
from loam.node.api import Context
from loam.node.durable import DurableNode
from loam.node.ephemeral import EphemeralNode
from loam.protocol import codec
from loam.protocol import messages as m
from loam.storage import create_engine
from loam.transport.websocket import NodeServer, WebSocketConnector
from support.transport import Cluster, wait_until

CTX = Context()


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = await Cluster("websocket", token="s3cret").start()
    try:
        yield c
    finally:
        await c.close()


async def _raw(url: str):  # type: ignore[no-untyped-def]
    return await connect(url, compression=None, proxy=None, max_size=None)


async def _hello(ws, token: str | None = "s3cret") -> m.Message:  # type: ignore[no-untyped-def]
    await ws.send(codec.encode(m.Hello(1, token, "raw")))
    return codec.decode(await ws.recv())


async def _closed_with(ws) -> ConnectionClosed:  # type: ignore[no-untyped-def]
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), 5)
    return info.value


async def _healthy(cluster: Cluster, e: EphemeralNode, lq) -> None:  # type: ignore[no-untyped-def]
    """The other client keeps working: commit, notification, read."""
    ids, rec = await e.create("c", [{"n": 1}], CTX)
    n = await lq.next(5)
    assert n.commit_id == rec.commit_id
    assert (await e.get("c", ids[0], CTX)) is not None


async def test_wrong_token_gets_an_error_and_a_closed_connection(cluster: Cluster) -> None:
    good = await cluster.ephemeral()
    lq = await good.subscribe("c", "ORDER BY n", CTX)
    ws = await _raw(cluster.server.url)
    err = await _hello(ws, token="wrong")
    assert isinstance(err, m.Error) and err.code == "auth" and err.rid == 1 and "token" in err.message
    closed = await _closed_with(ws)
    assert closed.rcvd is not None and closed.rcvd.code == 1008
    with pytest.raises(AuthError, match="wrong or missing token"):
        await EphemeralNode(WebSocketConnector(cluster.server.url, token="nope")).start()
    with pytest.raises(AuthError):
        await EphemeralNode(WebSocketConnector(cluster.server.url)).start()  # no token at all
    await _healthy(cluster, good, lq)


async def test_request_before_hello_is_refused(cluster: Cluster) -> None:
    ws = await _raw(cluster.server.url)
    await ws.send(codec.encode(m.Get(5, "c", "x")))
    err = codec.decode(await ws.recv())
    assert isinstance(err, m.Error) and err.code == "unexpected" and err.rid == 5
    await _closed_with(ws)


@pytest.mark.parametrize(
    "frame",
    [
        b"\xff\xfenot json",
        b'{"t": "get", "sent_ns": 0}',
        "text frame {",
        b'{"t": "commit", "rid": 1, "sent_ns": 0, "tx": {}, "ctx": {}}',
    ],
)
async def test_malformed_frame_gets_an_error_and_a_closed_connection(cluster: Cluster, frame: bytes | str) -> None:
    good = await cluster.ephemeral()
    lq = await good.subscribe("c", "ORDER BY n", CTX)
    ws = await _raw(cluster.server.url)
    assert isinstance(await _hello(ws), m.Welcome)
    await ws.send(frame)
    err = codec.decode(await ws.recv())
    assert isinstance(err, m.Error) and err.code == "malformed" and "malformed" in err.message
    closed = await _closed_with(ws)
    assert closed.rcvd is not None and closed.rcvd.code == 1008
    await _healthy(cluster, good, lq)


async def test_oversized_frame_closes_that_connection_only(cluster: Cluster) -> None:
    good = await cluster.ephemeral()
    lq = await good.subscribe("c", "ORDER BY n", CTX)
    ws = await _raw(cluster.server.url)
    assert isinstance(await _hello(ws), m.Welcome)
    await ws.send(b"x" * (codec.DEFAULT_MAX_SIZE + 1))
    closed = await _closed_with(ws)
    assert closed.rcvd is not None and closed.rcvd.code == 1009  # "message too big"
    await _healthy(cluster, good, lq)
    # an oversized reply becomes an error for that request, the connection stays up
    await cluster.durable.create("big", [{"blob": "y" * 200_000} for _ in range(6)], CTX)
    with pytest.raises(Exception, match="too_large|over the"):
        await good.fetch("big", "ORDER BY blob", CTX)
    assert await good.connector.ping() > 0


async def test_server_messages_reach_only_their_clients(cluster: Cluster) -> None:
    """A raw client sees exactly the protocol: welcome, then replies echoing its rids."""
    ws = await _raw(cluster.server.url)
    welcome = await _hello(ws)
    assert isinstance(welcome, m.Welcome) and welcome.node_id == cluster.durable.node_id
    assert welcome.max_size == codec.DEFAULT_MAX_SIZE
    await ws.send(codec.encode(m.Subscribe(7, "c", "ORDER BY n", CTX)))
    sub = codec.decode(await ws.recv())
    assert isinstance(sub, m.Subscribed) and sub.rid == 7 and sub.results == []
    await cluster.durable.create("c", [{"n": 3}], CTX)
    note = codec.decode(await ws.recv())
    assert isinstance(note, m.Notify) and note.query_id == sub.query_id and note.added[0].props == {"n": 3}
    await ws.send(codec.encode(m.Unsubscribe(8, "nope")))
    err = codec.decode(await ws.recv())
    assert isinstance(err, m.Error) and err.code == "unknown_query" and err.rid == 8
    await ws.send(codec.encode(m.Unsubscribe(9, sub.query_id)))
    assert isinstance(codec.decode(await ws.recv()), m.Unsubscribed)
    assert cluster.durable.stats()["live_queries"] == 0
    await ws.close()


async def test_notifications_go_inline_unless_flow_control_holds_them(cluster: Cluster) -> None:
    """The server writes a notify straight to the socket inside the commit (no writer-task
    hop); while the transport is paused by flow control it queues instead, and order holds."""
    ws = await _raw(cluster.server.url)
    await _hello(ws)
    await ws.send(codec.encode(m.Subscribe(2, "c", "ORDER BY n", CTX)))
    sub = codec.decode(await ws.recv())
    (peer,) = cluster.server.service.peers
    server_ws = peer.channel.ws
    sent = []
    original = peer._send_nowait
    peer._send_nowait = lambda data: sent.append(original(data)) or sent[-1]
    try:
        await cluster.durable.create("c", [{"n": 1}], CTX)
        assert sent == [True], "the notify was not written inline"
        assert not peer.out
        server_ws.pause_writing()  # what asyncio calls when the socket buffer is full
        await cluster.durable.create("c", [{"n": 2}], CTX)
        await cluster.durable.create("c", [{"n": 3}], CTX)
        assert sent == [True, False] and len(peer.out) == 2, "paused: the notifies must queue"
        server_ws.resume_writing()
        got = [codec.decode(await asyncio.wait_for(ws.recv(), 5)) for _ in range(3)]
        assert [n.added[0].props["n"] for n in got] == [1, 2, 3]
        assert all(n.query_id == sub.query_id for n in got)
    finally:
        peer._send_nowait = original
        await ws.close()


async def test_messages_larger_than_one_socket_read_arrive_whole(cluster: Cluster) -> None:
    """Sockets are read 64 KiB at a time (WebSocketChannel): a ~600 KB fetch result and a
    ~600 KB commit still travel as one message each, both ways."""
    e = await cluster.ephemeral()
    ids, _ = await e.create("big", [{"n": i, "s": f"{i:04d}" + "x" * 2000} for i in range(300)], CTX)
    got = await e.fetch("big", "ORDER BY n", CTX)
    assert [x.id for x in got] == ids and all(len(x.props["s"]) == 2004 for x in got)
    assert got == await cluster.durable.fetch("big", "ORDER BY n", CTX)
    (peer,) = cluster.server.service.peers
    assert peer.channel.ws.transport.max_size == 64 * 1024


async def test_client_handles_messages_in_the_read_callback_and_falls_back_in_order() -> None:
    """The client connector handles each single-frame message where the socket is read (no
    reader-task hop). A fragmented message (loam servers never send one) turns that off
    for the connection: it and every later message go through recv(), still in order."""
    from websockets.asyncio.server import serve

    async def handler(ws):  # type: ignore[no-untyped-def]
        hello = codec.decode(await ws.recv())
        await ws.send(codec.encode(m.Welcome(hello.rid, "raw-server", 0)))
        await ws.recv()  # the client's ping: everything below is sent after the handshake
        notes = [
            codec.encode(m.Notify("q", f"c{i}", None, [], [], [f"id{i}"], 0, i, "change", None, 0)) for i in range(4)
        ]
        await ws.send(notes[0])
        await ws.send([notes[1][:10], notes[1][10:]])  # one message in two fragments
        await ws.send(notes[2])
        await ws.send(notes[3])
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        conn = WebSocketConnector(f"ws://127.0.0.1:{port}", request_timeout=5, reconnect=False)
        got: list[str] = []
        conn.on_notify = lambda n: got.append(n.commit_id)
        await conn.connect("client")
        ws = conn._channel.ws  # type: ignore[union-attr]
        assert ws.on_message is not None, "the client should push messages from its read callback"
        await asyncio.wait_for(conn._channel.send(codec.encode(m.Ping(99))), 5)  # type: ignore[union-attr]
        await wait_until(lambda: len(got) == 4)
        assert got == ["c0", "c1", "c2", "c3"]
        assert ws.on_message is None  # the fragment turned pushing off
        await conn.close()


async def test_server_restart_on_same_port_reconnects_and_resubscribes() -> None:
    durable = DurableNode(create_engine("memory"))
    await durable.start()
    server = await NodeServer(durable).start()
    port = server.port
    ids, _ = await durable.create("c", [{"n": i} for i in range(6)], CTX)
    e = EphemeralNode(WebSocketConnector(server.url, backoff_initial=0.02, backoff_max=0.2, request_timeout=10))
    await e.start()
    try:
        lq = await e.subscribe("c", "ORDER BY n LIMIT 3", CTX)
        assert [x.props["n"] for x in lq.results] == [0, 1, 2]
        await server.close()
        # while it is down, the result changes on the durable node
        await durable.delete("c", ids[0], CTX)
        await durable.update("c", ids[2], {"n": 20}, CTX)
        await durable.update("c", ids[1], {"n": 1.5}, CTX)
        assert durable.stats()["live_queries"] == 0  # released with the connection
        await asyncio.sleep(0.1)  # a few failed reconnect attempts
        server = await NodeServer(durable, port=port).start()
        n = await lq.next(10)
        assert n.kind == "resubscribed" and n.commit_id is None
        assert n.removed == (ids[0], ids[2])  # against the old result
        assert [a.props["n"] for a in n.added] == [3, 4]
        assert [u.props["n"] for u in n.updated] == [1.5]
        assert lq.results == await durable.fetch("c", "ORDER BY n LIMIT 3", CTX)
        assert e.connector_stats()["reconnects"] == 1
        # and it is live again
        await e.delete("c", ids[1], CTX)
        n = await lq.next(5)
        assert n.kind == "change" and n.removed == (ids[1],)
        assert lq.results == await durable.fetch("c", "ORDER BY n LIMIT 3", CTX)
        assert durable.stats()["live_queries"] == 1
    finally:
        await e.close()
        await server.close()
        await durable.close()


async def test_requests_wait_for_the_reconnect() -> None:
    durable = DurableNode(create_engine("memory"))
    await durable.start()
    server = await NodeServer(durable).start()
    port = server.port
    e = EphemeralNode(WebSocketConnector(server.url, backoff_initial=0.02, backoff_max=0.1, request_timeout=10))
    await e.start()
    try:
        await server.close()
        await wait_until(lambda: not e.connector.connected, what="disconnect noticed")
        pending = asyncio.create_task(e.create("c", [{"n": 1}], CTX))
        await asyncio.sleep(0.1)
        assert not pending.done()
        server = await NodeServer(durable, port=port).start()
        ids, rec = await asyncio.wait_for(pending, 10)
        assert rec.node_id == e.node_id and await durable.get("c", ids[0], CTX) is not None
    finally:
        await e.close()
        await server.close()
        await durable.close()


async def test_python_m_loam_serve_subprocess(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loam",
            "serve",
            "--storage",
            "leveldb",
            "--path",
            str(tmp_path / "db"),
            "--port",
            "0",
            "--token",
            "tt",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)  # type: ignore[union-attr]
        match = re.fullmatch(r"loam serving on (ws://127\.0\.0\.1:(\d+))\n", line)
        assert match, f"unexpected first line {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"  # type: ignore[union-attr]
        url = match.group(1)
        a = EphemeralNode(WebSocketConnector(url, token="tt"))
        b = EphemeralNode(WebSocketConnector(url, token="tt"))
        await a.start()
        await b.start()
        lq = await b.subscribe("notes", "ORDER BY n DESC LIMIT 2", CTX)
        ids, rec = await a.create("notes", [{"n": i} for i in range(4)], CTX)
        assert rec.node_id == a.node_id
        n = await lq.next(10)
        assert [x.props["n"] for x in n.added] == [3, 2]
        await a.delete("notes", ids[3], CTX)
        n = await lq.next(10)
        assert n.removed == (ids[3],) and n.gap_filled == 1
        assert lq.results == await a.fetch("notes", "ORDER BY n DESC LIMIT 2", CTX)
        rtt = await a.connector.ping()
        assert rtt > 0
        await a.close()
        await b.close()
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(proc.wait, 30)
        assert rc == 0, proc.stderr.read()  # type: ignore[union-attr]
        # storage was closed cleanly: the directory opens again and holds the data
        eng = create_engine("leveldb", path=str(tmp_path / "db"))
        eng.open()
        try:
            assert eng.count("notes") == 3
        finally:
            eng.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_a_client_that_stops_reading_is_closed_then_reconnects_and_resubscribes() -> None:
    """Backpressure: a client whose socket is not read makes the server's queue for it
    grow; past `max_pending` the server drops what waits, releases that client's live
    queries and closes it with 1013. The other client is not affected; the slow one,
    reading again, reconnects, resubscribes, and its live query equals a fresh fetch."""
    c = await Cluster("websocket", max_pending=8).start()
    try:
        slow = await c.ephemeral(backoff_initial=0.01)
        fast = await c.ephemeral()
        q = "ORDER BY n DESC LIMIT 3"  # every create enters the window: one ~200 kB notify each
        slow_lq = await slow.subscribe("big", q, CTX)
        fast_lq = await fast.subscribe("big", q, CTX)
        lost: list[str] = []
        slow.connector.on_lost = lambda reason, prev=slow.connector.on_lost: (lost.append(reason), prev(reason))[1]
        slow.connector._channel.ws.transport.pause_reading()  # type: ignore[union-attr]
        blob = "x" * 200_000
        for i in range(60):  # ~12 MB of notifications: more than the socket buffers hold
            await c.durable.create("big", [{"n": i, "blob": blob}], CTX)
            await asyncio.sleep(0)
            if c.server.service.slow_peers_closed:
                break
        assert c.server.service.slow_peers_closed == 1, "the server should have given up on the slow client"
        assert c.server.stats()["slow_peers_closed"] == 1
        await wait_until(
            lambda: [e.props["n"] for e in fast_lq.results] == [i, i - 1, i - 2], what="the fast client's notifications"
        )
        slow.connector._channel.ws.transport.resume_reading()  # type: ignore[union-attr]
        await wait_until(lambda: slow.connector.reconnects >= 1, what="reconnect")
        assert lost and "too slow" in lost[0], lost
        want = await c.durable.fetch("big", q, CTX)
        await wait_until(lambda: slow_lq.results == want, what="the slow client's live query caught up")
        assert fast_lq.results == want
    finally:
        await c.close()


def test_max_pending_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_pending must be a positive number"):
        NodeServer(DurableNode(create_engine("memory")), max_pending=0)
    r = subprocess.run(
        [sys.executable, "-m", "loam", "serve", "--storage", "memory", "--max-pending", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "--max-pending must be at least 1" in r.stderr, r.stderr
