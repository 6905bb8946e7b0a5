"""Ephemeral nodes against a durable node over both connectors (in-process and real WebSockets)."""

from __future__ import annotations

import asyncio
import random
from typing import Any, AsyncIterator

import pytest

from loam.errors import PolicyDenied, ProtocolError, QueryError, ValidationError
from loam.model import Delete, Update
from loam.node.api import Context
from loam.node.ephemeral import EphemeralNode
from loam.policy import create_policy
from loam.protocol import codec
from loam.protocol import messages as m
from loam.storage import create_engine
from loam.transport.base import MAX_CLOSE_REASON, ChannelClosed, close_reason
from loam.transport.inprocess import InProcessChannel, pipe
from loam.transport.service import NodeService
from support.transport import KINDS, Cluster, settle, wait_until

CTX = Context()


@pytest.fixture(params=KINDS)
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    c = await Cluster(request.param).start()
    try:
        yield c
    finally:
        await c.close()


async def test_commit_from_ephemeral_is_acknowledged_by_the_durable_node(cluster: Cluster) -> None:
    e = await cluster.ephemeral()
    ids, rec = await e.create("todo", [{"title": "a", "done": False}, {"title": "b", "n": 1.5}], CTX)
    assert rec.node_id == e.node_id and rec.commit_id.startswith(e.node_id)
    assert rec.clock == e.clock.value
    assert [c.kind for c in rec.changes] == ["create", "create"]
    assert await cluster.durable.get("todo", ids[0], CTX) is not None
    got = await cluster.durable.get("todo", ids[1], CTX)
    assert got is not None and got.props == {"title": "b", "n": 1.5} and type(got.props["n"]) is float
    assert cluster.durable.commits == 1
    rec2 = await e.update("todo", ids[0], {"done": True}, CTX)
    assert rec2.clock > rec.clock
    await e.commit([Update("todo", ids[1], {"n": 2}), Delete("todo", ids[0])], CTX)
    assert await cluster.durable.get("todo", ids[0], CTX) is None
    assert (await cluster.durable.get("todo", ids[1], CTX)).props["n"] == 2  # type: ignore[union-attr]


async def test_ephemeral_clock_observes_the_durable_clock(cluster: Cluster) -> None:
    for _ in range(5):
        await cluster.durable.create("c", [{"x": 1}], CTX)
    e = await cluster.ephemeral()  # welcome carries the durable clock
    assert e.clock.value >= cluster.durable.clock.value
    rec = await e.create("c", [{"x": 2}], CTX)
    assert rec[1].clock > 5


async def test_get_and_fetch_go_to_the_durable_node(cluster: Cluster) -> None:
    ids, _ = await cluster.durable.create("todo", [{"n": i, "tag": "odd" if i % 2 else "even"} for i in range(20)], CTX)
    e = await cluster.ephemeral()
    assert (await e.get("todo", ids[3], CTX)).props == {"n": 3, "tag": "odd"}  # type: ignore[union-attr]
    assert await e.get("todo", "nope", CTX) is None
    for q in ("tag = 'odd' ORDER BY n DESC LIMIT 4", "n >= 15", "ORDER BY n"):
        assert await e.fetch("todo", q, CTX) == await cluster.durable.fetch("todo", q, CTX)
    assert e.reads_remote == 5 and e.reads_local == 0
    with pytest.raises(ValidationError, match="unknown collection"):
        await e.fetch("nope", "n = 1", CTX)
    with pytest.raises(QueryError):
        await e.fetch("todo", "n = = 1", CTX)
    with pytest.raises(ValidationError):
        await e.update("todo", "missing-id", {"x": [1]}, CTX)  # type: ignore[dict-item]


