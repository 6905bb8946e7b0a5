"""The owner policy (read="owner") across every operation, actor and path: no read, write or
notification crosses owners.

Actors: the owner ("alice"), another user ("bob"), an anonymous context (no user). Paths: the
durable node's own API, an ephemeral node over the in-process connector, an ephemeral node over
a real WebSocket. Alice's entity is written on the durable node; each actor then tries every
operation on it through the path under test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from loam.errors import PolicyDenied
from loam.model import Create
from loam.node.api import Context
from loam.node.durable import DurableNode
from loam.node.ephemeral import EphemeralNode
from loam.policy import create_policy
from loam.storage import create_engine
from loam.transport.inprocess import InProcessServer
from loam.transport.websocket import NodeServer, WebSocketConnector

ALICE = Context(user="alice")
ACTORS = {"owner": ALICE, "other": Context(user="bob"), "anonymous": Context()}
PATHS = ("durable", "inprocess", "websocket")
GUARD_S = 10.0  # a hang guard for waits, not a performance bound


@dataclass
class World:
    durable: DurableNode
    client: Any  # the node the actor talks to: the durable node itself or an ephemeral
    mine: str  # alice's entity


@pytest.fixture(params=PATHS)
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    durable = DurableNode(create_engine("memory"), policy=create_policy("owner", read="owner"))
    await durable.start()
    (mine,), _ = await durable.create("docs", [{"owner": "alice", "n": 1, "secret": "s"}], ALICE)
    server: Any = None
    client: Any = durable
    if request.param == "inprocess":
        server = InProcessServer(durable)
        client = EphemeralNode(server.connector(request_timeout=GUARD_S))
    elif request.param == "websocket":
        server = await NodeServer(durable).start()
        client = EphemeralNode(WebSocketConnector(server.url, request_timeout=GUARD_S))
    if client is not durable:
        await client.start()
    try:
        yield World(durable, client, mine)
    finally:
        if client is not durable:
            await client.close()
        if isinstance(server, NodeServer):
            await server.close()
        await durable.close()


async def _unchanged(w: World) -> None:
    assert (await w.durable.get("docs", w.mine, ALICE)).props == {"owner": "alice", "n": 1, "secret": "s"}


@pytest.mark.parametrize("actor", ACTORS)
async def test_reads(world: World, actor: str) -> None:
    ctx = ACTORS[actor]
    got = await world.client.get("docs", world.mine, ctx)
    found = await world.client.fetch("docs", "n >= 0", ctx)
    if actor == "owner":
        assert got is not None and got.props["secret"] == "s" and [e.id for e in found] == [world.mine]
    else:
        assert got is None and found == []


@pytest.mark.parametrize("actor", ACTORS)
async def test_subscriptions_and_their_notifications(world: World, actor: str) -> None:
    ctx = ACTORS[actor]
    lq = await world.client.subscribe("docs", "n >= 0 ORDER BY n", ctx)
    await world.durable.update("docs", world.mine, {"n": 2}, ALICE)  # alice's change
    (other,), _ = await world.durable.create("docs", [{"owner": "bob", "n": 3}], Context(user="bob"))
    if actor == "owner":
        n = await lq.next(timeout=GUARD_S)
        assert [e.id for e in n.updated] == [world.mine] and not n.added
        assert [e.id for e in lq.results] == [world.mine]
    elif actor == "other":
        n = await lq.next(timeout=GUARD_S)  # the first notification bob gets is his own entity
        assert [e.id for e in n.added] == [other] and not n.updated
        assert [e.id for e in lq.results] == [other]
    else:
        # anonymous sees nothing: a read through the same connection comes back after any
        # notification sent before it, and none was
        assert await world.client.fetch("docs", "n >= 0", ctx) == []
        assert lq.results == []
        with pytest.raises(TimeoutError):
            await lq.next(timeout=0)  # nothing queued: a check, not a wait


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("op", ["update", "delete", "create-on-its-id", "create-owned-by-alice"])
async def test_writes(world: World, actor: str, op: str) -> None:
    ctx = ACTORS[actor]
    c = world.client

    async def attempt() -> Any:
        if op == "update":
            return await c.update("docs", world.mine, {"n": 9, "secret": "x"}, ctx)
        if op == "delete":
            return await c.delete("docs", world.mine, ctx)
        if op == "create-owned-by-alice":
            return await c.create("docs", [{"owner": "alice", "n": 5}], ctx)
        props = {"owner": ctx.user, "n": 9}
        if isinstance(c, DurableNode):
            from loam.model import Transaction

            tx = Transaction(f"{actor}:1", "other-node", c.clock.value + 1, (Create("docs", world.mine, props),))
            return await c.apply_transaction(tx, ctx, require_fresh=True)
        return await c.commit([Create("docs", world.mine, props)], ctx)

    if actor == "owner":  # every one is allowed to her, re-creating her own entity included
        await attempt()
        return
    with pytest.raises(PolicyDenied):
        await asyncio.wait_for(attempt(), GUARD_S)
    await _unchanged(world)
    assert await world.durable.fetch("docs", "n = 5", ALICE) == []
