"""loam's hot-path WebSocket framing against `websockets`' own serializer and parser, and
the client connection's frame splitting over real sockets (loopback)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State

from loam.protocol import codec
from loam.protocol import messages as m
from loam.transport.websocket import WebSocketConnector, _parser_idle
from loam.transport.wsframes import binary_frame, split_binary_frames
from support.transport import wait_until

SIZES = [0, 1, 125, 126, 127, 1000, 65535, 65536, 70000]


@pytest.mark.parametrize("n", SIZES)
def test_binary_frame_is_what_websockets_serializes(n: int) -> None:
    payload = bytes(i % 251 for i in range(n))
    assert binary_frame(payload) == Frame(Opcode.BINARY, payload).serialize(mask=False)


def _parse_all(data: bytes) -> list[Frame]:
    """What a `websockets` client-side protocol makes of `data`."""
    p = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
    p.receive_data(data)
    return [e for e in p.events_received() if isinstance(e, Frame)]


@pytest.mark.parametrize("n", SIZES)
def test_websockets_parses_the_frame_back(n: int) -> None:
    payload = bytes(i % 251 for i in range(n))
    (frame,) = _parse_all(binary_frame(payload))
    assert frame.opcode is Opcode.BINARY and frame.fin and frame.data == payload


# Frames of every kind a server may send, as websockets serializes them; only the first
# kind is one `split_binary_frames` may take.
_KINDS = {
    "binary": lambda b: Frame(Opcode.BINARY, b).serialize(mask=False),
    "text": lambda b: Frame(Opcode.TEXT, b.hex().encode()).serialize(mask=False),
    "fragment": lambda b: Frame(Opcode.BINARY, b, fin=False).serialize(mask=False),
    "ping": lambda b: Frame(Opcode.PING, b[:125]).serialize(mask=False),
    "masked": lambda b: Frame(Opcode.BINARY, b).serialize(mask=True),
}
frames = st.lists(st.tuples(st.sampled_from(sorted(_KINDS)), st.binary(max_size=300)), max_size=8)


@settings(max_examples=300, deadline=None)
@given(frames=frames, cut=st.integers(min_value=0, max_value=3000), limit=st.sampled_from([None, 64, 200]))
def test_split_takes_exactly_the_leading_complete_binary_frames(
    frames: list[tuple[str, bytes]], cut: int, limit: int | None
) -> None:
    wire = [_KINDS[k](b) for k, b in frames]
    data = b"".join(wire)[:cut]
    payloads, used = split_binary_frames(data, limit)
    want: list[bytes] = []
    offset = 0
    for (kind, body), w in zip(frames, wire):
        if kind != "binary" or offset + len(w) > len(data) or (limit is not None and len(body) > limit):
            break
        want.append(body)
        offset += len(w)
    assert payloads == want
    assert used == offset
    assert all(type(p) is bytes for p in payloads)


def test_parser_is_idle_only_between_frames() -> None:
    p = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
    assert _parser_idle(p)
    whole = binary_frame(b"x" * 300)
    p.receive_data(whole[:2])  # header read, payload pending: the parser is inside a frame
    assert not _parser_idle(p)
    p.receive_data(whole[2:])
    assert _parser_idle(p)
    p.receive_data(Frame(Opcode.BINARY, b"a", fin=False).serialize(mask=False))
    assert not _parser_idle(p), "a fragmented message is in progress"


async def _client_of(handler: Any) -> tuple[Any, WebSocketConnector, list[str]]:
    from websockets.asyncio.server import serve

    server = await serve(handler, "127.0.0.1", 0, compression=None)
    port = server.sockets[0].getsockname()[1]
    conn = WebSocketConnector(f"ws://127.0.0.1:{port}", request_timeout=5, reconnect=False)
    got: list[str] = []
    conn.on_notify = lambda n: got.append(n.commit_id)
    await conn.connect("client")
    await asyncio.wait_for(conn._channel.send(codec.encode(m.Ping(99))), 5)  # type: ignore[union-attr]
    return server, conn, got


def _note(i: int) -> bytes:
    return codec.encode(m.Notify("q", f"c{i}", None, [], [], [f"id{i}"], 0, i, "change", None, 0))


async def _welcomed(ws: Any) -> None:
    hello = codec.decode(await ws.recv())
    await ws.send(codec.encode(m.Welcome(hello.rid, "raw-server", 0)))
    await ws.recv()  # the client's ping: everything after it is sent after the handshake


async def test_one_read_with_binary_control_and_text_frames_keeps_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several frames in one socket read: the leading binary ones are split off, and
    everything from the ping on goes through `websockets` (which answers the ping), in
    order; later reads that start with binary frames take the split path again."""
    fed: list[bytes] = []
    original = ClientConnection.data_received
    monkeypatch.setattr(ClientConnection, "data_received", lambda self, d: (fed.append(bytes(d)), original(self, d))[1])

    async def handler(ws: Any) -> None:
        await _welcomed(ws)
        burst = [
            binary_frame(_note(0)),
            binary_frame(_note(1)),
            Frame(Opcode.PING, b"hi").serialize(mask=False),
            binary_frame(_note(2)),
            Frame(Opcode.TEXT, _note(3)).serialize(mask=False),
        ]
        ws.transport.write(b"".join(burst))  # one write: one read on the other side
        await asyncio.sleep(0.05)
        ws.transport.write(binary_frame(_note(4)) + binary_frame(_note(5)))
        await ws.wait_closed()

    server, conn, got = await _client_of(handler)
    try:
        await wait_until(lambda: len(got) == 6)
        assert got == [f"c{i}" for i in range(6)]
        assert [d[0] for d in fed if d[:1] in (b"\x89", b"\x82")] == [0x89], (
            "only the rest of the burst, from the ping on, should have gone to websockets"
        )
    finally:
        await conn.close()
        server.close()
        await server.wait_closed()


