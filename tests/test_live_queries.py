"""Live queries on the durable node over real engines: sets, LIMIT windows, gap filling, fan-out."""

from __future__ import annotations

import asyncio
import gc

import pytest

from loam.errors import NodeClosedError
from loam.live.registry import SubscriptionRegistry, index_term
from loam.model import Change, Delete, Entity, Update
from loam.node.api import Context
from loam.node.durable import DurableNode
from loam.policy import create_policy
from loam.query.parser import parse
from loam.storage.leveldb import LevelDBEngine
from loam.storage.memory import MemoryEngine

CTX = Context(user="alice")


def counting(base):
    """A real engine subclass that records every fetch (to prove gap fills read `after` the boundary)."""

    class Counting(base):  # type: ignore[misc, valid-type]
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.fetch_calls: list[tuple[str, object, Entity | None, int | None]] = []

        def fetch(self, collection, query, *, after=None, limit=None):
            self.fetch_calls.append((collection, query, after, limit))
            return super().fetch(collection, query, after=after, limit=limit)

    return Counting


def make_engine(kind: str, request, tmp_path):
    if kind == "memory":
        return counting(MemoryEngine)()
    if kind == "leveldb":
        return counting(LevelDBEngine)(tmp_path / "db")
    from loam.storage.postgres import PostgresEngine

    return counting(PostgresEngine)(request.getfixturevalue("pg_database"), pool_size=2)


@pytest.fixture(params=["memory", "leveldb"])
def engine(request, tmp_path):
    return make_engine(request.param, request, tmp_path)


@pytest.fixture(params=["memory", "leveldb", "postgres"])
def engine_all(request, tmp_path):
    return make_engine(request.param, request, tmp_path)


async def started(engine, **kw) -> DurableNode:
    node = DurableNode(engine, **kw)
    await node.start()
    return node


async def check_invariant(node: DurableNode, lq) -> None:
    fresh = await node.fetch(lq.collection, lq.query, CTX)
    assert [(e.id, e.props) for e in lq.results] == [(e.id, e.props) for e in fresh]


async def seed(node, n, **extra) -> list[str]:
    ids, _ = await node.create("t", [{"n": i, "done": False, **extra} for i in range(n)], CTX)
    return ids


async def test_no_limit_set(engine):
    node = await started(engine)
    ids = await seed(node, 4)
    lq = await node.subscribe("t", "done = false ORDER BY n DESC", CTX)
    assert [e.id for e in lq.results] == ids[::-1]
    (new,), rec = await node.create("t", [{"n": 9, "done": False}], CTX)
    n = await lq.next(timeout=5)
    assert [e.id for e in n.added] == [new] and n.commit_id == rec.commit_id and n.kind == "change"
    assert n.commit_ns == rec.durable_ns and n.received_ns >= n.commit_ns
    await node.create("t", [{"n": 10, "done": True}], CTX)  # does not match: no notification
    rec = await node.update("t", ids[0], {"done": True}, CTX)
    n = await lq.next(timeout=5)
    assert n.commit_id == rec.commit_id and n.removed == (ids[0],) and not n.added
    rec = await node.update("t", ids[1], {"title": "x"}, CTX)
    n = await lq.next(timeout=5)
    assert n.commit_id == rec.commit_id and [e.props["title"] for e in n.updated] == ["x"]
    await check_invariant(node, lq)
    await node.close()


async def test_gap_fill_after_delete_reads_after_the_boundary(engine_all):
    node = await started(engine_all)
    ids = await seed(node, 6)
    lq = await node.subscribe("t", "ORDER BY n LIMIT 3", CTX)
    assert [e.props["n"] for e in lq.results] == [0, 1, 2] and not lq.complete
    engine_all.fetch_calls.clear()
    rec = await node.delete("t", ids[1], CTX)
    n = await lq.next(timeout=5)
    assert n.commit_id == rec.commit_id
    assert n.removed == (ids[1],) and [e.id for e in n.added] == [ids[3]] and n.gap_filled == 1
    assert [e.props["n"] for e in lq.results] == [0, 2, 3]
    # exactly one read, strictly after the window's boundary, for the one missing member
    assert [(c[2].id if c[2] else None, c[3]) for c in engine_all.fetch_calls] == [(ids[2], 1)]
    await check_invariant(node, lq)
    await node.close()


