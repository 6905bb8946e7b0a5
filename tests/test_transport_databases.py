"""WebSocket routing to the databases of a DatabaseHost: each connection sees its own database only."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from loam.databases import DatabaseHost, storage_factory
from loam.errors import ValidationError
from loam.node.api import Context
from loam.node.durable import DurableNode
from loam.node.ephemeral import EphemeralNode
from loam.protocol import codec
from loam.protocol import messages as m
from loam.storage import create_engine
from loam.transport.websocket import NodeServer, WebSocketConnector

CTX = Context()


async def _ephemeral(url: str, database: str | None) -> EphemeralNode:
    e = EphemeralNode(WebSocketConnector(url, database=database, request_timeout=10.0))
    await e.start()
    return e


def test_hello_database_round_trips_and_stays_optional():
    plain = codec.encode(m.Hello(1, None, "n"))
    assert b"database" not in plain  # old servers keep accepting new clients that name none
    assert codec.decode(plain).database is None
    assert codec.decode(codec.encode(m.Hello(1, "t", "n", database="shop"))).database == "shop"
    with pytest.raises(Exception, match="database"):
        codec.decode(b'{"t":"hello","sent_ns":0,"rid":1,"token":null,"node_id":"n","version":1,"database":5}')


@pytest.mark.parametrize("engine", ["leveldb", "memory"])
async def test_no_cross_database_leakage_over_real_sockets(tmp_path, engine):
    params = {"path": str(tmp_path / "dbs")} if engine == "leveldb" else {}
    async with DatabaseHost(storage_factory(engine, **params)) as host:
        server = await NodeServer(host).start()
        try:
            a1, a2 = await _ephemeral(server.url, "alpha"), await _ephemeral(server.url, "alpha")
            b = await _ephemeral(server.url, "beta")
            d = await _ephemeral(server.url, None)  # the default database
            assert host.names() == ["alpha", "beta", "default"]
            assert a1.remote_node_id == host.database("alpha").node_id != b.remote_node_id
            seen: dict[str, list[str]] = {"alpha": [], "beta": [], "default": []}
            lqs = []
            for name, node in (("alpha", a2), ("beta", b), ("default", d)):
                lqs.append(
                    await node.subscribe(
                        "items",
                        "",
                        CTX,
                        callback=lambda n, name=name: seen[name].extend(e.props["db"] for e in (*n.added, *n.updated)),
                    )
                )
            ids_a, _ = await a1.create("items", [{"db": "alpha", "n": i} for i in range(5)], CTX)
            ids_b, _ = await b.create("items", [{"db": "beta", "n": i} for i in range(3)], CTX)
            for _ in range(200):
                if len(seen["alpha"]) == 5 and len(seen["beta"]) == 3:
                    break
                await asyncio.sleep(0.01)
            assert seen == {"alpha": ["alpha"] * 5, "beta": ["beta"] * 3, "default": []}
            assert sorted(e.props["db"] for e in await a2.fetch("items", "", CTX)) == ["alpha"] * 5
            assert [e.props["db"] for e in await b.fetch("items", "", CTX)] == ["beta"] * 3
            assert await d.fetch("items", "", CTX) == []
            assert await b.get("items", ids_a[0], CTX) is None
            assert await a1.get("items", ids_b[0], CTX) is None
            assert (await a2.get("items", ids_a[0], CTX)).props["db"] == "alpha"
            for node in (a1, a2, b, d):
                await node.close()
        finally:
            await server.close()


async def test_bad_database_name_is_refused_with_validation_and_1008(tmp_path):
    async with DatabaseHost(storage_factory("memory")) as host:
        server = await NodeServer(host).start()
        try:
            with pytest.raises(ValidationError, match="database name 'Bad-Name' is invalid"):
                await _ephemeral(server.url, "Bad-Name")
            ws = await connect(server.url, compression=None, proxy=None)
            await ws.send(codec.encode(m.Hello(1, None, "raw", database="../etc")))
            err = codec.decode(await ws.recv())
            assert isinstance(err, m.Error) and err.code == "validation" and err.rid == 1
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1008
            assert host.names() == []
        finally:
            await server.close()


async def test_single_node_server_refuses_a_database_name():
    node = DurableNode(create_engine("memory"))
    await node.start()
    server = await NodeServer(node).start()
    try:
        with pytest.raises(ValidationError, match="serves a single database"):
            await _ephemeral(server.url, "shop")
        e = await _ephemeral(server.url, None)  # unchanged for clients that name none
        await e.create("c", [{"x": 1}], CTX)
        await e.close()
    finally:
        await server.close()
        await node.close()


async def test_welcome_clock_is_the_database_clock(tmp_path):
    async with DatabaseHost(storage_factory("memory")) as host:
        busy = await host.open_database("busy")
        for i in range(7):
            await busy.create("c", [{"i": i}], CTX)
        server = await NodeServer(host).start()
        try:
            e_busy, e_idle = await _ephemeral(server.url, "busy"), await _ephemeral(server.url, "idle")
            assert e_busy.connector.remote_clock == busy.clock.value >= 7
            assert e_idle.connector.remote_clock == 0
            await e_busy.close()
            await e_idle.close()
        finally:
            await server.close()
