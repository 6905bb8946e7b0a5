"""Policy agents through the durable node: denials change nothing, reads are filtered."""

from __future__ import annotations

import pytest

from loam.errors import PolicyDenied, ValidationError
from loam.model import Create, Transaction
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


@pytest.mark.parametrize("require_fresh", [False, True])
async def test_a_create_cannot_take_over_another_users_entity(engine, require_fresh):
    node = await node_with(engine, create_policy("owner"))
    (a,), _ = await node.create("docs", [{"owner": "alice", "secret": "s1"}], ALICE)
    tx = Transaction("bob:1", "bob-node", node.clock.value + 1, (Create("docs", a, {"owner": "bob", "v": 9}),))
    with pytest.raises(PolicyDenied, match="belongs to 'alice'"):
        await node.apply_transaction(tx, BOB, require_fresh=require_fresh)
    assert (await node.get("docs", a, ALICE)).props == {"owner": "alice", "secret": "s1"}
    # the owner may still replace her own entity with a create, but not give it away
    mine = Transaction("alice:1", "alice-node", node.clock.value + 1, (Create("docs", a, {"owner": "alice"}),))
    await node.apply_transaction(mine, ALICE, require_fresh=require_fresh)
    gift = Transaction("alice:2", "alice-node", node.clock.value + 1, (Create("docs", a, {"owner": "bob"}),))
    with pytest.raises(PolicyDenied):
        await node.apply_transaction(gift, ALICE, require_fresh=require_fresh)
    await node.close()


async def test_a_create_over_websocket_cannot_take_over_another_users_entity():
    import orjson
    from websockets.asyncio.client import connect

    from loam.protocol import codec
    from loam.protocol import messages as m
    from loam.transport.websocket import NodeServer

    node = await node_with(create_engine("memory"), create_policy("owner", read="owner"))
    server = await NodeServer(node).start()
    try:
        (a,), _ = await node.create("docs", [{"owner": "alice", "secret": "s1"}], ALICE)
        async with connect(server.url, compression=None, proxy=None) as ws:
            await ws.send(codec.encode(m.Hello(1, None, "bob-node")))
            assert isinstance(codec.decode(await ws.recv()), m.Welcome)
            tx = {
                "commit_id": "bob:1",
                "node_id": "bob-node",
                "clock": node.clock.value + 1,
                "ops": [["c", "docs", a, {"owner": "bob"}]],
            }
            await ws.send(
                orjson.dumps({"t": "commit", "rid": 2, "tx": tx, "ctx": {"user": "bob", "data": {}}, "sent_ns": 0})
            )
            reply = codec.decode(await ws.recv())
            assert isinstance(reply, m.Error) and reply.rid == 2 and reply.code == "denied", reply
        assert (await node.get("docs", a, ALICE)).props == {"owner": "alice", "secret": "s1"}
        assert await node.get("docs", a, BOB) is None  # read="owner": still not bob's
    finally:
        await server.close()
        await node.close()


def test_loam_serve_passes_policy_params_and_refuses_bad_ones():
    import signal
    import subprocess
    import sys

    serve = [sys.executable, "-m", "loam", "serve", "--storage", "memory", "--policy", "owner"]
    for bad, says in (
        (["--policy-param", "read=nobody"], "read must be 'all' or 'owner'"),
        (["--policy-param", "colour=1"], "colour"),
        (["--policy-param", "read"], "expected KEY=VALUE"),
    ):
        proc = subprocess.run([*serve, *bad], capture_output=True, text=True, timeout=60)
        last = proc.stderr.strip().splitlines()[-1]
        assert proc.returncode == 2 and last.startswith("python -m loam serve: error:") and says in last, proc.stderr
    proc = subprocess.Popen([*serve, "--policy-param", "read=owner"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("loam serving on ws://127.0.0.1:")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
