"""The loam stack for sprout: the only module that knows both the harness and loam.

Registered as entry point `sprout_harness.stacks: loam = "sprout_loam.adapter:stack"`.
Settings it understands (see docs/configuration.md):

- storage.engine: memory | leveldb | postgres (any engine registered with loam.storage);
  leveldb: `path` (default: a temp dir removed at teardown; one sub-dir per durable node),
  postgres: `dsn` (default: SPROUT_PG_DSN, else a throwaway cluster), `pool_size`,
  one schema per durable node; other keys in storage.params go to the engine.
- policy.id: a loam policy agent (permissive, deny-all, owner) plus its params.
- topology connectors: `inprocess` (params: delay_s, token) and `websocket` (params:
  token, host); one server per durable node and connector kind.
- stack.params: `user` (the context user; default "sprout-<role>-<index>"),
  `request_timeout` (seconds, connector requests), `max_pending`, and where the durable
  nodes run: in this process (default), `durable_process: true` (each in its own
  `python -m loam serve` process, started and stopped here: `server_process`), or
  `durable_urls: [ws://...]` (servers someone else runs, one per durable node). Out of
  process, the harness reaches a durable node over WebSocket with an ephemeral node that
  reads only remotely (`local_reads=False`), ephemerals connect over `websocket`, and the
  hooks that need the node object (triggers, databases, server_stats, native_get) are
  unsupported. `server_host` is the address WebSocket servers bind (default 127.0.0.1; one
  that clients on other hosts, or Ray actors in other network namespaces, can reach).

Optional hooks (sprout_harness/contracts/hooks.py): extra connections (`open_connection`,
`connection_address` + `connect_address` for worker processes, `server_stats`), triggers
on a durable node (`add_trigger`, ... through loam.triggers.TriggerManager) and databases
(`database_client`: a loam.databases.DatabaseHost per durable slot, its storage next to
the durable node's: LevelDB sub-directories, PostgreSQL schemas, memory engines) and the
wire codec of a notify (`notify_codec`, the notify-lag phase's codec floor) and direct reads
(`native_get`: the node API under a client).
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Sequence
from urllib.parse import urlsplit

from loam.model import Entity
from loam.node.api import Context
from loam.node.api import Notification as LoamNotification
from loam.protocol import codec
from loam.protocol.messages import Notify
from loam.query.ast import And, Compare, In, Not, Or, OrderKey, Query
from sprout_harness.contracts import (
    AllOf,
    AnyOf,
    Capabilities,
    Cond,
    ConfigError,
    Doc,
    InList,
    Link,
    Notification,
    QuerySpec,
    StackError,
    StackSettings,
    Unsupported,
    WriteAck,
    did_you_mean,
)
from sprout_harness.contracts import Not as HNot
from sprout_harness.contracts.hooks import WebhookEvent
from sprout_harness.contracts.variants import BenchVariant, QueryFields
from sprout_harness.services.postgres import PostgresHandle, PostgresUnavailable, ensure_postgres
from sprout_loam.server_process import ServerProcess, serve_args, start_server

CONNECTORS = ("inprocess", "websocket")  # the first is the default of a link that names none
DEFAULT_ENGINE = "leveldb"  # a config without storage.engine
DEFAULT_POLICY = "permissive"  # a config without policy.id
SEED_MESSAGE_BYTES = 64 << 20  # the harness's connection to an out-of-process durable node
_CONNECTOR_PARAMS = {
    "inprocess": {"delay_s", "token", "request_timeout"},
    "websocket": {"token", "host", "request_timeout"},
}
_STACK_PARAMS = {"user", "request_timeout", "max_pending", "durable_process", "durable_urls", "server_host"}


# --- translation between the harness's types and loam's ------------------------------------


def to_loam_query(q: QuerySpec) -> Query:
    def pred(p: Any) -> Any:
        if isinstance(p, Cond):
            return Compare(p.field, p.op, p.value)
        if isinstance(p, InList):
            return In(p.field, tuple(p.values), p.negated)
        if isinstance(p, AllOf):
            return And(tuple(pred(i) for i in p.items))
        if isinstance(p, AnyOf):
            return Or(tuple(pred(i) for i in p.items))
        if isinstance(p, HNot):
            return Not(pred(p.item))
        raise TypeError(f"unknown predicate {p!r}")

    return Query(
        where=pred(q.where) if q.where is not None else None,
        order_by=tuple(OrderKey(o.field, o.descending) for o in q.order_by),
        limit=q.limit,
        text=None,  # no text: loam sends the AST over connectors (the harness's text syntax is not loam's)
    )


def _doc(e: Any) -> Doc:
    return Doc(e.id, e.props)


def _ack(rec: Any, ids: Sequence[str] = ()) -> WriteAck:
    # positional: built after every write, before the writer waits for its notification
    return WriteAck(rec.durable_ns, tuple(ids) if ids else (), rec.commit_id)


class LoamSubscription:
    def __init__(self, lq: Any) -> None:
        self.lq = lq

    @property
    def results(self) -> list[Doc]:
        return [Doc(e.id, e.props) for e in self.lq.results]

    async def close(self) -> None:
        await self.lq.close()


class LoamClient:
    """One loam node (durable or ephemeral) behind the harness's Client surface.

    `close_node=False`: close() leaves the node open (a database node its host owns)."""

    def __init__(self, node: Any, ctx: Context, on_close: Any = None, close_node: bool = True) -> None:
        self.node = node
        self.ctx = ctx
        self._on_close = on_close
        self._close_node = close_node

    async def create(self, collection: str, props: Sequence[Mapping[str, Any]]) -> WriteAck:
        ids, rec = await self.node.create(collection, [dict(p) for p in props], self.ctx)
        return _ack(rec, ids)

    async def get(self, collection: str, id: str) -> Doc | None:
        e = await self.node.get(collection, id, self.ctx)
        return None if e is None else _doc(e)

    async def fetch(self, collection: str, query: QuerySpec) -> list[Doc]:
        return [_doc(e) for e in await self.node.fetch(collection, to_loam_query(query), self.ctx)]

    async def update(self, collection: str, id: str, props: Mapping[str, Any]) -> WriteAck:
        return _ack(await self.node.update(collection, id, dict(props), self.ctx))

    async def delete(self, collection: str, id: str) -> WriteAck:
        return _ack(await self.node.delete(collection, id, self.ctx))

    async def subscribe(self, collection: str, query: QuerySpec, callback: Any) -> LoamSubscription:
        def relay(n: LoamNotification) -> Any:
            # on every notification's path to the harness's clock: no generator per field
            added, updated = n.added, n.updated
            return callback(
                Notification(
                    n.commit_ns,
                    tuple(map(_doc, added)) if added else (),
                    tuple(map(_doc, updated)) if updated else (),
                    tuple(n.removed),
                    n.kind,
                    n.commit_id,
                    n.received_ns,
                )
            )

        lq = await self.node.subscribe(collection, to_loam_query(query), self.ctx, callback=relay)
        return LoamSubscription(lq)

    async def close(self) -> None:
        if self._on_close is not None:
            await self._on_close()
        if self._close_node:
            await self.node.close("sprout run finished")


# --- the stack -------------------------------------------------------------------------------


class LoamStack:
    """loam as a sprout stack: DurableNode on a storage engine, EphemeralNode over a connector."""

    name = "loam"
    connector_names: tuple[str, ...] = CONNECTORS  # subclasses adding a transport extend this

    @classmethod
    def benchmark_variants(cls, query_fields: QueryFields) -> Sequence[BenchVariant]:
        """loam on each engine, ephemerals over each connector.

        LevelDB takes the compound keys: a `genre = G ORDER BY rating DESC LIMIT K` refill walks
        [genre, rating] from the window's last member and stops after K matches. PostgreSQL
        gets single properties only: its compiled ORDER BY sorts by type-rank CASE expressions
        that a compound expression index cannot match, so one would only add write cost
        (docs/storage.md)."""
        single = {c: [f for f in fields if isinstance(f, str)] for c, fields in query_fields.items()}
        permissive = {"id": "permissive"}
        return [
            BenchVariant(
                "loam-leveldb",
                {"engine": "leveldb", "params": {"indexes": dict(query_fields)}},
                cls.connector_names,
                policy=permissive,
            ),
            BenchVariant(
                "loam-postgres",
                {"engine": "postgres", "pool_size": 4, "params": {"indexes": single}},
                cls.connector_names,
                needs=("postgres",),
                policy=permissive,
            ),
        ]

    @classmethod
    def validate(cls, settings: StackSettings) -> None:
        from loam.policy import policy_names
        from loam.storage import engine_names

        engine = settings.storage.get("engine", DEFAULT_ENGINE)
        if engine not in engine_names():
            raise ConfigError(
                f"got {engine!r}{did_you_mean(str(engine), engine_names())}; "
                f"loam's storage engines: {', '.join(engine_names())}",
                "storage.engine",
            )
        policy = settings.policy.get("id", DEFAULT_POLICY)
        if policy not in policy_names():
            raise ConfigError(
                f"got {policy!r}{did_you_mean(str(policy), policy_names())}; "
                f"loam's policy agents: {', '.join(policy_names())}",
                "policy.id",
            )
        for key in settings.params:
            if key not in _STACK_PARAMS:
                raise ConfigError(
                    f"unknown loam stack parameter{did_you_mean(key, _STACK_PARAMS)}; "
                    f"allowed: {', '.join(sorted(_STACK_PARAMS))}",
                    f"stack.params.{key}",
                )
        timeout = settings.params.get("request_timeout")
        if timeout is not None and (type(timeout) not in (int, float) or not 0 < timeout <= 3600):
            raise ConfigError(
                f"got {timeout!r:.60}; seconds a request may wait for its reply: a number > 0 and <= 3600 (default 30)",
                "stack.params.request_timeout",
            )
        user = settings.params.get("user")
        if user is not None and type(user) is not str:
            raise ConfigError(f"got {user!r:.60}; a user name (text)", "stack.params.user")
        remote = _check_placement(settings)
        host = settings.params.get("server_host")
        if host is not None and (type(host) is not str or not re.fullmatch(r"[0-9A-Za-z.:-]{1,253}", host)):
            raise ConfigError(
                f"got {host!r:.60}; the address WebSocket servers bind (default 127.0.0.1), e.g. "
                "an address other hosts or network namespaces reach",
                "stack.params.server_host",
            )
        pending = settings.params.get("max_pending")
        if pending is not None and (type(pending) is not int or pending < 1):
            raise ConfigError(
                f"got {pending!r}; messages that may wait for one connection that does not read "
                "must be a whole number >= 1 (default 10000)",
                "stack.params.max_pending",
            )
        for link in settings.topology.get("links", []):
            where = f"topology.links[{link['ephemeral']}]"
            if link["connector"] is None:  # the runner gives it the first of the capabilities' connectors
                link = {**link, "connector": "websocket" if remote else cls.connector_names[0]}
            if remote and link["connector"] != "websocket":
                raise ConfigError(
                    f"connector {link['connector']!r} needs the durable node in this process; with "
                    f"stack.params.{remote} ephemerals connect over websocket",
                    f"{where}.connector",
                )
            if link["connector"] not in cls.connector_names:
                raise ConfigError(
                    f"connector {link['connector']!r} for ephemeral {link['ephemeral']} is not a loam "
                    f"connector{did_you_mean(link['connector'], cls.connector_names)}; "
                    f"allowed: {', '.join(cls.connector_names)}",
                    f"{where}.connector",
                )
            if link["connector"] not in _CONNECTOR_PARAMS:
                continue  # a subclass's transport checks its own parameters
            for key in link["params"]:
                if key not in _CONNECTOR_PARAMS[link["connector"]]:
                    raise ConfigError(
                        f"unknown {link['connector']} connector parameter"
                        f"{did_you_mean(key, _CONNECTOR_PARAMS[link['connector']])}; allowed: "
                        f"{', '.join(sorted(_CONNECTOR_PARAMS[link['connector']]))}",
                        f"{where}.params.{key}",
                    )
        _check_storage(str(engine), settings.storage)
        _check_policy(str(policy), {"id": DEFAULT_POLICY, **settings.policy})
        path = settings.storage.get("path")
        if engine == "leveldb" and path and Path(path).exists() and any(Path(path).iterdir()):
            raise ConfigError(
                f"{path!r} already holds data; a run needs a fresh store: give a new or empty "
                "directory, or leave storage.path unset for a temp dir",
                "storage.path",
            )

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.storage = dict(settings.storage)
        self.engine_name = self.storage.pop("engine", DEFAULT_ENGINE)
        self.policy = {"id": DEFAULT_POLICY, **settings.policy}
        self.durable_process = bool(settings.params.get("durable_process", False))
        self.server_host = str(settings.params.get("server_host") or "127.0.0.1")
        self.durable_urls: list[str] = list(settings.params.get("durable_urls") or [])
        self.out_of_process = self.durable_process or bool(self.durable_urls)  # durable nodes elsewhere
        self.remote: dict[int, ServerProcess] = {}  # durable index -> its server, when out of process
        self.pg: Any = None
        self.engines: dict[int, Any] = {}
        self.nodes: dict[int, Any] = {}
        self.servers: dict[tuple[int, str], Any] = {}
        self.sink: Any = None
        self.run_tag = uuid.uuid4().hex[:8]
        self.extra_clients: set[LoamClient] = set()  # open_connection / database_client clients
        self.triggers: dict[int, Any] = {}  # durable index -> TriggerManager
        self.hosts: dict[int, Any] = {}  # durable index -> DatabaseHost
        self.host_servers: dict[tuple[int, str], Any] = {}
        self._host_names: dict[int, list[str]] = {}  # databases to drop at teardown (shared PostgreSQL)
        self._server_lock: Any = None

    def capabilities(self) -> Capabilities:
        return Capabilities(
            subscribe=True,
            live_limit=True,
            order_by=True,
            ephemeral=True,
            connectors=("websocket",) if self.out_of_process else self.connector_names,
            connector_delays=True,
        )

    def set_delay_sink(self, sink: Any) -> None:
        self.sink = sink

    async def start(self) -> None:
        if self.engine_name == "postgres" and not self.storage.get("dsn"):
            try:
                self.pg = await _start_postgres(self.settings.add_cleanup)
            except PostgresUnavailable as exc:
                raise StackError(str(exc)) from None
            self.storage["dsn"] = self.pg.dsn

    def context(self, role: str, index: int) -> Context:
        return Context(user=self.settings.params.get("user") or f"sprout-{role}-{index}")

    def _engine_params(self, index: int) -> dict[str, Any]:
        params = dict(self.storage)
        if self.engine_name == "leveldb":
            base = Path(params.pop("path", None) or self.settings.workdir() / "leveldb")
            base.mkdir(parents=True, exist_ok=True)  # LevelDB creates the leaf directory only
            params["path"] = str(base / f"durable-{index}")
            params.pop("pool_size", None)
        elif self.engine_name == "postgres":
            if self.pg is not None and self.pg.origin == "throwaway":
                params.setdefault("schema", f"loam_d{index}")
            else:  # a shared server: a schema of our own, dropped at teardown
                schema = params.get("schema") or f"sprout_{self.run_tag}_d{index}"
                params["schema"] = schema
                self.settings.add_cleanup(lambda dsn=params["dsn"], s=schema: _drop_schema(dsn, s))
        else:
            params.pop("pool_size", None)
            params.pop("path", None)
            params.pop("dsn", None)
        return params

    async def durable(self, index: int, context: Context) -> LoamClient:
        from loam.node.durable import DurableNode
        from loam.policy import create_policy
        from loam.storage import create_engine

        if self.out_of_process:
            return await self._remote_durable(index, context)
        policy_cfg = dict(self.policy)
        policy = create_policy(policy_cfg.pop("id"), **policy_cfg)
        engine = create_engine(self.engine_name, **self._engine_params(index))
        node = DurableNode(engine, policy)
        await node.start()
        self.engines[index] = engine
        self.nodes[index] = node
        return LoamClient(node, context, on_close=lambda i=index: self._close_servers(i))

    async def _remote_durable(self, index: int, context: Context) -> LoamClient:
        """Durable node `index` out of this process, and the harness's client of it."""
        from loam.node.ephemeral import EphemeralNode
        from loam.transport.websocket import WebSocketConnector

        name = f"durable-{index}"
        if self.durable_urls:
            server = ServerProcess(name, self.durable_urls[index])
        else:
            args = serve_args(
                self.engine_name,
                self._engine_params(index),
                self.policy,
                self.settings.params.get("max_pending"),
                host=self.server_host,
            )
            args += ["--max-message-size", str(SEED_MESSAGE_BYTES)]
            server = await start_server(name, args, self.settings.workdir() / f"{name}.log", self.settings.add_cleanup)
        self.remote[index] = server
        timeout = float(self.settings.params.get("request_timeout", 30.0))
        # seeding sends whole batches (runner.seed_batch_size entities) in one commit: a larger
        # message limit on this connection, and on the server when the stack starts it
        node = EphemeralNode(
            WebSocketConnector(server.url, request_timeout=timeout, reconnect=False, max_size=SEED_MESSAGE_BYTES),
            node_id=f"sprout-{name}-client",
            local_reads=False,
        )
        try:
            await node.start()
        except Exception as exc:
            log = server.log_tail()
            raise StackError(
                f"{name}: cannot connect to {server.url}: {type(exc).__name__}: {exc}"
                + (f"; server log: {log}" if log else "")
            ) from None
        return LoamClient(node, context, on_close=lambda i=index: self._close_servers(i))

    async def _close_servers(self, index: int) -> None:
        for c in list(self.extra_clients):  # connections a phase left open
            self.extra_clients.discard(c)
            try:
                await c.close()
            except Exception:
                pass
        mgr = self.triggers.pop(index, None)
        if mgr is not None:
            await mgr.close(drain=False)
        for key in [k for k in self.servers if k[0] == index]:
            await self.servers.pop(key).close()
        for key in [k for k in self.host_servers if k[0] == index]:
            await self.host_servers.pop(key).close()
        host = self.hosts.pop(index, None)
        if host is not None:
            await host.close("sprout run finished")

    def _wire_delays(self, stats: Any, prefix: str) -> None:
        original = stats.record

        def record(msg_type: str, delay_ns: int) -> None:
            original(msg_type, delay_ns)
            if self.sink is not None:
                self.sink(f"{prefix}.{msg_type}", delay_ns)

        stats.record = record

    async def connector(self, link: Link, durable: LoamClient) -> Any:
        params = dict(link.params)
        if link.durable in self.remote:
            conn = self._remote_connector(link.durable, link.connector, params)
        else:
            server = await self._server(self.servers, (link.durable, link.connector), durable.node, params)
            conn = self._new_connector(server, link.connector, params)
        self._wire_delays(conn.stats, "to_ephemeral")
        return conn

    def _remote_connector(self, durable: int, connector: str, params: Mapping[str, Any]) -> Any:
        """A WebSocket connector to an out-of-process durable node."""
        from loam.transport.websocket import WebSocketConnector

        if connector != "websocket":
            raise Unsupported(f"durable-{durable} runs out of this process: connect over websocket, not {connector!r}")
        timeout = float(params.get("request_timeout", self.settings.params.get("request_timeout", 30.0)))
        return WebSocketConnector(self.remote[durable].url, token=params.get("token"), request_timeout=timeout)

    async def _server(
        self, servers: dict[tuple[int, str], Any], key: tuple[int, str], target: Any, params: Mapping[str, Any]
    ) -> Any:
        """The server of `key` (durable index, connector) serving `target` (a node or a DatabaseHost)."""
        if key in servers:
            return servers[key]
        if self._server_lock is None:
            self._server_lock = asyncio.Lock()
        async with self._server_lock:  # concurrent open_connection calls must share one server
            if key in servers:
                return servers[key]
            return await self._start_server(servers, key, target, params)

    async def _start_server(
        self, servers: dict[tuple[int, str], Any], key: tuple[int, str], target: Any, params: Mapping[str, Any]
    ) -> Any:
        token = params.get("token")
        from loam.transport.service import DEFAULT_MAX_PENDING

        pending = self.settings.params.get("max_pending") or DEFAULT_MAX_PENDING
        if key[1] == "inprocess":
            from loam.transport.inprocess import InProcessServer

            server: Any = InProcessServer(
                target, token=token, delay_s=float(params.get("delay_s", 0.0)), max_pending=pending
            )
        elif key[1] == "websocket":
            from loam.transport.websocket import NodeServer

            server = NodeServer(
                target, host=params.get("host", self.server_host), port=0, token=token, max_pending=pending
            )
            try:
                await server.start()
            except OSError as exc:
                raise StackError(f"cannot start a WebSocket server for durable-{key[0]}: {exc}") from None
        else:
            raise StackError(f"loam has no connector {key[1]!r} (it has: {', '.join(CONNECTORS)})")
        servers[key] = server
        self._wire_delays(server.service.stats, "to_durable")
        return server

    def _new_connector(self, server: Any, kind: str, params: Mapping[str, Any], database: str | None = None) -> Any:
        token = params.get("token")
        timeout = float(params.get("request_timeout", self.settings.params.get("request_timeout", 30.0)))
        if kind == "inprocess":
            return server.connector(token=token, request_timeout=timeout, database=database)
        from loam.transport.websocket import WebSocketConnector

        return WebSocketConnector(server.url, token=token, request_timeout=timeout, database=database)

    def _link_params(self, durable: int, connector: str) -> dict[str, Any]:
        """Connector parameters of the first configured link of that kind to `durable` (token, host...)."""
        for link in self.settings.topology.get("links", []):
            if link["durable"] == durable and link["connector"] == connector:
                return dict(link["params"])
        return {}

    def _durable_node(self, durable: int) -> Any:
        if durable in self.remote:
            raise Unsupported(
                f"durable-{durable} runs out of this process ({self.remote[durable].where()}); "
                "this needs the node in the harness's process"
            )
        try:
            return self.nodes[durable]
        except KeyError:
            raise StackError(
                f"durable-{durable} does not exist (this run has {len(self.nodes)} durable nodes)"
            ) from None

    # --- optional hooks: extra connections ----------------------------------------------

    async def open_connection(self, durable: int, connector: str = "websocket") -> LoamClient:
        """A new ephemeral node with its own connection to durable node `durable`."""
        from loam.node.ephemeral import EphemeralNode

        if connector not in CONNECTORS:
            raise StackError(f"loam has no connector {connector!r} (it has: {', '.join(CONNECTORS)})")
        params = self._link_params(durable, connector)
        if durable in self.remote:
            node = EphemeralNode(self._remote_connector(durable, connector, params))
        else:
            server = await self._server(self.servers, (durable, connector), self._durable_node(durable), params)
            node = EphemeralNode(self._new_connector(server, connector, params))
        await node.start()
        client = LoamClient(node, self.context("ephemeral", 1000 + len(self.extra_clients)), on_close=None)
        self.extra_clients.add(client)
        client._on_close = lambda c=client: self._forget(c)
        return client

    async def _forget(self, client: LoamClient) -> None:
        self.extra_clients.discard(client)

    async def connection_address(self, durable: int, connector: str = "websocket") -> dict[str, Any]:
        """Where a client in another process connects to durable node `durable` (WebSocket only:
        Unsupported for a connector another process cannot reach)."""
        if connector != "websocket":
            raise Unsupported(f"clients in other processes need the websocket connector, not {connector!r}")
        params = self._link_params(durable, connector)
        if durable in self.remote:
            url = self.remote[durable].url
        else:
            url = (await self._server(self.servers, (durable, connector), self._durable_node(durable), params)).url
        return {
            "url": url,
            "token": params.get("token"),
            "request_timeout": float(params.get("request_timeout", self.settings.params.get("request_timeout", 30.0))),
        }

    @staticmethod
    async def connect_address(address: Mapping[str, Any], index: int) -> LoamClient:
        """A client of `address` (from connection_address) in this process: an ephemeral over WebSocket."""
        from loam.node.ephemeral import EphemeralNode
        from loam.transport.websocket import WebSocketConnector

        node = EphemeralNode(
            WebSocketConnector(
                address["url"],
                token=address.get("token"),
                request_timeout=float(address.get("request_timeout", 30.0)),
                database=address.get("database"),
            )
        )
        await node.start()
        return LoamClient(node, Context(user=f"sprout-worker-{index}"))

    def server_stats(self, durable: int) -> dict[str, Any]:
        if durable in self.remote:  # the server's figures live in its own process: its memory only
            rss = self.remote[durable].rss_bytes()
            return {} if rss is None else {"rss_bytes": rss}
        node = self._durable_node(durable)
        st = node.stats()
        services = [s.service for k, s in self.servers.items() if k[0] == durable]
        peers = sum(len(svc.peers) for svc in services)
        return {
            "connections": peers,
            "slow_connections_closed": sum(svc.slow_peers_closed for svc in services),
            "live_queries": st["live_queries"],
            "live_query_memory_bytes": sum(st["live_query_memory"].values()),
            "registry_entries": st["registry_entries"],
            "commits": st["commits"],
        }

    @staticmethod
    def notify_codec() -> tuple[Callable[[str, dict[str, Any], int], bytes], Callable[[bytes], int]]:
        """loam's wire codec for a change notify of one updated entity, as the durable
        node's service encodes it (send stamp included) and a client decodes it."""

        def encode(id: str, props: dict[str, Any], commit_ns: int) -> bytes:
            return codec.encode_change_notify(
                "q", "c", commit_ns, (), (Entity(id, props),), (), 0, 0, time.perf_counter_ns()
            )

        def decode(data: bytes) -> int:
            msg = codec.decode(data)
            if type(msg) is not Notify or msg.commit_ns is None:
                raise ValueError(f"expected a change notify, decoded {type(msg).__name__}")
            return msg.commit_ns

        return encode, decode

    @staticmethod
    def native_get(client: Any) -> Callable[[str, str], Awaitable[Entity | None]] | None:
        """loam's node API under a client of this stack: `get(collection, id)` on its node
        with its context, no conversion into harness Docs (the `native_get` hook)."""
        if not isinstance(client, LoamClient) or getattr(client.node, "local_reads", True) is False:
            return None  # a remote client: no node API in this process to time
        get, ctx = client.node.get, client.ctx
        # a plain closure: the figure times this call (a partial with a keyword costs ~3x more)
        return lambda collection, id: get(collection, id, ctx)

    # --- optional hooks: triggers -------------------------------------------------------

    async def add_trigger(self, durable: int, spec: Any) -> None:
        from loam.triggers import TriggerManager

        mgr = self.triggers.get(durable)
        if mgr is None:
            mgr = self.triggers[durable] = TriggerManager(self._durable_node(durable))
        where = to_loam_query(QuerySpec(spec.where)) if spec.where is not None else ""
        mgr.add_trigger(
            spec.name,
            spec.collection,
            where,
            spec.url,
            timeout_s=spec.timeout_s,
            retries=spec.retries,
            backoff_s=spec.backoff_s,
        )

    @staticmethod
    def webhook_event(body: Mapping[str, Any]) -> Any:
        ch = body["change"]
        return WebhookEvent(
            delivery_id=str(body["delivery_id"]),
            entity_id=ch["id"],
            kind=ch["kind"],
            commit_id=body.get("commit_id"),
            commit_ns=body.get("commit_ns"),
            evaluated_ns=body.get("evaluated_ns"),
            props=ch["after"] if ch.get("after") is not None else ch.get("before"),
        )

    def trigger_stats(self, durable: int) -> dict[str, Any]:
        mgr = self.triggers.get(durable)
        if mgr is None:
            return {}
        st = mgr.stats()
        return {**st["total"], "pending": st["pending"], "in_flight": st["in_flight"]}

    async def drain_triggers(self, durable: int, timeout_s: float) -> bool:
        mgr = self.triggers.get(durable)
        return True if mgr is None else await mgr.drain(timeout_s)

    async def remove_trigger(self, durable: int, name: str) -> None:
        mgr = self.triggers.get(durable)
        if mgr is not None:
            mgr.remove_trigger(name)

    # --- optional hooks: databases ------------------------------------------------------

    def _host(self, durable: int) -> Any:
        host = self.hosts.get(durable)
        if host is not None:
            return host
        from loam.databases import DatabaseHost, storage_factory
        from loam.policy import create_policy

        self._durable_node(durable)
        params = self._engine_params(durable)
        if self.engine_name == "leveldb":
            params["path"] = str(Path(params["path"]).parent / f"databases-{durable}")
        elif self.engine_name == "postgres":
            params.pop("schema", None)
            shared = not (self.pg is not None and self.pg.origin == "throwaway")
            prefix = f"s{self.run_tag}d{durable}_" if shared else f"db{durable}_"
            params["schema_prefix"] = prefix
            if shared:  # drop every schema this host created, at teardown
                names = self._host_names[durable] = []
                self.settings.add_cleanup(
                    lambda dsn=params["dsn"], p=prefix, n=names: [_drop_schema(dsn, p + x) for x in n]
                )
        policy_cfg = dict(self.policy)
        policy = create_policy(policy_cfg.pop("id"), **policy_cfg)
        host = self.hosts[durable] = DatabaseHost(storage_factory(self.engine_name, **params), policy)
        return host

    async def database_client(self, durable: int, database: str, connector: str | None = None) -> LoamClient:
        """A client of database `database` next to durable node `durable` (see the module docstring)."""
        from loam.node.ephemeral import EphemeralNode

        host = self._host(durable)
        node = await host.open_database(database)
        names = self._host_names.get(durable)
        if names is not None and database not in names:
            names.append(database)
        ctx = self.context("ephemeral" if connector else "durable", durable)
        if connector is None:
            client = LoamClient(node, ctx, close_node=False)
        else:
            if connector not in CONNECTORS:
                raise StackError(f"loam has no connector {connector!r} (it has: {', '.join(CONNECTORS)})")
            params = self._link_params(durable, connector)
            server = await self._server(self.host_servers, (durable, connector), host, params)
            e = EphemeralNode(self._new_connector(server, connector, params, database=database))
            await e.start()
            client = LoamClient(e, ctx)
        self.extra_clients.add(client)
        client._on_close = lambda c=client: self._forget(c)
        return client

    async def ephemeral(self, index: int, connector: Any, context: Context) -> LoamClient:
        from loam.node.ephemeral import EphemeralNode

        node = EphemeralNode(connector)
        await node.start()
        return LoamClient(node, context)

    async def close(self) -> None:
        for index in list(
            {*self.triggers, *self.hosts, *(k[0] for k in self.servers), *(k[0] for k in self.host_servers)}
        ):
            await self._close_servers(index)

    def storage_details(self) -> dict[str, Any]:
        return {f"durable-{i}": e.describe() for i, e in self.engines.items()}

    def describe(self) -> dict[str, Any]:
        import loam

        storage: dict[str, Any] = {"engine": self.engine_name}
        if self.engines:
            storage.update(self.engines[min(self.engines)].describe())
            if len(self.engines) > 1:
                storage["nodes"] = self.storage_details()
        if self.pg is not None:
            storage["server"] = self.pg.describe()
        out = {
            "stack": "loam",
            "version": getattr(loam, "__version__", "?"),
            "storage": storage,
            "policy": dict(self.policy),
            "connectors": sorted({k[1] for k in self.servers}),
        }
        if self.remote:
            out["durables"] = {f"durable-{i}": s.where() for i, s in sorted(self.remote.items())}
            out["connectors"] = ["websocket"]
        return out


