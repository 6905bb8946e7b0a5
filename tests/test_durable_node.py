"""The durable node over real engines: transactions, commit records, clock, reads, errors, close."""

from __future__ import annotations

import pytest

from loam.errors import NodeClosedError, PolicyDenied, QueryError, ValidationError
from loam.model import Create, Delete, Transaction, Update
from loam.node.api import Context
from loam.node.durable import DurableNode
from loam.policy import create_policy
from loam.storage import create_engine

CTX = Context(user="alice")


@pytest.fixture(params=["memory", "leveldb", "postgres"])
def engine_factory(request, tmp_path):
    """A function building a fresh (or, called again, the same) engine of each kind."""
    if request.param == "memory":
        eng = create_engine("memory")
        return lambda: eng  # memory is not durable: "reopen" = same object
    if request.param == "leveldb":
        return lambda: create_engine("leveldb", path=tmp_path / "db")
    dsn = request.getfixturevalue("pg_database")
    return lambda: create_engine("postgres", dsn=dsn, pool_size=2)


async def started(storage, **kw) -> DurableNode:
    node = DurableNode(storage, **kw)
    await node.start()
    return node


async def test_create_get_fetch(engine_factory):
    node = await started(engine_factory())
    ids, rec = await node.create("tasks", [{"title": "a", "n": 2}, {"title": "b", "n": 1}], CTX)
    assert len(ids) == 2 and len(set(ids)) == 2
    assert rec.node_id == node.node_id and rec.clock == 1 and rec.durable_ns > 0
    assert [c.kind for c in rec.changes] == ["create", "create"]
    assert (await node.get("tasks", ids[0], CTX)).props == {"title": "a", "n": 2}
    rows = await node.fetch("tasks", "ORDER BY n", CTX)
    assert [e.id for e in rows] == [ids[1], ids[0]]
    rows = await node.fetch("tasks", "n > 1", CTX)
    assert [e.id for e in rows] == [ids[0]]
    assert await node.get("tasks", "nope", CTX) is None
    await node.close()


async def test_update_delete_and_commit_records(engine_factory):
    node = await started(engine_factory())
    (i,), _ = await node.create("tasks", [{"title": "a", "done": False}], CTX)
    rec = await node.update("tasks", i, {"done": True}, CTX)
    (ch,) = rec.changes
    assert ch.kind == "update" and ch.before.props["done"] is False and ch.after.props == {"title": "a", "done": True}
    rec = await node.delete("tasks", i, CTX)
    assert rec.changes[0].kind == "delete" and rec.changes[0].after is None
    assert await node.get("tasks", i, CTX) is None
    assert await node.fetch("tasks", "", CTX) == []
    with pytest.raises(ValidationError, match="not found"):
        await node.update("tasks", i, {"done": False}, CTX)
    with pytest.raises(ValidationError, match="not found"):
        await node.delete("tasks", "missing-id", CTX)
    await node.close()


async def test_a_batched_create_names_the_refused_entity_and_writes_nothing(engine_factory):
    node = await started(engine_factory())
    batch = [{"n": 1}, {"n": 2.5, "s": "x"}, {"n": float("nan")}, {"n": [1]}]
    with pytest.raises(ValidationError) as info:
        await node.create("tasks", batch, CTX)
    assert str(info.value) == (
        "tasks: entity #2 of the batch: property 'n': nan is not a finite number (JSON has no NaN/Infinity)"
    )
    with pytest.raises(ValidationError, match=r"^tasks: entity #0 of the batch: property names must be"):
        await node.create("tasks", [{"": 1}], CTX)
    with pytest.raises(ValidationError, match="unknown collection 'tasks'"):  # nothing was written
        await node.fetch("tasks", "", CTX)
    await node.close()