async def test_update_out_of_predicate_and_out_of_window(engine_all):
    node = await started(engine_all)
    ids = await seed(node, 6)
    lq = await node.subscribe("t", "done = false ORDER BY n LIMIT 3", CTX)
    await node.update("t", ids[0], {"done": True}, CTX)  # leaves the predicate
    n = await lq.next(timeout=5)
    assert n.removed == (ids[0],) and [e.id for e in n.added] == [ids[3]] and n.gap_filled == 1
    await node.update("t", ids[1], {"n": 100}, CTX)  # still matches, sorts past the window
    n = await lq.next(timeout=5)
    assert n.removed == (ids[1],) and [e.id for e in n.added] == [ids[4]]
    assert [e.props["n"] for e in lq.results] == [2, 3, 4]
    await node.update("t", ids[4], {"n": -1}, CTX)  # reorder inside the window
    n = await lq.next(timeout=5)
    assert [e.id for e in n.updated] == [ids[4]] and not n.added and not n.removed and n.gap_filled == 0
    assert [e.props["n"] for e in lq.results] == [-1, 2, 3]
    await check_invariant(node, lq)
    await node.close()


async def test_member_moving_to_the_end_comes_back_when_it_is_next(engine):
    node = await started(engine)
    ids = await seed(node, 4)
    lq = await node.subscribe("t", "ORDER BY n LIMIT 3", CTX)
    await node.update("t", ids[2], {"n": 2.5}, CTX)  # was last, still before n=3: stays
    n = await lq.next(timeout=5)
    assert [e.id for e in n.updated] == [ids[2]] and not n.removed
    await node.update("t", ids[2], {"n": 50}, CTX)
    n = await lq.next(timeout=5)
    assert n.removed == (ids[2],) and [e.id for e in n.added] == [ids[3]]
    await check_invariant(node, lq)
    await node.close()


async def test_insert_into_full_window_evicts_last(engine_all):
    node = await started(engine_all)
    ids = await seed(node, 4)
    lq = await node.subscribe("t", "ORDER BY n LIMIT 3", CTX)
    engine_all.fetch_calls.clear()
    (new,), _ = await node.create("t", [{"n": -5, "done": False}], CTX)
    n = await lq.next(timeout=5)
    assert [e.id for e in n.added] == [new] and n.removed == (ids[2],) and n.gap_filled == 0
    assert engine_all.fetch_calls == []  # eviction needs no read
    rec = await node.create("t", [{"n": 99}], CTX)  # after the window: nothing
    rec = await node.create("t", [{"n": -9}, {"n": -8}], CTX)  # one commit, one notification
    n = await lq.next(timeout=5)
    assert n.commit_id == rec[1].commit_id and [e.props["n"] for e in n.added] == [-9, -8]
    assert set(n.removed) == {ids[0], ids[1]}
    await check_invariant(node, lq)
    await node.close()


async def test_complete_window(engine):
    node = await started(engine)
    ids = await seed(node, 3)
    lq = await node.subscribe("t", "ORDER BY n LIMIT 5", CTX)
    assert lq.complete and len(lq.results) == 3
    engine.fetch_calls.clear()
    await node.delete("t", ids[0], CTX)
    n = await lq.next(timeout=5)
    assert n.removed == (ids[0],) and not n.added
    assert engine.fetch_calls == []  # complete: nothing to refill
    (a, b, c), _ = await node.create("t", [{"n": 10}, {"n": 11}, {"n": 12}], CTX)
    n = await lq.next(timeout=5)
    assert [e.id for e in n.added] == [a, b, c] and n.removed == ()
    assert [e.props["n"] for e in lq.results] == [1, 2, 10, 11, 12]
    await check_invariant(node, lq)
    # now full: removing one needs a refill, which finds the one that was beyond
    await node.create("t", [{"n": 13}], CTX)
    await node.delete("t", ids[1], CTX)
    await check_invariant(node, lq)
    assert [e.props["n"] for e in lq.results] == [2, 10, 11, 12, 13]
    await node.close()