async def _start_postgres(add_cleanup: Callable[[Callable[[], Any]], None]) -> PostgresHandle:
    """`ensure_postgres()` in a thread, its stop registered as a cleanup whatever happens.

    Ctrl+C cancels the await while the thread goes on starting the cluster; the handle is
    then handed over under a lock: a cluster that starts after the cancellation stops itself,
    one that had started is stopped by the run's cleanups.
    """
    lock = threading.Lock()
    abandoned = False

    def start() -> PostgresHandle:
        pg = ensure_postgres()
        with lock:
            if abandoned:
                pg.stop()
            else:
                add_cleanup(pg.stop)
        return pg

    try:
        return await asyncio.to_thread(start)
    except asyncio.CancelledError:
        with lock:
            abandoned = True
        raise


def _check_placement(settings: StackSettings) -> str | None:
    """The stack parameter that puts durable nodes out of this process, or None."""
    process = settings.params.get("durable_process", False)
    if type(process) is not bool:
        raise ConfigError(
            f"got {process!r:.60}; true runs each durable node in its own `loam serve` process",
            "stack.params.durable_process",
        )
    urls = settings.params.get("durable_urls")
    if urls is None:
        return "durable_process" if process else None
    if process:
        raise ConfigError(
            "durable_urls names servers that already run; durable_process starts them: set one",
            "stack.params.durable_urls",
        )
    durable = settings.topology.get("durable", 1)
    if type(urls) is not list or not all(type(u) is str and re.match(r"^wss?://[^\s/]+", u) for u in urls):
        raise ConfigError(
            f"got {urls!r:.80}; a list of ws://HOST:PORT addresses, one per durable node", "stack.params.durable_urls"
        )
    if len(urls) != durable:
        raise ConfigError(
            f"{len(urls)} address(es) for {durable} durable node(s): give one per durable node",
            "stack.params.durable_urls",
        )
    for i, url in enumerate(urls):  # a server that is not there is a config error, not a failed run
        parts = urlsplit(url)
        try:
            socket.create_connection((parts.hostname or "", parts.port or 80), timeout=3).close()
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"nothing answers at {url} ({getattr(exc, 'strerror', None) or exc}); start the server or fix "
                "the address",
                f"stack.params.durable_urls[{i}]",
            ) from None
    return "durable_urls"


