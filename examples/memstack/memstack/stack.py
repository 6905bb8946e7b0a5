"""memstack as a sprout stack: every durable node is a dict in this process, an ephemeral node
is a second client of its durable node's dict (over the `inprocess` connector), live queries
are re-evaluated on each commit that touches them and notify asynchronously."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from typing import Any, Iterator, Mapping, Sequence

from memstack import __version__
from memstack.query import matches, run_query
from sprout_harness.contracts import (
    Capabilities,
    ConfigError,
    Doc,
    Link,
    Notification,
    NotificationCallback,
    QuerySpec,
    StackSettings,
    Unsupported,
    WriteAck,
)
from sprout_harness.contracts.variants import BenchVariant, QueryFields

CONNECTOR = "inprocess"


class NotFound(LookupError):
    """An update or delete named an entity that does not exist."""


class Store:
    """One durable node's (or one database's) data: collection -> id -> properties."""

    def __init__(self, ids: Iterator[int]) -> None:
        self.data: dict[str, dict[str, dict[str, Any]]] = {}
        self.live: set[LiveQuery] = set()
        self.ids = ids  # one counter for the whole stack: ids are unique across nodes and databases
        self.tasks: set[asyncio.Future[Any]] = set()  # callbacks that returned an awaitable

    def rows(self, collection: str) -> dict[str, dict[str, Any]]:
        return self.data.setdefault(collection, {})

    def new_id(self) -> str:
        return f"{next(self.ids):012d}"  # zero-padded: string order is creation order

    def commit(self, collection: str, ids: Sequence[str]) -> int:
        """The write is durable now: stamp it and tell the live queries it may concern."""
        commit_ns = time.perf_counter_ns()
        for live in list(self.live):
            if live.collection == collection:
                live.changed(ids, commit_ns)
        return commit_ns


class LiveQuery:
    """A subscription: `results` is the query's current result (the window, with a LIMIT)."""

    def __init__(self, store: Store, collection: str, query: QuerySpec, callback: NotificationCallback) -> None:
        self.store, self.collection, self.query, self.callback = store, collection, query, callback
        self.latest = run_query(store.rows(collection), query)  # as of the last commit
        self.results: list[Doc] = self.latest  # as of the last notification delivered
        self.closed = False

    def changed(self, ids: Sequence[str], commit_ns: int) -> None:
        rows = self.store.rows(self.collection)
        old = {d.id: d for d in self.latest}
        if not any(i in old or (i in rows and matches(self.query.where, i, rows[i])) for i in ids):
            return  # the commit touched neither a member nor an entity that matches now
        new = run_query(rows, self.query)  # in full: this also refills a LIMIT window
        now = {d.id for d in new}
        self.latest = new
        note = Notification(
            commit_ns=commit_ns,
            added=tuple(d for d in new if d.id not in old),
            updated=tuple(d for d in new if d.id in old and d.props != old[d.id].props),
            removed=tuple(i for i in old if i not in now),
        )
        if note.added or note.updated or note.removed:
            asyncio.get_running_loop().call_soon(self.deliver, new, note)  # after the writer's commit

    def deliver(self, results: list[Doc], note: Notification) -> None:
        if self.closed:
            return
        self.results = results  # before the callback: it may read `results`
        out = self.callback(note)
        if inspect.isawaitable(out):
            task = asyncio.ensure_future(out)
            self.store.tasks.add(task)
            task.add_done_callback(self.store.tasks.discard)

    async def close(self) -> None:
        self.closed = True
        self.store.live.discard(self)