async def test_reads_answered_locally_when_a_live_query_covers_them(cluster: Cluster) -> None:
    await cluster.durable.create("todo", [{"n": i, "tag": "odd" if i % 2 else "even"} for i in range(20)], CTX)
    e = await cluster.ephemeral()
    odd = await e.subscribe("todo", "tag = 'odd' ORDER BY n LIMIT 3", CTX)
    # a LIMIT window covers only its own text; a get of an id outside it is remote
    assert await e.fetch("todo", "tag = 'odd' ORDER BY n LIMIT 4", CTX) == await cluster.durable.fetch(
        "todo", "tag = 'odd' ORDER BY n LIMIT 4", CTX
    )
    assert await e.get("todo", "absent", CTX) is None
    assert e.reads_remote == 2 and e.reads_local == 0
    everything = await e.subscribe("todo", "ORDER BY n", CTX)
    before = e.reads_remote
    # an unfiltered, unlimited live query covers every fetch and get of the collection
    assert await e.fetch("todo", "n < 5 ORDER BY n DESC", CTX) == await cluster.durable.fetch(
        "todo", "n < 5 ORDER BY n DESC", CTX
    )
    q = "tag = 'odd' ORDER BY n LIMIT 3"
    assert await e.fetch("todo", q, CTX) == odd.results  # same text: the window
    assert await e.fetch("todo", "ORDER BY n DESC LIMIT 2", CTX) == await cluster.durable.fetch(
        "todo", "ORDER BY n DESC LIMIT 2", CTX
    )
    some = everything.results[7]
    assert await e.get("todo", some.id, CTX) == some
    assert await e.get("todo", "absent", CTX) is None  # complete live query: known absent
    assert e.reads_remote == before and e.reads_local == 5
    # after changes arrive the local answers follow them
    ids, _ = await cluster.durable.create("todo", [{"n": -1, "tag": "odd"}], CTX)
    await settle(cluster)
    assert (await e.fetch("todo", q, CTX))[0].id == ids[0]
    assert await e.get("todo", ids[0], CTX) is not None
    await cluster.durable.delete("todo", ids[0], CTX)
    await settle(cluster)
    assert await e.get("todo", ids[0], CTX) is None
    assert await e.fetch("todo", "ORDER BY n LIMIT 1", CTX) == await cluster.durable.fetch(
        "todo", "ORDER BY n LIMIT 1", CTX
    )


async def test_subscribe_on_ephemeral_gets_notifications_with_commit_ns(cluster: Cluster) -> None:
    e = await cluster.ephemeral()
    writer = await cluster.ephemeral()
    lq = await e.subscribe("todo", "done = false ORDER BY title", CTX)
    assert lq.results == []
    seen = []
    lq.add_listener(seen.append)
    ids, rec = await writer.create("todo", [{"title": "x", "done": False}], CTX)
    n = await lq.next(5)
    assert n.kind == "change" and n.commit_id == rec.commit_id and n.commit_ns == rec.durable_ns
    assert n.received_ns >= n.commit_ns  # same process, same clock
    assert [a.id for a in n.added] == ids and n.removed == ()
    rec2 = await writer.update("todo", ids[0], {"title": "y"}, CTX)
    n = await lq.next(5)
    assert n.updated[0].props["title"] == "y" and n.commit_id == rec2.commit_id
    await writer.update("todo", ids[0], {"done": True}, CTX)
    n = await lq.next(5)
    assert n.removed == tuple(ids) and lq.results == []
    assert len(seen) == 3
    stats = e.connector_stats()
    assert stats["transport"] == cluster.kind
    notify = stats["received"]["notify"]
    assert notify["count"] == 3 and len(notify["delays_ns"]) == 3 and all(d >= 0 for d in notify["delays_ns"])
    assert stats["received"]["subscribed"]["count"] == 1 and stats["sent"]["subscribe"] == 1
    assert cluster.server.stats()["received"]["commit"]["count"] == 3


