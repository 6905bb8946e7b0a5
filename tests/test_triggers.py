"""loam triggers against a real local webhook receiver (HTTP on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest

from loam.errors import QueryError, ValidationError
from loam.model import Delete, Update
from loam.node.api import Context
from loam.node.durable import DurableNode
from loam.storage import create_engine
from loam.triggers import TriggerManager
from loam.triggers.manager import delivery_id
from sprout_harness.load.webhook import WebhookReceiver

CTX = Context(user="t")


@pytest.fixture(params=["memory", "leveldb"])
async def node(request, tmp_path):
    eng = create_engine("memory") if request.param == "memory" else create_engine("leveldb", path=tmp_path / "db")
    n = DurableNode(eng)
    await n.start()
    yield n
    await n.close()


def dead_url() -> str:
    """A 127.0.0.1 URL nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


async def test_every_matching_change_delivered_exactly_once(node):
    rng = random.Random(7)
    async with WebhookReceiver() as rx:
        tm = TriggerManager(node, concurrency=4)
        tm.add_trigger("big", "orders", "total > 100", rx.url)
        expected: dict[str, tuple[str, str]] = {}  # delivery id -> (kind, entity id)

        def expect(rec):
            for ch in rec.changes:
                e = ch.after if ch.after is not None else ch.before
                if ch.collection == "orders" and e.props.get("total", 0) > 100:
                    expected[delivery_id("big", rec.commit_id, ch.collection, ch.id)] = (ch.kind, ch.id)

        ids: list[str] = []
        for _ in range(20):
            new, rec = await node.create("orders", [{"total": rng.randint(0, 200)} for _ in range(10)], CTX)
            ids += new
            expect(rec)
        _, rec = await node.create("other", [{"total": 500}], CTX)  # another collection: never delivered
        expect(rec)
        for i in rng.sample(ids, 60):
            expect(await node.commit([Update("orders", i, {"total": rng.randint(0, 200)})], CTX))
        for i in rng.sample(ids, 30):
            expect(await node.commit([Delete("orders", i)], CTX))

        assert await tm.drain(timeout_s=20)
        assert len(expected) > 50
        assert set(rx.accepted) == set(expected), "lost or unexpected deliveries"
        assert rx.duplicates == 0 and len(rx.requests) == len(expected)
        for did, r in rx.accepted.items():
            kind, eid = expected[did]
            b = r.body
            assert (b["change"]["kind"], b["change"]["id"], b["trigger"], b["collection"]) == (
                kind,
                eid,
                "big",
                "orders",
            )
            assert b["commit_ns"] <= b["evaluated_ns"] <= r.received_ns
            entity = b["change"]["before"] if kind == "delete" else b["change"]["after"]
            assert entity["total"] > 100
            assert b["attempt"] == 1
        st = tm.stats()["total"]
        assert st["matched"] == st["delivered"] == len(expected)
        assert st["failed"] == st["retried"] == st["dropped"] == 0
        assert st["evaluated"] > st["matched"]
        await tm.close()


async def test_failing_receiver_is_retried_then_succeeds(node):
    # the first two attempts of every delivery fail: one with a 503, one with a stall past the timeout
    def respond(body, attempt):
        return {1: 503, 2: (200, 2.0)}.get(attempt, 200)

    async with WebhookReceiver(respond=respond) as rx:
        tm = TriggerManager(node)
        tm.add_trigger("all", "jobs", "", rx.url, timeout_s=0.3, retries=3, backoff_s=0.01)
        _, rec = await node.create("jobs", [{"n": k} for k in range(5)], CTX)
        assert await tm.drain(timeout_s=20)
        st = tm.stats()["triggers"]["all"]
        assert (st["delivered"], st["failed"], st["retried"]) == (5, 0, 10)
        assert len(rx.accepted) == 5 and rx.duplicates == 0
        assert all(r.body["attempt"] == 3 for r in rx.accepted.values())
        assert {r.status for r in rx.requests} == {503, 200, 499} or {r.status for r in rx.requests} == {503, 200}
        await tm.close()


async def test_dead_receiver_counts_failures_after_retries(node):
    tm = TriggerManager(node)
    tm.add_trigger("gone", "jobs", "n >= 0", dead_url(), retries=2, backoff_s=0.01)
    await node.create("jobs", [{"n": 1}, {"n": 2}, {"n": -1}], CTX)
    assert await tm.drain(timeout_s=20)
    st = tm.stats()["triggers"]["gone"]
    assert (st["matched"], st["delivered"], st["failed"], st["retried"]) == (2, 0, 2, 4)
    assert "ConnectError" in st["last_error"] and "127.0.0.1" in st["last_error"]
    await tm.close()


async def test_timeout_is_honoured_and_4xx_is_not_retried(node):
    async with (
        WebhookReceiver(respond=lambda body, attempt: (200, 5.0)) as slow,
        WebhookReceiver(respond=lambda body, attempt: 400) as refusing,
    ):
        tm = TriggerManager(node)
        tm.add_trigger("slow", "jobs", "", slow.url, timeout_s=0.2, retries=1, backoff_s=0)
        tm.add_trigger("refused", "jobs", "", refusing.url, retries=3, backoff_s=0)
        await node.create("jobs", [{"n": 1}], CTX)
        assert await tm.drain(timeout_s=20)
        st = tm.stats()["triggers"]
        assert (st["slow"]["failed"], st["slow"]["retried"]) == (1, 1)
        # both attempts ended by the 0.2 s timeout, not by the receiver's 5 s answer
        assert "timed out after 0.2s" in st["slow"]["last_error"]
        assert (st["refused"]["failed"], st["refused"]["retried"]) == (1, 0)
        assert "HTTP 400" in st["refused"]["last_error"]
        assert len(refusing.requests) == 1
        await tm.close()
        assert not slow.accepted


