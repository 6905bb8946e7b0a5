"""Request matching: the sans-I/O matcher, the asyncio pending requests on top (timeouts,
disconnects, error replies), and the sans-I/O server session."""

from __future__ import annotations

import asyncio

import pytest

from loam.errors import PolicyDenied, ProtocolError, QueryError, ValidationError
from loam.protocol import codec
from loam.protocol import messages as m
from loam.protocol.matching import ConnectionLost, RemoteError, RequestMatcher
from loam.protocol.session import Reject, ServerSession
from loam.transport.pending import PendingRequests


def test_the_matcher_pairs_replies_with_requests_without_an_event_loop() -> None:
    r = RequestMatcher()
    get, ping, commit = r.open("get"), r.open("ping"), r.open("commit")
    assert (get, ping, commit) == (1, 2, 3) and len(r) == 3 and r.kind(ping) == "ping"
    assert r.match(m.Pong(ping)) == (ping, m.Pong(ping))
    assert r.match(m.Pong(ping)) is None and ping not in r  # answered once
    assert r.match(m.Notify("q", None, None, [], [], [], 0, 0, "change", None, 0)) is None
    rid, exc = r.match(m.Pong(get))  # type: ignore[misc]
    assert rid == get and isinstance(exc, ProtocolError) and "expected get_result" in str(exc)
    rid, exc = r.match(m.Error(commit, "validation", "bad id"))  # type: ignore[misc]
    assert isinstance(exc, ValidationError) and str(exc) == "bad id"
    r.open("fetch")
    assert r.clear() == [4] and len(r) == 0


async def test_reply_resolves_its_request_only() -> None:
    p = PendingRequests()
    r1, f1 = p.new("get")
    r2, f2 = p.new("ping")
    assert r1 != r2 and len(p) == 2
    assert p.resolve(m.Pong(r2))
    assert (await p.wait(r2, f2, 1)).rid == r2
    assert not f1.done()
    assert not p.resolve(m.Pong(999))  # unknown rid: ignored
    assert p.resolve(m.GetResult(r1, None))
    assert (await p.wait(r1, f1, 1)).entity is None
    assert len(p) == 0


async def test_timeout_names_the_request_and_forgets_it() -> None:
    p = PendingRequests()
    rid, fut = p.new("fetch")
    with pytest.raises(TimeoutError, match=f"no reply to fetch request {rid} within 0.01 s"):
        await p.wait(rid, fut, 0.01)
    assert len(p) == 0
    assert not p.resolve(m.FetchResult(rid, []))  # a late reply is dropped


async def test_disconnect_fails_every_pending_request() -> None:
    p = PendingRequests()
    waits = []
    for kind in ("commit", "get", "subscribe"):
        rid, fut = p.new(kind)
        waits.append(asyncio.create_task(p.wait(rid, fut, 5)))
    await asyncio.sleep(0)
    p.fail_all(ConnectionLost("connection to the durable node lost: test"))
    for w in waits:
        with pytest.raises(ConnectionLost, match="lost: test"):
            await w
    assert len(p) == 0


async def test_error_replies_become_local_exceptions() -> None:
    p = PendingRequests()
    cases = [
        ("validation", ValidationError),
        ("denied", PolicyDenied),
        ("query", QueryError),
        ("malformed", ProtocolError),
        ("internal", RemoteError),
    ]
    for code, exc_type in cases:
        rid, fut = p.new("get")
        p.resolve(m.Error(rid, code, f"boom {code}"))
        with pytest.raises(exc_type, match=f"boom {code}"):
            await p.wait(rid, fut, 1)


async def test_wrong_reply_type_is_a_protocol_error() -> None:
    p = PendingRequests()
    rid, fut = p.new("get")
    p.resolve(m.Pong(rid))
    with pytest.raises(ProtocolError, match="answered with pong, expected get_result"):
        await p.wait(rid, fut, 1)


# --- session ------------------------------------------------------------------


def _enc(msg: m.Message) -> bytes:
    return codec.encode(msg)


def test_session_handshake_then_requests() -> None:
    s = ServerSession("srv", token="t0k")
    hello = s.receive(_enc(m.Hello(1, "t0k", "client")))
    assert isinstance(hello, m.Hello) and s.state == "open" and s.peer_node_id == "client"
    w = s.welcome(hello, clock=7)
    assert (w.rid, w.node_id, w.clock, w.max_size) == (1, "srv", 7, codec.DEFAULT_MAX_SIZE)
    assert isinstance(s.receive(_enc(m.Ping(2))), m.Ping)
    s.add_query("q1")
    assert s.remove_query("q1") and not s.remove_query("q1")
    s.add_query("q2")
    assert s.close() == {"q2"} and s.state == "closed"


@pytest.mark.parametrize(
    "first, code",
    [
        (m.Hello(1, "wrong", "c"), "auth"),
        (m.Hello(1, None, "c"), "auth"),
        (m.Hello(1, "t0k", "c", version=99), "version"),
        (m.Ping(1), "unexpected"),
    ],
)
def test_session_rejects_bad_handshakes(first: m.Message, code: str) -> None:
    s = ServerSession("srv", token="t0k")
    r = s.receive(_enc(first))
    assert isinstance(r, Reject) and r.error.code == code and r.error.rid == 1
    assert s.state == "closed"


def test_session_rejects_malformed_oversized_and_server_messages() -> None:
    s = ServerSession("srv", max_size=100)
    r = s.receive(b"{not json")
    assert isinstance(r, Reject) and r.error.code == "malformed" and r.error.rid is None
    s = ServerSession("srv", max_size=100)
    r = s.receive(b"x" * 101)
    assert isinstance(r, Reject) and r.error.code == "too_large"
    s = ServerSession("srv")
    s.receive(_enc(m.Hello(1, None, "c")))
    r = s.receive(_enc(m.Welcome(2, "x", 0, 1, 0)))
    assert isinstance(r, Reject) and r.error.code == "unexpected"


async def test_cancelling_a_waiting_request_is_honoured_even_if_its_reply_just_came() -> None:
    """A reply that lands in the same loop turn as the caller's cancellation must not swallow
    it (asyncio.wait_for on Python 3.11 does; a cancelled run then went on writing)."""
    p = PendingRequests()
    rid, fut = p.new("ping")
    task = asyncio.ensure_future(p.wait(rid, fut, 5.0))
    await asyncio.sleep(0)  # the task now waits on the future
    assert p.resolve(m.Pong(rid))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(p) == 0


async def test_a_request_times_out_with_its_name_and_rid() -> None:
    p = PendingRequests()
    rid, fut = p.new("ping")
    with pytest.raises(TimeoutError, match=f"no reply to ping request {rid} within 0.01 s"):
        await p.wait(rid, fut, 0.01)
    assert len(p) == 0
