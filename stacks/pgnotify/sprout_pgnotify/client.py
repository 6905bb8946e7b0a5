"""The harness's Client surface over one durable node: SQL through a connection pool.

Every write is one transaction: the statement returns `txid_current()`, the txid is
registered with `Commits` before COMMIT, and the perf_counter_ns taken when COMMIT returns
is both the WriteAck's `commit_ns` and what notifications of that transaction carry.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Mapping, Sequence

from psycopg.types.json import Jsonb

from sprout_harness.contracts.client import Doc, NotificationCallback, WriteAck
from sprout_harness.contracts.query import QuerySpec, Value
from sprout_pgnotify import queries, schema
from sprout_pgnotify.listener import Commits, Listener, LiveQuery


class NotFound(LookupError):
    """An update or delete named an entity that does not exist."""


class IdGenerator:
    """Unique, roughly time-ordered ids (btree-friendly): ms timestamp, node, counter, random."""

    def __init__(self, node: int) -> None:
        self.node = node
        self.counter = 0
        self.salt = os.urandom(3).hex()

    def next(self) -> str:
        self.counter += 1
        return f"{time.time_ns() // 1_000_000:012x}-{self.node:02x}{self.salt}-{self.counter:08x}"


class PgSubscription:
    """A live query as the harness sees it."""

    def __init__(self, listener: Listener, lq: LiveQuery) -> None:
        self._listener = listener
        self._lq = lq

    @property
    def results(self) -> list[Doc]:
        return self._lq.results

    async def close(self) -> None:
        self._listener.unsubscribe(self._lq)


class PgClient:
    """One pgnotify durable node: tables in `schema_name`, a pool, a listener."""

    def __init__(
        self,
        index: int,
        pool: Any,
        listener: Listener,
        commits: Commits,
        schema_name: str,
        indexes: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.index = index
        self.pool = pool
        self.listener = listener
        self.commits = commits
        self.schema = schema_name
        self.indexes = dict(indexes or {})
        self.ids = IdGenerator(index)
        self._tables: set[str] = set()
        self._table_lock = asyncio.Lock()
        self._closed = False

    # -- tables ------------------------------------------------------------------------------

    async def ensure_collection(self, collection: str) -> str:
        """The collection's table, created (with its trigger) on first use."""
        t = schema.table(self.schema, collection)
        if collection in self._tables:
            return t
        async with self._table_lock:
            if collection not in self._tables:
                async with self.pool.connection() as conn:
                    for stmt in schema.collection_ddl(self.schema, collection, self.indexes.get(collection, ())):
                        await conn.execute(stmt)
                self._tables.add(collection)
        return t

    async def _exists(self, collection: str) -> str | None:
        if collection in self._tables:
            return schema.table(self.schema, collection)
        t = schema.table(self.schema, collection)
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", [t])
            row = await cur.fetchone()
        return t if row and row[0] else None

    # -- writes ------------------------------------------------------------------------------

    async def _write(self, sql: str, params: Sequence[Any], what: str) -> tuple[int, WriteAck]:
        # Pool connections are autocommit: reads take one round trip; writes open a transaction.
        async with self.pool.connection() as conn:
            txid: int | None = None
            try:
                async with conn.transaction():
                    cur = await conn.execute(sql, params)
                    row = await cur.fetchone()
                    if row is None:
                        raise NotFound(f"{what}: no such entity (create it first, or check the id)")
                    txid = int(row[0])
                    self.commits.begin(txid)  # before COMMIT, so the listener knows to wait for it
            except BaseException:
                if txid is not None:
                    self.commits.aborted(txid)
                raise
            ns = time.perf_counter_ns()
            self.commits.committed(txid, ns)
        return txid, WriteAck(commit_ns=ns, commit_id=str(txid))

    async def create(self, collection: str, props: Sequence[Mapping[str, Value]]) -> WriteAck:
        t = await self.ensure_collection(collection)
        ids = [self.ids.next() for _ in props]
        if not ids:
            return WriteAck(commit_ns=time.perf_counter_ns())
        sql = (
            f"WITH ins AS (INSERT INTO {t} (id, props) SELECT * FROM unnest(%s::text[], %s::jsonb[]) RETURNING 1) "
            "SELECT txid_current() FROM (SELECT count(*) FROM ins) n"
        )
        _, ack = await self._write(sql, [ids, [Jsonb(dict(p)) for p in props]], f"create in {collection}")
        return WriteAck(commit_ns=ack.commit_ns, ids=tuple(ids), commit_id=ack.commit_id)

    async def update(self, collection: str, id: str, props: Mapping[str, Value]) -> WriteAck:
        t = await self.ensure_collection(collection)
        sql = f"UPDATE {t} SET props = props || %s::jsonb WHERE id = %s RETURNING txid_current()"
        return (await self._write(sql, [Jsonb(dict(props)), id], f"update {collection}/{id}"))[1]

    async def delete(self, collection: str, id: str) -> WriteAck:
        t = await self.ensure_collection(collection)
        sql = f"DELETE FROM {t} WHERE id = %s RETURNING txid_current()"
        return (await self._write(sql, [id], f"delete {collection}/{id}"))[1]

    # -- reads -------------------------------------------------------------------------------

    async def get(self, collection: str, id: str) -> Doc | None:
        t = await self._exists(collection)
        if t is None:
            return None
        async with self.pool.connection() as conn:
            cur = await conn.execute(f"SELECT props FROM {t} WHERE id = %s", [id])
            row = await cur.fetchone()
        return None if row is None else Doc(id, row[0])

    async def fetch(self, collection: str, query: QuerySpec) -> list[Doc]:
        t = await self._exists(collection)
        if t is None:
            return []
        sql, params = queries.select_sql(t, query)
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return [Doc(i, p) for i, p in await cur.fetchall()]

    async def subscribe(self, collection: str, query: QuerySpec, callback: NotificationCallback) -> PgSubscription:
        await self.ensure_collection(collection)
        lq = await self.listener.subscribe(collection, query, callback)
        return PgSubscription(self.listener, lq)

    # -- lifecycle ---------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "collections": sorted(self._tables),
            "notifications_received": self.listener.notifications,
            "listener_errors": self.listener.errors[:5],
        }

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.listener.close()
        await self.pool.close()