async def test_commit_path_does_not_wait_for_delivery(node):
    release = asyncio.Event()

    async def respond(body, attempt):
        await release.wait()
        return 200

    async with WebhookReceiver(respond=respond) as rx:
        tm = TriggerManager(node, concurrency=2)
        tm.add_trigger("t", "jobs", "", rx.url, timeout_s=30)
        for k in range(10):
            await node.create("jobs", [{"n": k}], CTX)  # would hang here if the commit awaited the POST
        assert tm.pending == 10 and not rx.accepted
        release.set()
        assert await tm.drain(timeout_s=20)
        assert len(rx.accepted) == 10
        await tm.close()


async def test_close_without_drain_cancels_pending(node):
    async def respond(body, attempt):
        await asyncio.sleep(30)
        return 200

    async with WebhookReceiver(respond=respond) as rx:
        tm = TriggerManager(node, concurrency=2)
        tm.add_trigger("t", "jobs", "", rx.url, timeout_s=60)
        await node.create("jobs", [{"n": k} for k in range(6)], CTX)
        await asyncio.sleep(0.1)
        await tm.close(drain=False)
        st = tm.stats()
        assert st["total"]["cancelled"] == 6 and st["pending"] == 0 and st["in_flight"] == 0 and st["closed"]
        await node.create("jobs", [{"n": 99}], CTX)  # no longer listening
        assert tm.stats()["total"]["matched"] == 6


async def test_close_drains_by_default(node):
    async with WebhookReceiver(respond=lambda b, a: (200, 0.05)) as rx:
        tm = TriggerManager(node, concurrency=2)
        tm.add_trigger("t", "jobs", "", rx.url)
        await node.create("jobs", [{"n": k} for k in range(6)], CTX)
        await tm.close()
        assert len(rx.accepted) == 6 and tm.stats()["total"]["cancelled"] == 0


async def test_max_pending_counts_drops(node):
    release = asyncio.Event()

    async def respond(body, attempt):
        await release.wait()
        return 200

    async with WebhookReceiver(respond=respond) as rx:
        tm = TriggerManager(node, concurrency=1, max_pending=3)
        tm.add_trigger("t", "jobs", "", rx.url, timeout_s=30)
        await node.create("jobs", [{"n": k} for k in range(10)], CTX)  # one commit: 10 changes
        st = tm.stats()["total"]
        assert st["matched"] == 10 and st["dropped"] == 7
        release.set()
        await tm.close()
        assert len(rx.accepted) == 3


async def test_remove_trigger_and_validation(node):
    tm = TriggerManager(node)
    tm.add_trigger("a", "jobs", "n > 1", "http://127.0.0.1:9/x")
    with pytest.raises(ValidationError, match="already exists"):
        tm.add_trigger("a", "jobs", "", "http://127.0.0.1:9/x")
    with pytest.raises(QueryError, match="trigger 'b': bad predicate"):
        tm.add_trigger("b", "jobs", "n >", "http://127.0.0.1:9/x")
    with pytest.raises(ValidationError, match="ORDER BY or LIMIT"):
        tm.add_trigger("b", "jobs", "n > 1 LIMIT 3", "http://127.0.0.1:9/x")
    with pytest.raises(ValidationError, match="must be http"):
        tm.add_trigger("b", "jobs", "", "ftp://127.0.0.1/x")
    with pytest.raises(ValidationError, match="trigger name"):
        tm.add_trigger("bad name", "jobs", "", "http://127.0.0.1:9/x")
    with pytest.raises(ValidationError, match="timeout_s"):
        tm.add_trigger("b", "jobs", "", "http://127.0.0.1:9/x", timeout_s=0)
    tm.remove_trigger("a")
    with pytest.raises(ValidationError, match="no trigger named 'a'"):
        tm.remove_trigger("a")
    await node.create("jobs", [{"n": 5}], CTX)
    assert tm.stats()["total"]["matched"] == 0
    await tm.close()


async def test_triggers_on_postgres(pg_database):
    node = DurableNode(create_engine("postgres", dsn=pg_database, pool_size=2))
    await node.start()
    try:
        async with WebhookReceiver() as rx:
            tm = TriggerManager(node)
            tm.add_trigger("p", "items", "k IN ('a', 'c')", rx.url)
            recs = await asyncio.gather(*(node.create("items", [{"k": k}], CTX) for k in "abcabc"))
            assert await tm.drain(timeout_s=20)
            want = {
                delivery_id("p", r.commit_id, "items", r.changes[0].id)
                for _, r in recs
                if r.changes[0].after.props["k"] in ("a", "c")
            }
            assert set(rx.accepted) == want and len(want) == 4 and rx.duplicates == 0
            await tm.close()
    finally:
        await node.close()
