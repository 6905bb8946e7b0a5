"""LWW convergence: the same concurrent transactions applied in any order give identical states."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from loam.model import Create, Delete, Transaction, Update
from loam.node.api import Context
from loam.node.durable import DurableNode
from loam.storage import create_engine

CTX = Context(user="u")
IDS = ["e1", "e2", "e3"]
WRITERS = ["na", "nb", "nc"]

values = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["x", "y"]), st.just(1.0))
props = st.dictionaries(st.sampled_from(["a", "b", "c"]), values, min_size=1, max_size=3)
op = st.one_of(
    st.builds(Create, st.just("c"), st.sampled_from(IDS), props),
    st.builds(Update, st.just("c"), st.sampled_from(IDS), props),
    st.builds(Delete, st.just("c"), st.sampled_from(IDS)),
)


@st.composite
def histories(draw):
    """Transactions of several writers; each writer's clocks increase; clocks collide across writers."""
    txs = []
    for w in WRITERS:
        clock = 0
        for _ in range(draw(st.integers(0, 4))):
            clock += draw(st.integers(1, 3))
            ops = tuple(draw(st.lists(op, min_size=1, max_size=3)))
            txs.append(Transaction(f"{w}-{clock}", w, clock, ops))
    return txs


def snapshot(engine) -> dict:
    states = engine.read_states("c", IDS)
    return {i: (s.values, {k: s.stamp_of(k) for k in s.values}, s.deleted) for i, s in sorted(states.items())}


async def apply_all(engine, txs) -> dict:
    node = DurableNode(engine)
    await node.start()
    for tx in txs:
        await node.apply_transaction(tx, CTX)
    visible = {e.id: e.props for e in await node.fetch("c", "", CTX)} if "c" in node.collections() else {}
    snap = snapshot(engine)
    await node.close()
    return {"visible": visible, "states": snap}


@given(histories(), st.lists(st.randoms(use_true_random=False), min_size=2, max_size=3))
def test_any_delivery_order_converges_memory(txs, rngs):
    async def run():
        results = []
        for rng in rngs:
            order = list(txs)
            rng.shuffle(order)
            results.append(await apply_all(create_engine("memory"), order))
        # re-delivery (an ephemeral re-sending after reconnect) changes nothing
        results.append(await apply_all(create_engine("memory"), txs + txs[::-1]))
        return results

    results = asyncio.run(run())
    assert all(r == results[0] for r in results[1:])


@settings(max_examples=15)
@given(histories(), st.randoms(use_true_random=False))
def test_any_delivery_order_converges_leveldb(tmp_path_factory, txs, rng):
    async def run():
        order = list(txs)
        rng.shuffle(order)
        a = await apply_all(create_engine("leveldb", path=tmp_path_factory.mktemp("a") / "db"), txs)
        b = await apply_all(create_engine("leveldb", path=tmp_path_factory.mktemp("b") / "db"), order)
        m = await apply_all(create_engine("memory"), order[::-1])
        return a, b, m

    a, b, m = asyncio.run(run())
    assert a == b == m


def test_later_stamp_wins_and_delete_wins():
    async def run():
        node = DurableNode(create_engine("memory"))
        await node.start()
        await node.apply_transaction(Transaction("x-2", "x", 2, (Update("c", "e", {"a": "late"}),)), CTX)
        await node.apply_transaction(Transaction("y-1", "y", 1, (Create("c", "e", {"a": "early", "b": 1}),)), CTX)
        got = await node.get("c", "e", CTX)
        assert got.props == {"a": "late", "b": 1}
        # equal clocks: the node id breaks the tie
        await node.apply_transaction(Transaction("z-2", "z", 2, (Update("c", "e", {"a": "z"}),)), CTX)
        assert (await node.get("c", "e", CTX)).props["a"] == "z"
        await node.apply_transaction(Transaction("a-1", "a", 1, (Delete("c", "e"),)), CTX)
        await node.apply_transaction(Transaction("q-9", "q", 9, (Update("c", "e", {"a": "revive?"}),)), CTX)
        assert await node.get("c", "e", CTX) is None
        await node.close()

    asyncio.run(run())