async def test_window_emptied_by_one_commit_refills_from_start(engine):
    node = await started(engine)
    ids = await seed(node, 6)
    lq = await node.subscribe("t", "ORDER BY n LIMIT 2", CTX)
    rec = await node.commit([Delete("t", ids[0]), Delete("t", ids[1]), Update("t", ids[5], {"n": -1})], CTX)
    n = await lq.next(timeout=5)
    assert n.commit_id == rec.commit_id
    assert set(n.removed) == {ids[0], ids[1]} and [e.id for e in n.added] == [ids[5], ids[2]]
    assert n.gap_filled == 2  # the window was empty: ids[5] and ids[2] both come from one read from the start
    assert engine.fetch_calls[-1][2:] == (None, 2)
    await check_invariant(node, lq)
    await node.close()


async def test_multi_key_and_id_order(engine):
    node = await started(engine)
    await node.create("t", [{"g": i % 2, "n": i} for i in range(8)], CTX)
    for text in ("ORDER BY g DESC, n LIMIT 3", "LIMIT 3", "g = 1 ORDER BY id DESC LIMIT 2"):
        lq = await node.subscribe("t", text, CTX)
        rows = await node.fetch("t", "ORDER BY n", CTX)
        await node.delete("t", rows[-1].id, CTX)
        await node.update("t", rows[0].id, {"g": 1}, CTX)
        await node.create("t", [{"g": 1, "n": -1}], CTX)
        await check_invariant(node, lq)
        await lq.close()
    await node.close()


async def test_notification_only_when_result_changes(engine):
    node = await started(engine)
    ids = await seed(node, 3)
    lq = await node.subscribe("t", "done = false ORDER BY n", CTX)
    await node.update("t", ids[0], {"n": 0}, CTX)  # same value: no visible change
    await node.create("t", [{"done": True}], CTX)
    rec = await node.update("t", ids[2], {"done": True}, CTX)
    n = await lq.next(timeout=5)
    assert n.commit_id == rec.commit_id
    with pytest.raises(TimeoutError):
        await lq.next(timeout=0.05)
    assert lq.notifications == 1
    await node.close()


async def test_callbacks_sync_and_async(engine):
    node = await started(engine)
    await seed(node, 2)
    got_sync, got_async = [], []

    async def acb(n):
        await asyncio.sleep(0)
        got_async.append(n)

    lq = await node.subscribe("t", "", CTX, callback=got_sync.append)
    lq.add_listener(acb)
    _, r1 = await node.create("t", [{"n": 5}], CTX)
    _, r2 = await node.create("t", [{"n": 6}], CTX)
    assert [n.commit_id for n in got_sync] == [r1.commit_id, r2.commit_id]  # inline
    for _ in range(20):
        if len(got_async) == 2:
            break
        await asyncio.sleep(0.01)
    assert [n.commit_id for n in got_async] == [r1.commit_id, r2.commit_id]
    assert lq._queue is None  # callback-only: no buffering
    await lq.close()
    assert got_sync[-1].kind == "closed" and got_sync[-1].reason == "unsubscribed"
    await node.close()


async def test_async_iteration_and_close(engine):
    node = await started(engine)
    await seed(node, 1)
    lq = await node.subscribe("t", "", CTX)
    await node.create("t", [{"n": 1}], CTX)
    await lq.close()
    kinds = [n.kind async for n in lq]
    assert kinds == ["change", "closed"]
    with pytest.raises(NodeClosedError, match="unsubscribed"):
        await lq.next()
    await node.close()


async def test_unsubscribe_releases_everything(engine):
    node = await started(engine)
    await seed(node, 5)
    before = node.registry.entries()
    lqs = [await node.subscribe("t", q, CTX) for q in ("n = 1", "n IN (1, 2)", "ORDER BY n LIMIT 2", "")]
    assert node.registry.entries() == before + 1 + 2 + 1 + 1
    assert node.stats()["subscriptions"] == {"t": 4}
    for lq in lqs:
        await lq.close()
    assert node.registry.entries() == 0 and len(node.registry) == 0
    assert node.stats()["live_queries"] == 0 and node.stats()["subscriptions"] == {}
    import weakref

    ref = weakref.ref(lqs[2])
    del lqs, lq
    gc.collect()
    assert ref() is None  # nothing inside the node keeps a closed live query alive
    await node.close()


