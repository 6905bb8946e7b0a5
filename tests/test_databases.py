"""Several databases on one host: the same workload in parallel, nothing crosses a boundary."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from loam.databases import DatabaseHost, check_database_name, storage_factory
from loam.errors import ValidationError
from loam.model import Create, Update
from loam.node.api import Context, Notification
from loam.policy import create_policy

CTX = Context(user="u")
DBS = ["alpha", "beta", "gamma"]
N = 40


@pytest.fixture(params=["memory", "leveldb", "postgres"])
def factory_params(request, tmp_path):
    """(kind, params) for `storage_factory`, fresh per test."""
    if request.param == "memory":
        return "memory", {}
    if request.param == "leveldb":
        return "leveldb", {"path": tmp_path / "dbs"}
    return "postgres", {"dsn": request.getfixturevalue("pg_database"), "pool_size": 2}


async def workload(host: DatabaseHost, name: str) -> dict:
    """The same writes in every database, with the same entity ids; props say which database wrote them."""
    node = await host.open_database(name)
    notes: list[Notification] = []
    commits: list[str] = []
    node.add_commit_listener(lambda rec: commits.append(rec.commit_id))
    lq = await node.subscribe("items", "n >= 0 ORDER BY n", CTX, callback=notes.append)
    own: list[str] = []
    for k in range(N):
        rec = await node.commit([Create("items", f"shared-{k}", {"db": name, "n": k})], CTX)
        own.append(rec.commit_id)
    ids, rec = await node.create("items", [{"db": name, "n": N + k} for k in range(5)], CTX)
    own.append(rec.commit_id)
    for k in range(0, N, 4):
        own.append((await node.commit([Update("items", f"shared-{k}", {"db": name, "n": k + 1000})], CTX)).commit_id)
    for k in range(1, N, 5):
        own.append((await node.delete("items", f"shared-{k}", CTX)).commit_id)
    return {"node": node, "lq": lq, "notes": notes, "commits": commits, "own": own, "ids": ids}


async def settle(lq, notes, want: int) -> None:
    async with asyncio.timeout(10):
        while len(notes) < want:
            await asyncio.sleep(0.01)


async def test_parallel_workload_stays_in_its_database(factory_params):
    kind, params = factory_params
    host = DatabaseHost(storage_factory(kind, **params))
    try:
        runs = dict(zip(DBS, await asyncio.gather(*(workload(host, n) for n in DBS))))
        assert host.names() == sorted(DBS)
        for name, run in runs.items():
            node, lq = run["node"], run["lq"]
            # every write was a change to the live query's result: one notification per commit
            await settle(lq, run["notes"], len(run["own"]))
            assert [n.commit_id for n in run["notes"]] == run["own"]
            for n in run["notes"]:
                assert all(e.props["db"] == name for e in (*n.added, *n.updated)), f"{name} saw a foreign entity"
            assert run["commits"] == run["own"], f"{name}'s commit listener saw another database's commit"
            rows = await node.fetch("items", "", CTX)
            assert len(rows) == N + 5 - len(range(1, N, 5))
            assert {e.props["db"] for e in rows} == {name}
            assert {e.id for e in lq.results} == {e.id for e in rows}
            e = await node.get("items", "shared-0", CTX)
            assert e is not None and e.props == {"db": name, "n": 1000}
            assert await node.get("items", "shared-1", CTX) is None  # deleted here only
            for other, orun in runs.items():
                if other != name:  # ids created by the other database do not exist here
                    assert await node.get("items", orun["ids"][0], CTX) is None
        stats = host.stats()
        assert set(stats) == set(DBS) and all(s["commits"] == len(runs[n]["own"]) for n, s in stats.items())
        assert len({n.node_id for n in (r["node"] for r in runs.values())}) == len(DBS)
    finally:
        await host.close()
    for run in runs.values():
        assert run["lq"].closed_reason == "database host closed"


async def test_namespaces_per_engine_and_reopen(factory_params):
    kind, params = factory_params
    factory = storage_factory(kind, **params)
    host = DatabaseHost(factory)
    a, b = await host.open_database("a1"), await host.open_database("b1")
    await a.commit([Create("c", "x", {"v": "a"})], CTX)
    await b.commit([Create("c", "x", {"v": "b"})], CTX)
    await host.close()
    if kind == "leveldb":
        assert sorted(p.name for p in params["path"].iterdir()) == ["a1", "b1"]
    if kind == "postgres":
        with psycopg.connect(params["dsn"]) as conn:
            schemas = {r[0] for r in conn.execute("SELECT schema_name FROM information_schema.schemata")}
        assert {"loam_a1", "loam_b1"} <= schemas
    if kind == "memory":
        return  # not durable: nothing to reopen
    host = DatabaseHost(factory)
    try:
        a, b = await host.open_database("a1"), await host.open_database("b1")
        assert (await a.get("c", "x", CTX)).props == {"v": "a"}
        assert (await b.get("c", "x", CTX)).props == {"v": "b"}
        assert a.clock.value >= 1
    finally:
        await host.close()


async def test_open_is_shared_and_names_are_checked():
    host = DatabaseHost(storage_factory("memory"), max_databases=2)
    n1, n2 = await asyncio.gather(host.open_database("db"), host.open_database("db"))
    assert n1 is n2 and host.database("db") is n1 and host.names() == ["db"]
    for bad in ["", "Upper", "1db", "a-b", "x" * 49, "db;drop", 3]:
        with pytest.raises(ValidationError, match="database name"):
            await host.open_database(bad)
    with pytest.raises(ValidationError, match=r"database 'nope' is not open; open databases: db"):
        host.database("nope")
    await host.open_database("db2")
    with pytest.raises(ValidationError, match="max_databases"):
        await host.open_database("db3")
    await host.close_database("db2")
    assert host.names() == ["db"]
    await host.close()
    with pytest.raises(ValidationError, match="host is closed"):
        await host.open_database("db")
    assert check_database_name("ok_1") == "ok_1"


def test_storage_factory_errors(tmp_path):
    with pytest.raises(ValidationError, match="need path"):
        storage_factory("leveldb")
    with pytest.raises(ValidationError, match="schema_prefix, not schema"):
        storage_factory("postgres", dsn="postgresql://x", schema="s")
    with pytest.raises(ValidationError, match="schema_prefix"):
        storage_factory("postgres", dsn="postgresql://x", schema_prefix="Bad-")
    with pytest.raises(ValidationError, match="no per-database namespace"):
        storage_factory("cassandra")


async def test_policy_per_database():
    # a callable picks each database's policy: "locked" denies writes, "open" allows them
    host = DatabaseHost(
        storage_factory("memory"), policy=lambda name: create_policy("deny-all" if name == "locked" else "permissive")
    )
    try:
        await (await host.open_database("open")).create("c", [{"v": 1}], CTX)
        with pytest.raises(Exception, match="(?i)denied|deny"):
            await (await host.open_database("locked")).create("c", [{"v": 1}], CTX)
    finally:
        await host.close()