async def test_limit_window_on_ephemeral_refills_after_delete(cluster: Cluster) -> None:
    ids, _ = await cluster.durable.create("todo", [{"n": i} for i in range(10)], CTX)
    e = await cluster.ephemeral()
    q = "n >= 2 ORDER BY n DESC LIMIT 3"
    lq = await e.subscribe("todo", q, CTX)
    assert [x.props["n"] for x in lq.results] == [9, 8, 7]
    await e.delete("todo", ids[9], CTX)
    n = await lq.next(5)
    assert n.removed == (ids[9],) and [a.props["n"] for a in n.added] == [6]
    assert n.gap_filled == 1
    assert lq.results == await cluster.durable.fetch("todo", q, CTX)
    # delete everything down to the predicate boundary: the window shrinks to what exists
    for i in (8, 7, 6, 5, 4):
        await cluster.durable.delete("todo", ids[i], CTX)
    await settle(cluster)
    assert lq.results == await cluster.durable.fetch("todo", q, CTX)
    assert [x.props["n"] for x in lq.results] == [3, 2]


async def test_two_ephemerals_writing_concurrently_converge(cluster: Cluster) -> None:
    a = await cluster.ephemeral()
    b = await cluster.ephemeral()
    ids, _ = await a.create("doc", [{"v": 0, "owner": "a"} for _ in range(8)], CTX)
    la = await a.subscribe("doc", "ORDER BY v DESC LIMIT 5", CTX)
    lb = await b.subscribe("doc", "ORDER BY v DESC LIMIT 5", CTX)
    lall = await b.subscribe("doc", "ORDER BY v", CTX)
    rng = random.Random(7)

    async def writer(node: EphemeralNode, name: str) -> None:
        for i in range(25):
            target = rng.choice(ids)
            r = rng.random()
            if r < 0.7:
                await node.update("doc", target, {"v": rng.randint(0, 100), "owner": name}, CTX)
            elif r < 0.85:
                new, _ = await node.create("doc", [{"v": rng.randint(0, 100), "owner": name}], CTX)
                ids.append(new[0])
            else:
                await node.delete("doc", target, CTX)

    await asyncio.gather(writer(a, "a"), writer(b, "b"))
    await settle(cluster)
    truth5 = await cluster.durable.fetch("doc", "ORDER BY v DESC LIMIT 5", CTX)
    truth_all = await cluster.durable.fetch("doc", "ORDER BY v", CTX)
    assert la.results == truth5 and lb.results == truth5
    assert lall.results == truth_all
    assert await a.fetch("doc", "ORDER BY v", CTX) == truth_all
    assert await b.fetch("doc", "ORDER BY v", CTX) == truth_all  # answered from b's cache
    for i in ids:
        assert await a.get("doc", i, CTX) == await b.get("doc", i, CTX) == await cluster.durable.get("doc", i, CTX)


async def test_unsubscribe_and_disconnect_release_durable_live_queries(cluster: Cluster) -> None:
    await cluster.durable.create("c", [{"x": 1}], CTX)
    base = cluster.durable.stats()["live_queries"]
    e = await cluster.ephemeral()
    lq1 = await e.subscribe("c", "x = 1", CTX)
    await e.subscribe("c", "ORDER BY x LIMIT 1", CTX)
    assert cluster.durable.stats()["live_queries"] == base + 2
    await lq1.close()
    assert lq1.closed_reason == "unsubscribed"
    await wait_until(lambda: cluster.durable.stats()["live_queries"] == base + 1, what="unsubscribe")
    await e.close()
    cluster.ephemerals.remove(e)
    await wait_until(lambda: cluster.durable.stats()["live_queries"] == base, what="release on disconnect")
    await wait_until(lambda: len(cluster.server.service.peers) == 0, what="peer gone")


async def test_durable_close_ends_remote_live_queries(cluster: Cluster) -> None:
    await cluster.durable.create("c", [{"x": 1}], CTX)
    e = await cluster.ephemeral(reconnect=False)
    lq = await e.subscribe("c", "x = 1", CTX)
    await cluster.durable.close("maintenance")
    n = await lq.next(5)
    assert n.kind == "closed" and "maintenance" in (n.reason or "")
    assert lq.closed_reason is not None
    with pytest.raises(Exception, match="closed"):
        await e.fetch("c", "x = 1", CTX)


async def test_policy_errors_cross_the_wire() -> None:
    for kind in KINDS:
        c = await Cluster(kind, policy=create_policy("deny-all")).start()
        try:
            e = await c.ephemeral()
            with pytest.raises(PolicyDenied):
                await e.create("c", [{"x": 1}], CTX)
        finally:
            await c.close()