async def test_transaction_is_atomic_on_invalid_prop(engine_factory):
    node = await started(engine_factory())
    (i,), _ = await node.create("tasks", [{"n": 1}], CTX)
    ops = [Update("tasks", i, {"n": 2}), Create("tasks", "new1", {"n": 3}), Create("tasks", "new2", {"n": [1]})]
    with pytest.raises(ValidationError, match="list is not allowed"):
        await node.commit(ops, CTX)
    assert (await node.get("tasks", i, CTX)).props == {"n": 1}
    assert await node.get("tasks", "new1", CTX) is None
    # a missing id late in the transaction aborts the earlier ops too
    with pytest.raises(ValidationError, match="not found"):
        await node.commit([Update("tasks", i, {"n": 5}), Delete("tasks", "ghost")], CTX)
    assert (await node.get("tasks", i, CTX)).props == {"n": 1}
    await node.close()


async def test_transaction_is_atomic_on_policy_denial(engine_factory):
    node = await started(engine_factory(), policy=create_policy("owner"))
    bob = Context(user="bob")
    (mine,), _ = await node.create("docs", [{"owner": "alice", "v": 1}], CTX)
    (theirs,), _ = await node.create("docs", [{"owner": "bob", "v": 1}], bob)
    with pytest.raises(PolicyDenied, match="belongs to 'bob'"):
        await node.commit([Update("docs", mine, {"v": 2}), Update("docs", theirs, {"v": 2})], CTX)
    assert (await node.get("docs", mine, CTX)).props["v"] == 1
    assert (await node.get("docs", theirs, CTX)).props["v"] == 1
    await node.close()


async def test_multiple_ops_on_one_id_in_one_transaction(engine_factory):
    node = await started(engine_factory())
    await node.create("t", [{"x": 0}], CTX)
    rec = await node.commit([Create("t", "k1", {"a": 1}), Update("t", "k1", {"a": 2, "b": 3})], CTX)
    assert (await node.get("t", "k1", CTX)).props == {"a": 2, "b": 3}
    (ch,) = rec.changes
    assert ch.kind == "create" and ch.before is None and ch.after.props == {"a": 2, "b": 3}
    with pytest.raises(ValidationError, match="exists"):
        await node.commit([Create("t", "k1", {"a": 9})], CTX)
    await node.close()


async def test_clock_resumes_after_reopen(engine_factory):
    node = await started(engine_factory())
    for k in range(3):
        await node.create("t", [{"k": k}], CTX)
    assert node.clock.value == 3
    await node.close()
    node2 = await started(engine_factory(), node_id=node.node_id)
    assert node2.clock.value == 3
    rec = await node2.update("t", (await node2.fetch("t", "", CTX))[0].id, {"k": 9}, CTX)
    assert rec.clock == 4
    assert node2.collections() == ["t"]
    await node2.close()


async def test_apply_transaction_observes_clock_and_dedupes(engine_factory):
    node = await started(engine_factory())
    await node.create("t", [{"x": 1}], CTX)
    tx = Transaction("remote-7", "remote", 7, (Create("t", "r1", {"x": 2}),))
    rec = await node.apply_transaction(tx, CTX)
    assert node.clock.value == 7
    again = await node.apply_transaction(tx, CTX)
    assert (again.commit_id, again.clock, again.durable_ns) == (rec.commit_id, rec.clock, rec.durable_ns)
    assert len(await node.fetch("t", "", CTX)) == 2
    rec2 = await node.update("t", "r1", {"x": 3}, CTX)
    assert rec2.clock == 8  # later than everything observed
    # replicated ops may reference ids this node has not seen (out-of-order delivery)
    await node.apply_transaction(Transaction("remote-9", "remote", 9, (Update("t", "r9", {"x": 1}),)), CTX)
    assert (await node.get("t", "r9", CTX)).props == {"x": 1}
    await node.close()