async def test_node_close_reason_reaches_every_query(engine):
    node = await started(engine)
    await seed(node, 1)
    a = await node.subscribe("t", "", CTX)
    got = []
    b = await node.subscribe("t", "n = 0", CTX, callback=got.append)
    await node.close("shutting down")
    assert (await a.next(timeout=5)).reason == "shutting down"
    assert got[-1].kind == "closed" and got[-1].reason == "shutting down"
    assert a.closed_reason == b.closed_reason == "shutting down"


async def test_policy_filters_live_results(engine):
    node = await started(engine, policy=create_policy("owner", read="owner"))
    bob = Context(user="bob")
    await node.create("t", [{"owner": "alice", "n": i} for i in (1, 3, 5)], CTX)
    await node.create("t", [{"owner": "bob", "n": i} for i in (0, 2, 4)], bob)
    lq = await node.subscribe("t", "ORDER BY n LIMIT 2", CTX)
    assert [e.props["n"] for e in lq.results] == [1, 3]
    first = lq.results[0].id
    await node.delete("t", first, CTX)
    n = await lq.next(timeout=5)
    assert [e.props["n"] for e in n.added] == [5] and n.gap_filled == 1
    assert all(e.props["owner"] == "alice" for e in lq.results)
    (bid,), _ = await node.create("t", [{"owner": "bob", "n": -1}], bob)
    await node.update("t", bid, {"n": -2}, bob)
    await node.create("t", [{"owner": "alice", "n": 0}], CTX)
    n = await lq.next(timeout=5)
    assert [e.props["owner"] for e in n.added] == ["alice"]
    assert [e.props["n"] for e in lq.results] == [0, 3]
    await node.close()


def test_registry_index_routes_only_affected_subscriptions():
    class Sub:
        def __init__(self, text):
            self.collection = "t"
            self.where = parse(text).where

    assert index_term(parse("a = 1 AND b > 2").where) == ("a", (1,))
    assert index_term(parse("b > 2 AND a IN (1, 2)").where) == ("a", (1, 2))
    assert index_term(parse("a = 1 OR b = 2").where) is None
    reg = SubscriptionRegistry()
    users = [Sub(f"owner = 'u{i}'") for i in range(200)]
    scan = Sub("n > 3")
    for s in [*users, scan]:
        reg.add(s)
    e = lambda owner: Entity("x", {"owner": owner, "n": 1})  # noqa: E731
    routed = reg.route([Change("t", "x", "update", e("u5"), e("u7"))])
    assert set(routed) == {users[5], users[7], scan}  # before AND after values, plus unindexed
    assert set(reg.route([Change("t", "x", "create", None, e("nobody"))])) == {scan}
    assert reg.route([Change("other", "x", "create", None, e("u1"))]) == {}
    # equality follows the query language: 1 meets 1.0, never true
    reg2 = SubscriptionRegistry()
    one = Sub("v = 1")
    reg2.add(one)
    assert set(reg2.route([Change("t", "x", "create", None, Entity("x", {"v": 1.0}))])) == {one}
    assert reg2.route([Change("t", "x", "create", None, Entity("x", {"v": True}))]) == {}
    for s in [*users, scan]:
        reg.remove(s)
    assert reg.entries() == 0 and reg.counts() == {}


async def test_indexed_subscriptions_live(engine):
    node = await started(engine)
    lqs = {u: await node.subscribe("t", f"owner = '{u}' ORDER BY n", CTX) for u in ("a", "b", "c")}
    (i,), _ = await node.create("t", [{"owner": "a", "n": 1}], CTX)
    await node.update("t", i, {"owner": "b"}, CTX)  # leaves a's result, enters b's
    assert lqs["a"].results == [] and [e.id for e in lqs["b"].results] == [i] and lqs["c"].results == []
    assert [len(n.added) for n in [await lqs["a"].next(timeout=5), await lqs["a"].next(timeout=5)]] == [1, 0]
    assert lqs["c"].notifications == 0
    await node.close()