async def test_oversized_request_is_refused_before_sending(cluster: Cluster) -> None:
    e = await cluster.ephemeral()
    with pytest.raises(ProtocolError, match="over the 1048576-byte limit"):
        await e.create("c", [{"blob": "x" * 100_000} for _ in range(12)], CTX)
    ids, _ = await e.create("c", [{"blob": "small"}], CTX)  # the connection is still fine
    assert ids


async def test_inprocess_delay_is_applied_in_order() -> None:
    c = await Cluster("inprocess", delay_s=0.02).start()
    try:
        e = await c.ephemeral()
        lq = await e.subscribe("c", "ORDER BY n", CTX)
        for i in range(5):
            await c.durable.create("c", [{"n": i}], CTX)
        got = [(await lq.next(5)).added[0].props["n"] for _ in range(5)]
        assert got == [0, 1, 2, 3, 4]
        delays = e.connector_stats()["received"]["notify"]["delays_ns"]
        assert min(delays) >= 20_000_000  # the injected one-way delay is part of what is measured
    finally:
        await c.close()


async def test_ephemeral_with_leveldb_cache(cluster: Cluster, tmp_leveldb_path) -> None:  # type: ignore[no-untyped-def]
    await cluster.durable.create("c", [{"n": i} for i in range(5)], CTX)
    e = await cluster.ephemeral(cache=create_engine("leveldb", path=str(tmp_leveldb_path)))
    lq = await e.subscribe("c", "ORDER BY n", CTX)
    await cluster.durable.create("c", [{"n": 9}], CTX)
    await lq.next(5)
    assert await e.fetch("c", "n > 2 ORDER BY n", CTX) == await cluster.durable.fetch("c", "n > 2 ORDER BY n", CTX)
    assert e.reads_local == 1


async def test_commit_resent_after_a_lost_ack_is_applied_once() -> None:
    c = await Cluster("inprocess", delay_s=0.05).start()
    try:
        e = await c.ephemeral(backoff_initial=0.01)
        lq = await e.subscribe("c", "ORDER BY n", CTX)
        task = asyncio.create_task(e.create("c", [{"n": 1}], CTX))
        await asyncio.sleep(0.075)  # applied on the durable node, ack still on its way
        assert c.durable.commits == 1
        await e.connector._channel.close("cut by test")  # type: ignore[union-attr]
        ids, rec = await asyncio.wait_for(task, 10)
        assert c.durable.commits == 1  # the re-sent transaction was recognised
        assert rec.commit_id.startswith(e.node_id) and e.connector.reconnects == 1
        n = await lq.next(5)  # the change happened while disconnected: reported on resubscribe
        assert n.kind == "resubscribed" and [a.id for a in n.added] == ids
        assert lq.results == await c.durable.fetch("c", "ORDER BY n", CTX)
    finally:
        await c.close()


# --- inline sends (in-process channel) and queued sends keep one order ---------------------


class _AsyncSendChannel(InProcessChannel):
    """An in-process channel whose `send` gives the loop a turn before delivering (as a
    socket write may): the server's writer then holds a message it has not sent yet."""

    async def send(self, data: bytes) -> None:
        await asyncio.sleep(0)
        self.send_nowait(data)


async def _served(server_end: InProcessChannel, client_end: InProcessChannel) -> tuple[Any, Any, Any]:
    """A durable node served on `server_end`, handshake done from `client_end`: (durable, service, peer)."""
    from loam.node.durable import DurableNode

    durable = DurableNode(create_engine("memory"))
    await durable.start()
    service = NodeService(durable)
    asyncio.create_task(service.serve(server_end, label="test"))
    await client_end.send(codec.encode(m.Hello(1, None, "client")))
    assert type(codec.decode(await client_end.recv())) is m.Welcome
    (peer,) = service.peers
    return durable, service, peer