async def test_a_frame_split_across_reads_falls_back_and_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A frame whose payload arrives in a later read goes through `websockets`' parser;
    once it is between frames again, whole frames are split off directly."""
    direct: list[int] = []
    original = ClientConnection.data_received
    monkeypatch.setattr(
        ClientConnection, "data_received", lambda self, d: (direct.append(len(d)), original(self, d))[1]
    )

    async def handler(ws: Any) -> None:
        await _welcomed(ws)
        whole = binary_frame(_note(0))
        ws.transport.write(whole[:5])
        await asyncio.sleep(0.05)
        ws.transport.write(whole[5:])
        await asyncio.sleep(0.05)
        ws.transport.write(binary_frame(_note(1)))
        await ws.wait_closed()

    server, conn, got = await _client_of(handler)
    try:
        await wait_until(lambda: len(got) == 2)
        assert got == ["c0", "c1"]
        # both halves of the first notify went to websockets (the handshake's reads before
        # them); the second notify came as one whole frame: split off, websockets not called
        assert direct[-2:] == [5, len(binary_frame(_note(0))) - 5], direct
    finally:
        await conn.close()
        server.close()
        await server.wait_closed()


async def test_split_messages_take_no_websockets_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """The common case: one notify per read is handed over without `websockets`' parser."""
    calls: list[int] = []

    async def handler(ws: Any) -> None:
        await _welcomed(ws)
        for i in range(3):
            await ws.send(_note(i))
            await asyncio.sleep(0.01)
        await ws.wait_closed()

    original = ClientConnection.data_received
    monkeypatch.setattr(ClientConnection, "data_received", lambda self, d: (calls.append(len(d)), original(self, d))[1])
    server, conn, got = await _client_of(handler)
    handshake = len(calls)
    try:
        await wait_until(lambda: len(got) == 3)
        assert got == ["c0", "c1", "c2"]
        assert len(calls) == handshake, "a whole binary frame per read should not reach websockets' parser"
    finally:
        await conn.close()
        server.close()
        await server.wait_closed()


async def test_oversized_frame_still_closes_with_1009() -> None:
    """A frame over the client's limit is not split off: `websockets` refuses it (1009)."""

    async def handler(ws: Any) -> None:
        await _welcomed(ws)
        ws.transport.write(binary_frame(b"x" * 5000))
        await ws.wait_closed()

    from websockets.asyncio.server import serve

    server = await serve(handler, "127.0.0.1", 0, compression=None)
    port = server.sockets[0].getsockname()[1]
    conn = WebSocketConnector(f"ws://127.0.0.1:{port}", request_timeout=5, reconnect=False, max_size=4096)
    lost: list[str] = []
    conn.on_lost = lost.append
    await conn.connect("client")
    try:
        await asyncio.wait_for(conn._channel.send(codec.encode(m.Ping(99))), 5)  # type: ignore[union-attr]
        await wait_until(lambda: bool(lost))
        assert "too big" in lost[0]
    finally:
        await conn.close()
        server.close()
        await server.wait_closed()
