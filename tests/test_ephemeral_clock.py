"""Writes through ephemeral nodes land even when the ephemeral's Lamport clock is stale.

The bug this guards: an ephemeral connected, *then* the durable node was seeded, so the
ephemeral's clock (observed at welcome) was below the entities' creation stamps; a
blind update (no read first) was stamped below them, LWW dropped it, and the commit was
still acked. Now every reply carries the durable clock, and a client commit that would
lose LWW is refused with `stale_clock`, re-stamped above the durable clock and re-sent.
Real connectors (in-process and WebSocket on 127.0.0.1), real engines, no mocks.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from loam.errors import StaleClockError
from loam.model import Create, Delete, Transaction, Update
from loam.node.api import Context
from loam.node.durable import DurableNode
from loam.protocol import codec
from loam.protocol import messages as m
from loam.protocol.matching import error_from_message
from loam.storage import create_engine
from support.transport import KINDS, Cluster, wait_until

CTX = Context()


@pytest.fixture(params=KINDS)
async def cluster(request):
    c = await Cluster(request.param).start()
    try:
        yield c
    finally:
        await c.close()


async def _seed(c: Cluster, n: int, extra_commits: int = 3) -> list[str]:
    """Seed on the durable node (after the ephemerals connected), its clock pushed up first so
    the creation stamp is above any ephemeral clock that missed it (whatever the node ids)."""
    for _ in range(extra_commits):
        await c.durable.create("other", [{"x": 1}], CTX)
    ids, _ = await c.durable.create("pets", [{"mood": 0, "seq": i} for i in range(n)], CTX)
    return ids


async def _everywhere(c: Cluster, id: str) -> list[dict]:
    got = [(await c.durable.get("pets", id, CTX)).props]
    for e in c.ephemerals:
        got.append((await e.get("pets", id, CTX)).props)
    return got


async def test_blind_update_after_late_seed_lands(cluster: Cluster) -> None:
    writer = await cluster.ephemeral()
    watcher = await cluster.ephemeral()
    lq = await watcher.subscribe("pets", "mood >= 0", CTX)
    (pet,) = await _seed(cluster, 1)
    assert writer.clock.value < cluster.durable.clock.value  # the stale clock the bug needs

    rec = await writer.update("pets", pet, {"mood": 2}, CTX)  # blind: no read first
    assert [ch.kind for ch in rec.changes] == ["update"]  # the ack describes a real change
    assert writer.stale_clock_retries == 1 and cluster.durable.stale_rejections == 1
    assert writer.connector_stats()["stale_clock_retries"] == 1
    assert cluster.durable.stats()["stale_rejections"] == 1
    assert all(p == {"mood": 2, "seq": 0} for p in await _everywhere(cluster, pet))
    await wait_until(lambda: [e.props["mood"] for e in lq.results] == [2], what="the watcher's live query")

    # The ack carried the durable clock: the next blind update is fresh, no retry.
    await writer.update("pets", pet, {"mood": 3}, CTX)
    assert writer.stale_clock_retries == 1
    assert (await cluster.durable.get("pets", pet, CTX)).props["mood"] == 3


async def test_read_replies_carry_the_durable_clock(cluster: Cluster) -> None:
    e = await cluster.ephemeral()
    (pet,) = await _seed(cluster, 1)
    await e.get("pets", pet, CTX)  # get_result brings the clock: no stale retry afterwards
    assert e.connector.remote_clock == cluster.durable.clock.value
    await e.update("pets", pet, {"mood": 5}, CTX)
    assert e.stale_clock_retries == 0 and cluster.durable.stale_rejections == 0
    await _seed(cluster, 1)
    await e.fetch("pets", "mood >= 0", CTX)
    assert e.connector.remote_clock == cluster.durable.clock.value
    assert (await cluster.durable.get("pets", pet, CTX)).props["mood"] == 5


async def test_concurrent_blind_updates_to_disjoint_entities_all_land(cluster: Cluster) -> None:
    writers = [await cluster.ephemeral() for _ in range(4)]
    ids = await _seed(cluster, 40)

    async def write(k: int) -> None:
        for i in ids[k::4]:
            await writers[k].update("pets", i, {"mood": 100 + k}, CTX)

    await asyncio.gather(*(write(k) for k in range(4)))
    for n, i in enumerate(ids):
        assert all(p["mood"] == 100 + n % 4 for p in await _everywhere(cluster, i)), i
    assert sum(w.stale_clock_retries for w in writers) >= 4  # each writer's first commit was stale


async def test_sequential_writes_from_several_ephemerals_end_with_the_last(cluster: Cluster) -> None:
    writers = [await cluster.ephemeral() for _ in range(3)]
    (pet,) = await _seed(cluster, 1)
    for step in range(12):
        # Writers only learn the durable clock from their own replies, so most of these are stale.
        await writers[step % 3].update("pets", pet, {"mood": step}, CTX)
        assert (await cluster.durable.get("pets", pet, CTX)).props["mood"] == step
    assert all(p["mood"] == 11 for p in await _everywhere(cluster, pet))
    assert sum(w.stale_clock_retries for w in writers) > 0


async def test_concurrent_updates_to_one_entity_converge_to_the_last_applied(cluster: Cluster) -> None:
    writers = [await cluster.ephemeral() for _ in range(4)]
    (pet,) = await _seed(cluster, 1)
    acks: list[tuple[tuple[int, str], int]] = []

    async def write(k: int) -> None:
        for j in range(10):
            value = k * 100 + j
            rec = await writers[k].update("pets", pet, {"mood": value}, CTX)
            acks.append(((rec.clock, rec.node_id), value))

    await asyncio.gather(*(write(k) for k in range(4)))
    # Every applied write outranks every earlier one on this property, so the last one
    # applied is the one with the highest stamp, and every node shows it.
    assert len(acks) == 40
    last = max(acks)[1]
    assert all(p["mood"] == last for p in await _everywhere(cluster, pet))


# --- the durable node's side, over every engine (PostgreSQL runs the locked, threaded path) ---


@pytest.fixture(params=["memory", "leveldb", "postgres"])
async def durable(request, tmp_path):
    if request.param == "memory":
        eng = create_engine("memory")
    elif request.param == "leveldb":
        eng = create_engine("leveldb", path=tmp_path / "db")
    else:
        eng = create_engine("postgres", dsn=request.getfixturevalue("pg_database"), pool_size=2)
    node = DurableNode(eng)
    await node.start()
    try:
        yield node
    finally:
        await node.close()


async def test_require_fresh_refuses_a_stale_stamp_and_writes_nothing(durable: DurableNode) -> None:
    await durable.create("pets", [{"mood": 9}], CTX)
    (pet,), created = await durable.create("pets", [{"mood": 0}], CTX)  # created at clock 2: above clock 1
    stale = Transaction("eph:1", "eph", 1, (Update("pets", pet, {"mood": 2}), Create("pets", "new-1", {"mood": 1})))
    with pytest.raises(StaleClockError, match=r"eph:1.*pets/.*Re-stamp") as info:
        await durable.apply_transaction(stale, CTX, require_fresh=True)
    assert info.value.clock == durable.clock.value >= created.clock
    assert durable.stale_rejections == 1
    assert (await durable.get("pets", pet, CTX)).props == {"mood": 0}
    assert await durable.get("pets", "new-1", CTX) is None  # all-or-nothing

    # The refusal was not remembered: the same commit_id, re-stamped, applies.
    fresh = Transaction("eph:1", "eph", info.value.clock + 1, stale.ops)
    rec = await durable.apply_transaction(fresh, CTX, require_fresh=True)
    assert {ch.kind for ch in rec.changes} == {"update", "create"}
    assert (await durable.get("pets", pet, CTX)).props == {"mood": 2}
    again = await durable.apply_transaction(fresh, CTX, require_fresh=True)  # a re-send is deduped
    assert again.commit_id == rec.commit_id and again.clock == rec.clock and again.changes == ()


async def test_require_fresh_checks_each_property_stamp(durable: DurableNode) -> None:
    (pet,), _ = await durable.create("pets", [{"a": 0, "b": 0}], CTX)
    await durable.apply_transaction(Transaction("x:1", "x", 50, (Update("pets", pet, {"a": 1}),)), CTX)
    # Above the creation stamp but below a's stamp: writing a is stale, writing only b is not.
    with pytest.raises(StaleClockError) as info:
        await durable.apply_transaction(
            Transaction("y:1", "y", 10, (Update("pets", pet, {"a": 2}),)), CTX, require_fresh=True
        )
    assert info.value.clock >= 50
    await durable.apply_transaction(
        Transaction("y:2", "y", 11, (Update("pets", pet, {"b": 2}),)), CTX, require_fresh=True
    )
    assert (await durable.get("pets", pet, CTX)).props == {"a": 1, "b": 2}
    # A delete is a tombstone that wins regardless of stamps: never refused as stale.
    await durable.apply_transaction(Transaction("y:3", "y", 12, (Delete("pets", pet),)), CTX, require_fresh=True)
    assert await durable.get("pets", pet, CTX) is None


async def test_replication_path_keeps_plain_lww(durable: DurableNode) -> None:
    """Without require_fresh (replication), a lower stamp just loses: order never matters."""
    await durable.create("pets", [{"mood": 9}], CTX)
    (pet,), _ = await durable.create("pets", [{"mood": 0}], CTX)  # created at clock 2: above clock 1
    rec = await durable.apply_transaction(Transaction("r:1", "r", 1, (Update("pets", pet, {"mood": 2}),)), CTX)
    assert rec.changes == () and durable.stale_rejections == 0
    assert (await durable.get("pets", pet, CTX)).props == {"mood": 0}


# --- the wire form ------------------------------------------------------------------------


def test_stale_clock_error_and_reply_clocks_round_trip() -> None:
    err = m.Error(7, "stale_clock", "re-stamp", 42)
    back = codec.decode(codec.encode(err))
    assert back == err
    exc = error_from_message(back)
    assert isinstance(exc, StaleClockError) and exc.clock == 42
    assert "clock" not in orjson.loads(codec.encode(m.Error(7, "validation", "x")))  # only stale_clock has it
    for msg in (m.GetResult(1, None, 5), m.FetchResult(1, [], 6)):
        assert codec.decode(codec.encode(msg)) == msg
    # A peer that sends no clock on replies is still understood (clock 0 observes nothing).
    d = orjson.loads(codec.encode(m.GetResult(1, None, 5)))
    del d["clock"]
    assert codec.decode(orjson.dumps(d)).clock == 0