def _drop_schema(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _check_policy(policy: str, config: Mapping[str, Any]) -> None:
    """Build the policy agent (cheap, no I/O) so its own constructor judges its parameters."""
    from loam.errors import ValidationError
    from loam.policy import create_policy

    params = {k: v for k, v in config.items() if k != "id"}
    try:
        create_policy(policy, **params)
    except TypeError as exc:  # an unknown keyword: the constructor names it
        found = re.search(r"argument '(\w+)'", str(exc))
        key = found.group(1) if found else next(iter(params), "id")
        raise ConfigError(f"policy {policy!r} takes no parameter {key!r}", f"policy.params.{key}") from None
    except ValidationError as exc:
        raise ConfigError(str(exc), "policy.params") from None


# Storage parameters the engines take, with the type each must have (before anything opens).
_BOOL, _POS_INT = "a boolean (true or false)", "a whole number >= 1"
_STORAGE_PARAMS: dict[str, dict[str, str]] = {
    "leveldb": {
        "path": "",
        "pool_size": "",
        "sync": _BOOL,
        "create_if_missing": _BOOL,
        "indexes": "",
        "write_buffer_size": _POS_INT,
        "lru_cache_size": _POS_INT,
    },
    "postgres": {
        "dsn": "",
        "pool_size": "",
        "indexes": "",
        "schema": "",
        "synchronous_commit": _BOOL,
        "copy_threshold": _POS_INT,
        "connect_timeout": _POS_INT,
    },
    "memory": {"path": "", "pool_size": "", "dsn": "", "indexes": ""},
}


def _check_storage(engine: str, storage: Mapping[str, Any]) -> None:
    """Every storage parameter known to `engine` and of the right type; `indexes` shaped as
    {collection: [field or [fields]]}; a DSN that libpq can parse."""
    allowed = _STORAGE_PARAMS.get(engine)
    if allowed is None:
        return  # an engine registered by another package checks its own parameters
    for key, value in storage.items():
        if key == "engine":
            continue
        where = f"storage.{key}" if key in ("path", "dsn", "pool_size") else f"storage.params.{key}"
        if key not in allowed:
            raise ConfigError(
                f"unknown {engine} storage parameter{did_you_mean(key, allowed)}; allowed: "
                f"{', '.join(sorted(k for k in allowed if k not in ('path', 'dsn', 'pool_size')))}",
                where,
            )
        want = allowed[key]
        if want == _BOOL and type(value) is not bool:
            raise ConfigError(f"got {value!r:.60}; must be {want}", where)
        if want == _POS_INT and (type(value) is not int or value < 1 or value > 1 << 40):
            raise ConfigError(f"got {value!r:.60}; must be {want} (at most 2**40)", where)
        if key == "indexes":
            _check_indexes(value, where)
        if key == "schema" and (type(value) is not str or not value.isidentifier()):
            raise ConfigError(f"got {value!r:.60}; must be a plain SQL identifier (letters, digits, _)", where)
    dsn = storage.get("dsn")
    if engine == "postgres" and dsn is not None:
        from psycopg.conninfo import conninfo_to_dict

        try:
            conninfo_to_dict(str(dsn))
        except Exception as exc:  # psycopg.ProgrammingError: libpq's own parse error
            raise ConfigError(
                f"not a PostgreSQL connection string libpq can parse ({str(exc).strip():.80}); "
                "e.g. postgresql://user@127.0.0.1:5432/db",
                "storage.dsn",
            ) from None


def _check_indexes(value: Any, where: str) -> None:
    shape = "a mapping {collection: [field, [field, field], ...]}"
    if not isinstance(value, dict):
        raise ConfigError(f"got {value!r:.60}; must be {shape}", where)
    for coll, fields in value.items():
        if not isinstance(coll, str) or not isinstance(fields, list):
            raise ConfigError(f"got {coll!r:.40}: {fields!r:.40}; must be {shape}", f"{where}.{coll}")
        for f in fields:
            ok = isinstance(f, str) or (isinstance(f, list) and f and all(isinstance(x, str) for x in f))
            if not ok:
                raise ConfigError(
                    f"got {f!r:.60}; an index is a field name or a list of field names", f"{where}.{coll}"
                )


stack = LoamStack
"""The entry point object: a StackFactory (class taking StackSettings)."""

__all__ = ["LoamClient", "LoamStack", "stack", "to_loam_query"]
