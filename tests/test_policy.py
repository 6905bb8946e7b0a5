"""Policy agents through the durable node: denials change nothing, reads are filtered."""

from __future__ import annotations

import pytest

from loam.errors import PolicyDenied, ValidationError
from loam.model import Create
from loam.node.api import Context
from loam.node.durable import DurableNode
from loam.policy import create_policy, policy_names, register_policy
from loam.policy.base import BasePolicy
from loam.storage import create_engine

ALICE, BOB, NOBODY = Context(user="alice"), Context(user="bob"), Context()


@pytest.fixture(params=["memory", "leveldb"])
def engine(request, tmp_path):
    if request.param == "memory":
        return create_engine("memory")
    return create_engine("leveldb", path=tmp_path / "db")


async def node_with(engine, policy) -> DurableNode:
    node = DurableNode(engine, policy=policy)
    await node.start()
    return node


def test_registry():
    assert {"permissive", "deny-all", "owner"} <= set(policy_names())
    assert create_policy("owner", read="owner").describe() == {"policy": "owner", "read": "owner", "field": "owner"}
    with pytest.raises(ValidationError, match="unknown policy 'nope'; known policies: deny-all, owner, permissive"):
        create_policy("nope")
    with pytest.raises(ValidationError, match="read must be 'all' or 'owner'"):
        create_policy("owner", read="some")
    with pytest.raises(ValidationError, match="bad configuration"):
        create_policy("permissive", colour="red")


async def test_registering_a_policy(engine):
    class ReadOnly(BasePolicy):
        name = "read-only"

        def check_write(self, ctx, op, before):
            raise PolicyDenied("read-only store")

    register_policy("read-only", ReadOnly)
    pre = await node_with(engine, None)
    await pre.create("t", [{"x": 1}], ALICE)
    await pre.close()
    node = await node_with(engine, create_policy("read-only"))
    with pytest.raises(PolicyDenied, match="read-only"):
        await node.create("t", [{"x": 2}], ALICE)
    assert [e.props for e in await node.fetch("t", "", ALICE)] == [{"x": 1}]
    await node.close()


async def test_deny_all_leaves_storage_unchanged(engine):
    seed = await node_with(engine, None)
    (i,), _ = await seed.create("t", [{"x": 1}], ALICE)
    await seed.close()
    node = await node_with(engine, create_policy("deny-all"))
    before = engine.read_states("t", [i])
    for call in (
        node.create("t", [{"x": 2}], ALICE),
        node.update("t", i, {"x": 3}, ALICE),
        node.delete("t", i, ALICE),
        node.commit([Create("t", "k", {})], ALICE),
    ):
        with pytest.raises(PolicyDenied, match="deny-all"):
            await call
    for call in (node.get("t", i, ALICE), node.fetch("t", "", ALICE), node.subscribe("t", "", ALICE)):
        with pytest.raises(PolicyDenied, match="refuses reads"):
            await call
    assert engine.read_states("t", [i]) == before
    assert engine.count("t") == 1
    assert node.stats()["live_queries"] == 0
    await node.close()


async def test_owner_writes(engine):
    node = await node_with(engine, create_policy("owner"))
    (a,), _ = await node.create("docs", [{"owner": "alice", "v": 1}], ALICE)
    with pytest.raises(PolicyDenied, match="set property 'owner'"):
        await node.create("docs", [{"owner": "alice"}], BOB)
    with pytest.raises(PolicyDenied, match="set property 'owner'"):
        await node.create("docs", [{"v": 1}], BOB)
    with pytest.raises(PolicyDenied, match="no user"):
        await node.create("docs", [{"owner": None}], NOBODY)
    with pytest.raises(PolicyDenied, match="belongs to 'alice'"):
        await node.update("docs", a, {"v": 2}, BOB)
    with pytest.raises(PolicyDenied, match="belongs to 'alice'"):
        await node.delete("docs", a, BOB)
    with pytest.raises(PolicyDenied, match="may not change 'owner'"):
        await node.update("docs", a, {"owner": "bob"}, ALICE)
    # a batch with one bad entity writes none of them
    with pytest.raises(PolicyDenied):
        await node.create("docs", [{"owner": "bob"}, {"owner": "alice"}], BOB)
    assert engine.count("docs") == 1
    assert (await node.get("docs", a, ALICE)).props == {"owner": "alice", "v": 1}
    await node.update("docs", a, {"v": 2}, ALICE)
    await node.delete("docs", a, ALICE)
    assert engine.count("docs") == 0
    await node.close()


async def test_owner_reads_are_filtered(engine):
    node = await node_with(engine, create_policy("owner", read="owner"))
    (a1, a2), _ = await node.create("docs", [{"owner": "alice", "n": 1}, {"owner": "alice", "n": 3}], ALICE)
    (b1,), _ = await node.create("docs", [{"owner": "bob", "n": 2}], BOB)
    assert [e.id for e in await node.fetch("docs", "ORDER BY n", ALICE)] == [a1, a2]
    assert [e.id for e in await node.fetch("docs", "ORDER BY n", BOB)] == [b1]
    # LIMIT is filled with readable entities (the unreadable one in between is skipped)
    assert [e.id for e in await node.fetch("docs", "ORDER BY n LIMIT 2", ALICE)] == [a1, a2]
    assert await node.get("docs", b1, ALICE) is None
    assert (await node.get("docs", b1, BOB)).id == b1
    assert await node.fetch("docs", "", NOBODY) == []
    lq = await node.subscribe("docs", "ORDER BY n", ALICE)
    await node.create("docs", [{"owner": "bob", "n": 0}], BOB)
    await node.update("docs", b1, {"n": 0.5}, BOB)
    (a3,), _ = await node.create("docs", [{"owner": "alice", "n": 0}], ALICE)
    n = await lq.next(timeout=5)
    assert [e.id for e in n.added] == [a3]  # bob's commits produced nothing for alice
    assert [e.id for e in lq.results] == [a3, a1, a2]
    await node.close()


async def test_owner_read_all(engine):
    node = await node_with(engine, create_policy("owner", read="all"))
    await node.create("docs", [{"owner": "alice"}], ALICE)
    assert len(await node.fetch("docs", "", BOB)) == 1
    await node.close()