async def test_memory_per_idle_live_query_is_reported(engine):
    import tracemalloc

    node = await started(engine)
    await seed(node, 10)
    tracemalloc.start()
    snap0 = tracemalloc.take_snapshot()
    lqs = [await node.subscribe("t", "n = 3", CTX) for _ in range(200)]
    snap1 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    measured = sum(s.size_diff for s in snap1.compare_to(snap0, "filename")) / len(lqs)
    est = node.stats()["live_query_memory_mean"]
    assert 0 < measured and 0 < est
    assert est < 20 * measured and measured < 20 * est  # same order of magnitude
    for lq in lqs:
        await lq.close()
    await node.close()


@pytest.mark.parametrize("kind", ["leveldb", "postgres"])
async def test_concurrent_commits_keep_windows_exact(kind, request, tmp_path):
    """Overlapping commits issued concurrently (PostgreSQL runs them in threads) still leave
    every window equal to a fresh fetch once they are done."""
    import random

    engine = make_engine(kind, request, tmp_path)
    node = await started(engine)
    ids = await seed(node, 12)
    lqs = [
        await node.subscribe("t", q, CTX) for q in ("ORDER BY n LIMIT 4", "done = false ORDER BY n DESC LIMIT 3", "")
    ]
    rng = random.Random(7)

    async def writer(k: int) -> None:
        for step in range(6):
            i = rng.choice(ids)
            if step % 3 == 2:
                await node.create("t", [{"n": rng.randint(-5, 20), "done": rng.random() < 0.3}], CTX)
            else:
                await node.update("t", i, {"n": rng.randint(-5, 20), "done": rng.random() < 0.3}, CTX)

    await asyncio.gather(*(writer(k) for k in range(6)))
    for lq in lqs:
        await lq.settle()
        await check_invariant(node, lq)
    await node.close()


async def test_unsubscribe_while_a_commit_settles_does_not_cancel_the_commit():
    """A blocking source refills off the loop; closing the live query meanwhile must not
    turn the committing caller's await into a CancelledError."""
    import threading

    gate = threading.Event()

    class SlowBlocking(MemoryEngine):
        blocking = True

        def fetch(self, collection, query, *, after=None, limit=None):
            if after is not None:  # only the gap fill waits, the initial load does not
                gate.wait(5)
            return super().fetch(collection, query, after=after, limit=limit)

    node = await started(SlowBlocking())
    ids, _ = await node.create("albums", [{"year": y} for y in range(6)], CTX)
    lq = await node.subscribe("albums", parse("ORDER BY year LIMIT 3"), CTX)
    commit = asyncio.create_task(node.delete("albums", ids[0], CTX))
    for _ in range(200):  # wait until the refill is parked in its thread
        await asyncio.sleep(0.005)
        if lq._worker is not None:
            break
    await lq.close()
    gate.set()
    record = await asyncio.wait_for(commit, 5)
    assert record.changes and record.changes[0].kind == "delete"
    assert lq.closed_reason is not None
    assert [e.props["year"] for e in await node.fetch("albums", parse("ORDER BY year LIMIT 3"), CTX)] == [1, 2, 3]
    await node.close()


async def test_next_with_a_timeout_does_not_swallow_a_cancellation() -> None:
    """A task cancelled just as its notification arrives ends cancelled (Python 3.11's
    asyncio.wait_for would return the notification and the cancelled caller would go on)."""
    node = DurableNode(MemoryEngine())
    await node.start()
    try:
        lq = await node.subscribe("c", parse("ORDER BY n"), CTX)
        waiter = asyncio.create_task(lq.next(5))
        for _ in range(2):  # the waiter is waiting for the queue (wait_for's inner task too)
            await asyncio.sleep(0)
        assert not waiter.done()
        await node.create("c", [{"n": 1}], CTX)  # the notification is queued now, the get woken
        waiter.cancel()  # in the same turn, before the waiter ran
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert (await lq.next(1)).added[0].props == {"n": 1}, "the notification stays for the next reader"
    finally:
        await node.close()
