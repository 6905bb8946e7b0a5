"""A durable node served over one connector kind, and ephemeral nodes connected to it (for tests)."""

from __future__ import annotations

import asyncio
from typing import Any

from loam.node.durable import DurableNode
from loam.node.ephemeral import EphemeralNode
from loam.storage import create_engine
from loam.transport.inprocess import InProcessServer
from loam.transport.websocket import NodeServer, WebSocketConnector

KINDS = ("inprocess", "websocket")


class Cluster:
    """One durable node (memory storage unless given) + a server of `kind` + ephemerals."""

    def __init__(self, kind: str, token: str | None = None, storage: Any = None, policy: Any = None, **server_kw: Any):
        self.kind = kind
        self.token = token
        self.durable = DurableNode(storage if storage is not None else create_engine("memory"), policy=policy)
        self.server_kw = server_kw
        self.server: Any = None
        self.ephemerals: list[EphemeralNode] = []

    async def start(self) -> Cluster:
        await self.durable.start()
        if self.kind == "inprocess":
            self.server = InProcessServer(self.durable, token=self.token, **self.server_kw)
        else:
            self.server = await NodeServer(self.durable, token=self.token, **self.server_kw).start()
        return self

    def connector(self, **kw: Any) -> Any:
        kw.setdefault("token", self.token)
        kw.setdefault("request_timeout", 10.0)
        if self.kind == "inprocess":
            return self.server.connector(**kw)
        return WebSocketConnector(self.server.url, **kw)

    async def ephemeral(self, **kw: Any) -> EphemeralNode:
        cache = kw.pop("cache", None)
        e = EphemeralNode(self.connector(**kw), cache=cache)
        await e.start()
        self.ephemerals.append(e)
        return e

    async def close(self) -> None:
        for e in self.ephemerals:
            await e.close()
        await self.server.close()
        await self.durable.close()


async def settle(cluster: Cluster, rounds: int = 3) -> None:
    """Wait until every message in flight has been delivered: a ping round trip per
    ephemeral (replies travel behind earlier notifications on the same connection)."""
    for _ in range(rounds):
        for e in cluster.ephemerals:
            if e.connector.connected:
                await e.connector.ping()
        await asyncio.sleep(0)


async def wait_until(pred: Any, timeout: float = 10.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
