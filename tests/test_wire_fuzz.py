"""A wire fuzzer against a real `python -m loam serve`: malformed, oversized, out-of-range and
wrong-state messages. For each one the server answers with an `error` or closes the
connection (1008, 1009); it never hangs or dies, and a well-behaved client beside it keeps
committing, reading and receiving notifications."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from loam.node.api import Context
from loam.node.ephemeral import EphemeralNode
from loam.protocol import codec
from loam.protocol import messages as m
from loam.transport.websocket import WebSocketConnector

EXCHANGE_GUARD_S = 10.0  # a hang guard per exchange, not a performance bound
TYPES = ["hello", "commit", "get", "fetch", "subscribe", "unsubscribe", "ping", "welcome", "ack", "notify",
         "error", "pong", "bogus", ""]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("fuzz") / "db"
    proc = subprocess.Popen([sys.executable, "-m", "loam", "serve", "--storage", "leveldb", "--path", str(path),
                             "--max-message-size", "65536"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("loam serving on "), line
        yield line.split()[-1]
        assert proc.poll() is None, "the server died under the fuzzer"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**64), max_value=2**64),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), c, max_size=4)),
                           max_leaves=30)
FIELDS = ["rid", "tx", "ctx", "collection", "id", "query", "query_id", "token", "node_id", "version", "database",
          "sent_ns", "clock"]
messages = st.builds(
    lambda t, fields: {"t": t, **fields},
    st.sampled_from(TYPES),
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6),
)
frames = st.one_of(
    messages.map(lambda d: orjson.dumps(d, option=orjson.OPT_NON_STR_KEYS) if _encodable(d) else b"{}"),
    st.binary(max_size=200),
    st.sampled_from([b"[" * 3000, b'{"t":"get","rid":' + b"9" * 400 + b"}", b"\xff\xfe\xfd", b"null", b"[]",
                     b'{"t":"ping","rid":-1,"sent_ns":0}', b"x" * 70_000]),
)


def _encodable(d: Any) -> bool:
    try:
        orjson.dumps(d, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # integers beyond 64 bits: sent as raw bytes by the sampled cases instead
        return False
    return True


async def _exchange(url: str, frame: bytes, hello_first: bool, as_text: bool) -> None:
    """Send `frame`; the server must answer with an error or close the connection."""
    async with connect(url, compression=None, proxy=None, max_size=None) as ws:
        if hello_first:
            await ws.send(codec.encode(m.Hello(1, None, "fuzz")))
            assert isinstance(codec.decode(await asyncio.wait_for(ws.recv(), EXCHANGE_GUARD_S)), m.Welcome)
        try:
            await ws.send(frame.decode("utf-8", "replace") if as_text else frame)
            reply = await asyncio.wait_for(ws.recv(), EXCHANGE_GUARD_S)
        except ConnectionClosed as exc:
            assert exc.rcvd is not None and exc.rcvd.code in (1008, 1009), exc
            return
        except TimeoutError:
            # a well-formed request that needs no answer yet (e.g. an unsubscribe of nothing) is
            # answered too; silence means the server hung on this frame
            raise AssertionError(f"no answer within {EXCHANGE_GUARD_S} s to {frame[:200]!r}") from None
        msg = codec.decode(reply, 1 << 30)
        assert isinstance(msg, (m.Error, m.Pong, m.Welcome, m.Ack, m.GetResult, m.FetchResult, m.Subscribed,
                                m.Unsubscribed)), msg


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=frames, hello_first=st.booleans(), as_text=st.booleans())
def test_every_frame_is_answered_or_closed(server: str, frame: bytes, hello_first: bool, as_text: bool) -> None:
    asyncio.run(_exchange(server, frame, hello_first, as_text))


async def test_a_well_behaved_client_is_unaffected(server: str) -> None:
    # the fuzzing above ran against the same server; a hostile burst runs beside this client too
    node = EphemeralNode(WebSocketConnector(server, request_timeout=10))
    await node.start()
    try:
        lq = await node.subscribe("pets", "n >= 0", Context())
        hostile = [_exchange(server, f, True, False) for f in (b"\xff" * 10, b'{"t":"commit"}', b"[" * 3000)]
        ids, _ = await node.create("pets", [{"n": 1}, {"n": 2}], Context())
        await asyncio.gather(*hostile)
        got: set[str] = set()
        while got != set(ids):
            n = await lq.next(timeout=EXCHANGE_GUARD_S)
            got |= {e.id for e in n.added}
        assert [e.id for e in await node.fetch("pets", "n >= 1 ORDER BY n", Context())][-2:] == ids
    finally:
        await node.close()


def test_the_server_is_alive_after_the_fuzzing(server: str) -> None:
    async def ping() -> None:
        async with connect(server, compression=None, proxy=None) as ws:
            await ws.send(codec.encode(m.Hello(1, None, "last")))
            assert isinstance(codec.decode(await asyncio.wait_for(ws.recv(), EXCHANGE_GUARD_S)), m.Welcome)
            await ws.send(codec.encode(m.Ping(2)))
            pong = codec.decode(await asyncio.wait_for(ws.recv(), EXCHANGE_GUARD_S))
            assert isinstance(pong, m.Pong) and pong.rid == 2

    asyncio.run(ping())