class MemClient:
    """One node: the harness's client surface over a `Store`."""

    def __init__(self, store: Store, node: str) -> None:
        self.store, self.node = store, node

    async def create(self, collection: str, props: Sequence[Mapping[str, Any]]) -> WriteAck:
        rows = self.store.rows(collection)
        ids = tuple(self.store.new_id() for _ in props)
        for id_, p in zip(ids, props):
            rows[id_] = dict(p)
        return WriteAck(self.store.commit(collection, ids), ids)

    async def get(self, collection: str, id: str) -> Doc | None:
        row = self.store.rows(collection).get(id)
        return None if row is None else Doc(id, dict(row))

    async def fetch(self, collection: str, query: QuerySpec) -> list[Doc]:
        return run_query(self.store.rows(collection), query)

    async def update(self, collection: str, id: str, props: Mapping[str, Any]) -> WriteAck:
        row = self.store.rows(collection).get(id)
        if row is None:
            raise NotFound(f"update {collection}/{id}: no such entity")
        row.update(props)
        return WriteAck(self.store.commit(collection, (id,)))

    async def delete(self, collection: str, id: str) -> WriteAck:
        if self.store.rows(collection).pop(id, None) is None:
            raise NotFound(f"delete {collection}/{id}: no such entity")
        return WriteAck(self.store.commit(collection, (id,)))

    async def subscribe(self, collection: str, query: QuerySpec, callback: NotificationCallback) -> LiveQuery:
        live = LiveQuery(self.store, collection, query, callback)
        self.store.live.add(live)
        return live


class MemStack:
    """The stack factory: the harness builds one per run from the config's `StackSettings`."""

    name = "memstack"

    @classmethod
    def validate(cls, settings: StackSettings) -> None:
        """Refuse settings memstack would otherwise ignore (`sprout validate` and `run` call this)."""
        engine = settings.storage.get("engine", "memory")
        if engine != "memory":
            raise ConfigError(
                f"got {engine!r}; memstack keeps its data in memory: set storage.engine: memory", "storage.engine"
            )
        for key in settings.params:
            raise ConfigError("memstack takes no stack.params", f"stack.params.{key}")

    @classmethod
    def benchmark_variants(cls, query_fields: QueryFields) -> list[BenchVariant]:
        """How the asv suite benchmarks memstack (docs/asv.md): no indexes to declare."""
        return [BenchVariant("memstack", storage={"engine": "memory"}, connectors=(CONNECTOR,))]

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.ids = itertools.count()
        self.stores: list[Store] = []  # one per durable node
        self.databases: dict[tuple[int, str], Store] = {}

    def capabilities(self) -> Capabilities:
        return Capabilities(subscribe=True, live_limit=True, ephemeral=True, connectors=(CONNECTOR,))

    async def start(self) -> None:
        pass  # nothing shared to start: a server or a temp dir would start here

    def context(self, role: str, index: int) -> str:
        return f"{role}-{index}"  # memstack has no users or policies: the node's name is its identity

    async def durable(self, index: int, context: str) -> MemClient:
        self.stores.append(Store(self.ids))
        return MemClient(self.stores[index], context)

    async def connector(self, link: Link, durable: MemClient) -> Store:
        return durable.store  # `inprocess`: the ephemeral reaches its durable node's store directly

    async def ephemeral(self, index: int, connector: Store, context: str) -> MemClient:
        return MemClient(connector, context)

    async def close(self) -> None:
        for store in [*self.stores, *self.databases.values()]:
            for live in list(store.live):
                await live.close()

    def describe(self) -> dict[str, Any]:
        return {
            "stack": self.name,
            "version": __version__,
            "storage": {"engine": "memory", "durable_nodes": len(self.stores)},
        }

    # -- optional hooks --------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Per-node figures for the live monitor (called from its thread: read only)."""
        return {
            f"durable-{i}": {"entities": sum(len(rows) for rows in list(s.data.values())), "live_queries": len(s.live)}
            for i, s in enumerate(self.stores)
        }

    async def open_connection(self, durable: int, connector: str) -> MemClient:
        """A new client of durable node `durable` (the realtime suite opens many)."""
        if connector != CONNECTOR:
            raise Unsupported(f"memstack has no {connector!r} connector, only {CONNECTOR!r}")
        return MemClient(self.stores[durable], f"connection-{durable}")

    async def database_client(self, durable: int, database: str, connector: str | None) -> MemClient:
        """A client of database `database` next to durable node `durable` (created on first use)."""
        if connector not in (None, CONNECTOR):
            raise Unsupported(f"memstack has no {connector!r} connector, only {CONNECTOR!r}")
        store = self.databases.setdefault((durable, database), Store(self.ids))
        return MemClient(store, f"{database}@durable-{durable}")