async def test_errors_name_the_fault(engine_factory):
    node = await started(engine_factory())
    await node.create("tasks", [{"n": 1}], CTX)
    with pytest.raises(ValidationError, match=r"unknown collection 'nope'; known: tasks"):
        await node.fetch("nope", "", CTX)
    with pytest.raises(ValidationError, match=r"unknown collection 'nope'"):
        await node.get("nope", "x", CTX)
    with pytest.raises(ValidationError, match="reserved"):
        await node.create("tasks", [{"id": "x"}], CTX)
    with pytest.raises(ValidationError, match="non-empty strings"):
        await node.create("tasks", [{"": 1}], CTX)
    with pytest.raises(ValidationError, match="not a finite number"):
        await node.create("tasks", [{"n": float("nan")}], CTX)
    with pytest.raises(ValidationError, match="dict is not allowed"):
        await node.update("tasks", (await node.fetch("tasks", "", CTX))[0].id, {"n": {"a": 1}}, CTX)
    with pytest.raises(ValidationError, match="list of property dicts"):
        await node.create("tasks", {"n": 1}, CTX)  # type: ignore[arg-type]
    with pytest.raises(QueryError):
        await node.fetch("tasks", "(", CTX)
    assert len(await node.fetch("tasks", "", CTX)) == 1
    await node.close()


async def test_lenient_collections():
    node = await started(create_engine("memory"), strict_collections=False)
    assert await node.fetch("nope", "", CTX) == []
    assert await node.get("nope", "x", CTX) is None
    await node.close()


async def test_close_behaviour(engine_factory):
    node = await started(engine_factory())
    (id_,), _ = await node.create("t", [{"x": 1}], CTX)
    assert (await node.get("t", id_, CTX)).props == {"x": 1}  # a direct reader where the engine has one
    lq = await node.subscribe("t", "", CTX)
    await node.close("maintenance")
    n = await lq.next(timeout=5)
    assert n.kind == "closed" and n.reason == "maintenance"
    assert lq.closed_reason == "maintenance"
    with pytest.raises(NodeClosedError):
        await lq.next(timeout=1)
    for call in (node.fetch("t", "", CTX), node.create("t", [{}], CTX), node.get("t", id_, CTX)):
        with pytest.raises(NodeClosedError, match="maintenance"):
            await call
    with pytest.raises(NodeClosedError):
        await node.start()
    await node.close()  # idempotent


async def test_not_started_is_a_clear_error():
    node = DurableNode(create_engine("memory"))
    with pytest.raises(NodeClosedError, match="start"):
        await node.fetch("t", "", CTX)


async def test_commit_listener_and_stats(engine_factory):
    node = await started(engine_factory())
    seen = []
    node.add_commit_listener(seen.append)
    _, rec = await node.create("t", [{"x": 1}, {"x": 2}], CTX)
    assert seen == [rec]
    lq = await node.subscribe("t", "x = 1", CTX)
    await node.subscribe("t", "ORDER BY x LIMIT 1", CTX)
    st = node.stats()
    assert st["commits"] == 1 and st["live_queries"] == 2 and st["subscriptions"] == {"t": 2}
    assert all(v > 0 for v in st["live_query_memory"].values())
    await lq.close()
    assert node.stats()["live_queries"] == 1
    await node.close()


async def test_large_batch_create_leveldb(tmp_path):
    node = await started(create_engine("leveldb", path=tmp_path / "db"))
    ids, rec = await node.create("big", [{"i": i, "s": f"v{i}"} for i in range(5000)], CTX)
    assert len(rec.changes) == 5000
    assert len(await node.fetch("big", "i >= 4990", CTX)) == 10
    await node.close()


def test_batched_ids_match_single_ids():
    from loam.model import IdGenerator

    g = IdGenerator()
    ids = [g.new(), *g.new_many(3000), g.new()]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) and {len(i) for i in ids} == {26}
    a, b = IdGenerator(), IdGenerator()
    for gen in (a, b):  # same state: both encodings must produce the same strings
        gen._last_ms, gen._last_tail = 10**13, 1020
    assert a.new_many(2000) == [b.new() for _ in range(2000)]