async def _received(client_end: InProcessChannel, n: int) -> list[Any]:
    return [codec.decode(await asyncio.wait_for(client_end.recv(), 5)) for _ in range(n)]


async def test_inline_sends_queue_behind_a_queued_reply() -> None:
    client_end, server_end = pipe()
    durable, _, peer = await _served(server_end, client_end)
    try:
        await client_end.send(codec.encode(m.Subscribe(2, "c", "ORDER BY n", CTX)))
        (sub,) = await _received(client_end, 1)
        assert type(sub) is m.Subscribed
        # A reply waits in the writer's queue (the writer task has not run yet) when a
        # commit's notify is made: the notify must not overtake it.
        peer._queue(m.Pong(7))
        peer._queue_notify(sub.query_id, _change(sub.query_id, "first"))
        assert len(peer.out) == 2, "the notify was queued behind the reply, not sent inline"
        # Whether or not the writer ran before the commit's listener, the pong comes first.
        peer._queue(m.Pong(8))
        await durable.create("c", [{"n": 1}], CTX)
        got = await _received(client_end, 4)
        assert [(type(x).__name__, getattr(x, "rid", None), getattr(x, "commit_id", None)) for x in got[:3]] == [
            ("Pong", 7, None),
            ("Notify", None, "first"),
            ("Pong", 8, None),
        ]
        assert type(got[3]) is m.Notify and got[3].added[0].props == {"n": 1}
        # The queue is drained: the next message is sent inline, in the channel on return.
        assert not peer.out
        peer._enqueue(m.Pong(9))
        assert client_end.inbox.qsize() == 1
        assert [x.rid for x in await _received(client_end, 1)] == [9]
    finally:
        await client_end.close()
        await durable.close()


async def test_no_inline_send_while_the_writer_holds_a_message() -> None:
    client_end, server_end = InProcessChannel(), _AsyncSendChannel()
    client_end.peer, server_end.peer = server_end, client_end
    durable, _, peer = await _served(server_end, client_end)
    try:
        peer._queue(m.Pong(1))
        await asyncio.sleep(0)  # the writer takes the pong and waits inside `send`
        assert not peer.out and peer._writing
        peer._enqueue(m.Pong(2))  # must wait for the pong the writer holds
        peer._enqueue(m.Pong(3))
        assert [x.rid for x in await _received(client_end, 3)] == [1, 2, 3]
    finally:
        await client_end.close()
        await durable.close()


def _change(qid: str, commit_id: str) -> Any:
    from loam.node.api import Notification

    return Notification(qid, commit_id, 0, 0)


async def test_in_process_push_keeps_order_with_the_close() -> None:
    """With a receiver set, messages go to it from one loop callback per batch (no
    task wake-up per message); a close sent after them reaches `recv` only once every
    message before it was handed over."""
    client_end, server_end = pipe()
    got: list[bytes] = []
    client_end.set_receiver(got.append)
    for i in range(3):
        server_end.send_nowait(b"m%d" % i)
    assert got == [], "pushed from the loop, not inside send"
    await server_end.close("bye", 1000)
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(client_end.recv(), 5)
    assert got == [b"m0", b"m1", b"m2"]
    # through the delay pump too
    delayed_client, delayed_server = pipe(delay_s=0.001)
    delayed_client.set_receiver(got.append)
    delayed_server.send_nowait(b"late")
    await wait_until(lambda: got[-1:] == [b"late"])
    await delayed_client.close()


@pytest.mark.parametrize("text", ["short", "x" * 200, "\u00e9" * 100, "a" + "\U0001f600" * 40, "v: " + "\u4e2d" * 60])
def test_close_reasons_fit_a_close_frame_in_bytes(text: str) -> None:
    """A close frame holds 123 bytes of reason: cut by UTF-8 bytes at a character boundary
    (a cut at 120 characters of non-ASCII text was up to 480 bytes, and refused)."""
    cut = close_reason(text)
    assert len(cut.encode()) <= MAX_CLOSE_REASON and text.startswith(cut)
    assert cut == text or len(cut.encode()) > MAX_CLOSE_REASON - 4
