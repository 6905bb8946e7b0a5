"""The ephemeral node: a client-side cache and live-query mirror of a durable node.

It is not the authority. Commits are stamped here (own Lamport clock, which observes
every clock seen from the durable node, and own node id), sent as a `Transaction`
through the connector and acknowledged by the durable node: the returned CommitRecord
is the durable node's, and an ack means the write is in its state. A commit stamped
below a write the durable node already holds (this clock was behind) is refused with
`stale_clock`; it is re-stamped above the durable clock and re-sent (`stale_retries`). Reads go to the durable node unless a live query held here
already has the complete, current answer (see `_covering`).

A live query here is backed by a subscription on the durable node. This node keeps
the window, applies each `notify` to it and writes the window's entities into the
cache (tombstoning them when they leave every window). A LIMIT window is refilled by
the durable node: the refill arrives inside the same `notify` (one message), it is
never re-read from here. After a reconnect every live query is re-subscribed, its
result replaced and a `kind="resubscribed"` notification carries the difference.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import time
from bisect import bisect_left
from typing import Any, Callable, Sequence

from loam.errors import NodeClosedError, StaleClockError, ValidationError
from loam.live.stream import NotificationStream
from loam.model import (
    CommitRecord,
    Context,
    Create,
    Delete,
    Entity,
    EntityState,
    IdGenerator,
    Notification,
    NotificationCallback,
    Op,
    Scalar,
    Transaction,
    Update,
    check_props,
    new_node_id,
)
from loam.node.clock import LamportClock
from loam.protocol import messages as m
from loam.protocol.matching import ConnectionLost
from loam.query.ast import Query
from loam.query.order import sort_key_func
from loam.query.paging import coerce_query
from loam.storage import create_engine
from loam.storage.base import StorageEngine, WriteBatch
from loam.transport.client import Connector

log = logging.getLogger("loam.ephemeral")
_perf_ns = time.perf_counter_ns
_CACHE_STAMP = (0, "cache")  # cache states are copies of the durable node's values, not LWW writes


def _key_func(query: Query) -> Callable[[Entity], Any]:
    return sort_key_func(query.order_by)


class EphemeralLiveQuery(NotificationStream):
    """A live query mirrored from the durable node (implements loam.node.api.LiveQuery).

    `id` is local and stays the same across reconnects; `remote_id` is the durable
    node's live query id for the current connection.
    """

    def __init__(self, node: EphemeralNode, id: str, collection: str, query: Query, ctx: Context):
        self.node = node
        self.id = id
        self.collection = collection
        self.query = query
        self.ctx = ctx
        self.remote_id: str | None = None
        self.closed_reason: str | None = None
        self.stale = False  # connection lost: the window may be behind until resubscribed
        self.notifications = 0
        self._key = _key_func(query)
        self._keys: list[Any] = []
        self._ents: list[Entity] = []
        self._key_of: dict[str, Any] = {}
        self._queue: asyncio.Queue[Notification] | None = None
        self._listeners: list[NotificationCallback] = []

    @property
    def results(self) -> list[Entity]:
        return list(self._ents)

    def __contains__(self, id: str) -> bool:
        return id in self._key_of

    def add_listener(self, callback: NotificationCallback) -> None:
        self._listeners.append(callback)

    async def close(self) -> None:
        """Unsubscribe on the durable node (if connected) and end this query locally."""
        if self.closed_reason is not None:
            return
        remote = self.remote_id
        self._shutdown("unsubscribed")
        if remote is not None and self.node.connector.connected:
            try:
                await self.node.connector.request(m.Unsubscribe(0, remote))
            except (ConnectionLost, NodeClosedError, TimeoutError):
                pass  # the server releases it when the connection goes

    # --- applying remote changes ---------------------------------------------

    def _load(self, entities: list[Entity]) -> None:
        key = self._key
        self._ents = list(entities)
        self._keys = [key(e) for e in self._ents]
        self._key_of = {e.id: k for e, k in zip(self._ents, self._keys)}

    def _remove(self, id: str) -> Entity | None:
        k = self._key_of.pop(id, None)
        if k is None:
            return None
        i = bisect_left(self._keys, k)
        self._keys.pop(i)
        return self._ents.pop(i)

    def _upsert(self, e: Entity) -> None:
        k = self._key(e)
        old = self._key_of.get(e.id)
        if old is not None and old == k:  # same place in the order: replace in place
            self._ents[bisect_left(self._keys, k)] = e
            return
        self._remove(e.id)
        i = bisect_left(self._keys, k)
        self._keys.insert(i, k)
        self._ents.insert(i, e)
        self._key_of[e.id] = k

    def _apply(self, msg: m.Notify) -> Notification:
        for id in msg.removed:
            self._remove(id)
        for e in msg.added:
            self._upsert(e)
        for e in msg.updated:
            self._upsert(e)
        return Notification(
            self.id,
            msg.commit_id,
            msg.commit_ns,
            _perf_ns(),
            tuple(msg.added),
            tuple(msg.updated),
            tuple(msg.removed),
            gap_filled=msg.gap_filled,
        )

    def _reset(self, entities: list[Entity]) -> Notification:
        """Replace the result (after a resubscribe) and describe the difference."""
        old = {e.id: e for e in self._ents}
        self._load(entities)
        added = tuple(e for e in entities if e.id not in old)
        updated = tuple(e for e in entities if e.id in old and old[e.id].props != e.props)
        new_ids = self._key_of
        removed = tuple(i for i in old if i not in new_ids)
        return Notification(self.id, None, None, _perf_ns(), added, updated, removed, kind="resubscribed")

    def _deliver(self, n: Notification) -> None:
        self.notifications += 1
        if self._queue is not None:
            self._queue.put_nowait(n)
        for cb in self._listeners:
            try:
                r = cb(n)
                if r is not None and inspect.isawaitable(r):
                    asyncio.ensure_future(r)
            except Exception:
                log.exception("live query %s: listener %r failed", self.id, cb)

    def _shutdown(self, reason: str) -> None:
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        self.node._release(self)
        self._deliver(Notification(self.id, None, None, _perf_ns(), kind="closed", reason=reason))
        self._listeners = []
        self._load([])

    def __repr__(self) -> str:
        return f"<EphemeralLiveQuery {self.id} {self.collection} {self.query.text or self.query!r} n={len(self._ents)}>"


class EphemeralNode:
    """Implements loam.node.api.Node with role "ephemeral" (see the module docstring).

    `connector` is an unconnected `InProcessConnector` / `WebSocketConnector`; `cache`
    a storage engine (memory by default; leveldb works), opened and closed by the node.
    `local_reads=False` sends every get and fetch to the durable node even when a live
    query here already holds the answer: the node is then a plain remote client of it.
    """

    role = "ephemeral"

    def __init__(
        self,
        connector: Connector,
        cache: StorageEngine | None = None,
        node_id: str | None = None,
        *,
        commit_retries: int = 3,
        stale_retries: int = 16,
        local_reads: bool = True,
    ):
        if cache is None:
            cache = create_engine("memory")
        self.connector = connector
        self.cache = cache
        self.node_id = node_id or new_node_id()
        self.commit_retries = commit_retries
        self.stale_retries = stale_retries
        self.stale_clock_retries = 0  # commits re-stamped after a stale_clock refusal (all commits)
        self.clock = LamportClock()
        self.remote_node_id: str | None = None
        self._ids = IdGenerator()
        self._seq = itertools.count(1)
        self._qseq = itertools.count(1)
        self._live: dict[str, EphemeralLiveQuery] = {}  # local id -> query
        self._by_remote: dict[str, EphemeralLiveQuery] = {}
        self._orphans: dict[str, list[m.Notify]] = {}  # notifies that beat their `subscribed` reply here
        self._subscribing = 0  # subscribe requests in flight (only then can a notify be early)
        self._refs: dict[tuple[str, str], int] = {}  # (collection, id) -> windows holding it
        self._started = False
        self._closed_reason: str | None = None
        self.local_reads = local_reads
        self.reads_local = 0
        self.reads_remote = 0

    # --- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self.cache.open()
        self.connector.on_notify = self._on_notify
        self.connector.on_reconnect = self._resubscribe
        self.connector.on_lost = self._on_lost
        try:
            welcome = await self.connector.connect(self.node_id)
        except BaseException:
            self.cache.close()
            raise
        self.remote_node_id = welcome.node_id
        self.clock.observe(welcome.clock)
        self._started = True

    async def close(self, reason: str = "node closed") -> None:
        if self._closed_reason is not None:
            return
        self._closed_reason = reason
        for lq in list(self._live.values()):
            lq._shutdown(reason)
        await self.connector.close()
        self.cache.close()

    async def __aenter__(self) -> EphemeralNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed_reason is not None:
            raise NodeClosedError(f"ephemeral node {self.node_id} is closed: {self._closed_reason}")
        if not self._started:
            raise NodeClosedError(f"ephemeral node {self.node_id} is not started; await node.start() first")

    # --- writes --------------------------------------------------------------

    async def commit(self, ops: Sequence[Op], ctx: Context) -> CommitRecord:
        """Stamp locally, forward to the durable node, return its CommitRecord.

        A commit whose connection drops is re-sent (same commit_id, so the durable node
        applies it once) after the reconnect, up to `commit_retries` times. A commit
        refused as stale (its stamp would lose LWW to a write already stored) is
        re-stamped above the durable clock and re-sent, up to `stale_retries` times (the
        k-th re-stamp is 2**(k-1) above it, so racing writers cannot starve one another);
        after that StaleClockError is raised (the write was not applied). The refused
        copy was not recorded, so the re-stamped one keeps the commit_id.
        """
        self._check_open()
        ops = tuple(ops)
        if not ops:
            raise ValidationError("a commit needs at least one operation")
        for op in ops:
            if isinstance(op, (Create, Update)):
                check_props(op.props)
            elif not isinstance(op, Delete):
                raise ValidationError(f"unknown operation {type(op).__name__}; use Create, Update or Delete")
        self.clock.observe(self.connector.remote_clock)
        tx = Transaction(f"{self.node_id}:{next(self._seq)}", self.node_id, self.clock.tick(), ops)
        attempt = stale = 0
        while True:
            try:
                ack = await self.connector.request(m.Commit(0, tx, ctx))
                break
            except ConnectionLost:
                attempt += 1
                if attempt > self.commit_retries or not self.connector.reconnect:
                    raise
            except StaleClockError as exc:
                stale += 1
                if stale > self.stale_retries:
                    raise
                self.stale_clock_retries += 1
                # Writers racing on one entity all aim at durable clock + 1 and the lowest
                # node id keeps losing the tie: each further refusal doubles the lead.
                self.clock.observe(max(exc.clock, self.connector.remote_clock) + (1 << (stale - 1)) - 1)
                tx = Transaction(tx.commit_id, self.node_id, self.clock.tick(), ops)
        self.clock.observe(max(ack.record.clock, ack.clock))
        return ack.record

    async def create(
        self, collection: str, props: Sequence[dict[str, Scalar]], ctx: Context
    ) -> tuple[list[str], CommitRecord]:
        ids = [self._ids.new() for _ in props]
        rec = await self.commit([Create(collection, i, dict(p)) for i, p in zip(ids, props)], ctx)
        return ids, rec

    async def update(self, collection: str, id: str, props: dict[str, Scalar], ctx: Context) -> CommitRecord:
        return await self.commit([Update(collection, id, dict(props))], ctx)

    async def delete(self, collection: str, id: str, ctx: Context) -> CommitRecord:
        return await self.commit([Delete(collection, id)], ctx)

    # --- reads ---------------------------------------------------------------

    def _covering(self, collection: str, query: Query | None) -> EphemeralLiveQuery | None:
        """A live query here whose result answers this read completely and currently.

        For a fetch: one with the same query text (its window *is* the answer), or one
        without LIMIT whose predicate is the same or absent (the cache then holds every
        match: the answer is the cache's filtered, re-ordered, limited view). For a get
        (`query` None): one without LIMIT or predicate. Only live queries with the same
        context qualify (policies may filter per user).
        """
        for lq in self._live.values():
            if lq.collection != collection or lq.stale or lq.remote_id is None:
                continue
            q = lq.query
            if query is None:
                if q.where is None and q.limit is None:
                    return lq
            elif (query.text is not None and query.text == q.text) or (
                q.limit is None and (q.where is None or q.where == query.where)
            ):
                return lq
        return None

    async def get(self, collection: str, id: str, ctx: Context) -> Entity | None:
        self._check_open()
        if self.local_reads:
            if self._refs.get((collection, id), 0) > 0 and self._held_fresh(collection, id, ctx):
                self.reads_local += 1
                return self.cache.get(collection, id)
            cov = self._covering(collection, None)
            if cov is not None and cov.ctx == ctx:
                self.reads_local += 1
                return self.cache.get(collection, id)
        self.reads_remote += 1
        reply = await self.connector.request(m.Get(0, collection, id, ctx))
        return reply.entity

    def _held_fresh(self, collection: str, id: str, ctx: Context) -> bool:
        # An entity in a live window is current if a non-stale query with this context holds it.
        return any(
            lq.collection == collection and not lq.stale and lq.remote_id is not None and lq.ctx == ctx and id in lq
            for lq in self._live.values()
        )

    async def fetch(self, collection: str, query: str | Query, ctx: Context) -> list[Entity]:
        self._check_open()
        q = coerce_query(query)
        cov = self._covering(collection, q) if self.local_reads else None
        if cov is not None and cov.ctx == ctx:
            self.reads_local += 1
            if q.text is not None and q.text == cov.query.text:
                return cov.results
            return self.cache.fetch(collection, q)
        self.reads_remote += 1
        reply = await self.connector.request(m.Fetch(0, collection, q.text if q.text is not None else q, ctx))
        return reply.entities

    # --- live queries ----------------------------------------------------------

    async def subscribe(
        self, collection: str, query: str | Query, ctx: Context, callback: NotificationCallback | None = None
    ) -> EphemeralLiveQuery:
        self._check_open()
        q = coerce_query(query)
        lq = EphemeralLiveQuery(self, f"{self.node_id}:q{next(self._qseq)}", collection, q, ctx)
        if callback is not None:
            lq.add_listener(callback)
        else:
            lq._queue = asyncio.Queue()
        self._subscribing += 1
        try:
            reply = await self.connector.request(m.Subscribe(0, collection, q.text if q.text is not None else q, ctx))
        finally:
            self._subscribing -= 1
        # Nothing awaits from here to the end: notifies read meanwhile are in _orphans.
        self.clock.observe(reply.clock)
        self._live[lq.id] = lq
        self._bind(lq, reply.query_id)
        lq._load(reply.results)
        self._cache_add(collection, reply.results)
        self._drain_orphans(lq)
        return lq

    def _bind(self, lq: EphemeralLiveQuery, remote_id: str) -> None:
        if lq.remote_id is not None:
            self._by_remote.pop(lq.remote_id, None)
        lq.remote_id = remote_id
        lq.stale = False
        self._by_remote[remote_id] = lq

    def _drain_orphans(self, lq: EphemeralLiveQuery) -> None:
        for msg in self._orphans.pop(lq.remote_id or "", ()):
            self._on_notify(msg)
        if not self._subscribing:
            self._orphans.clear()

    def _release(self, lq: EphemeralLiveQuery) -> None:
        self._live.pop(lq.id, None)
        if lq.remote_id is not None:
            self._by_remote.pop(lq.remote_id, None)
            self._orphans.pop(lq.remote_id, None)
        self._cache_drop(lq.collection, [e.id for e in lq._ents])

    def _on_notify(self, msg: m.Notify) -> None:
        lq = self._by_remote.get(msg.query_id)
        if lq is None:
            if self._subscribing:  # its `subscribed` reply was read but not yet handled
                self._orphans.setdefault(msg.query_id, []).append(msg)
            return  # else: a query unsubscribed here whose last notifies were in flight
        if msg.kind == "closed":
            lq._shutdown(msg.reason or "closed by the durable node")
            return
        clock = self.clock
        if msg.clock > clock.value:  # clock.observe(msg.clock), inline
            clock.value = msg.clock
        # Window membership before the change, for the ids it names only (not a copy of
        # the whole window per notification; most notifies add or remove nothing).
        window = lq._key_of
        entering = [e.id for e in msg.added if e.id not in window] if msg.added else ()
        leaving = [i for i in msg.removed if i in window] if msg.removed else ()
        n = lq._apply(msg)
        # Listeners first, then the cache: the live query's result is what they are told
        # about, and no cache read can run in between (reads are coroutines; sync listeners
        # cannot await one). A listener that ended the query has released its window.
        lq._deliver(n)
        if lq.closed_reason is not None:
            return
        window = lq._key_of
        self._cache_add(
            lq.collection,
            [e for e in (*msg.added, *msg.updated) if e.id in window],
            new_ids=[i for i in entering if i in window],
        )
        if leaving:
            self._cache_drop(lq.collection, [i for i in leaving if i not in window])

    def _on_lost(self, reason: str) -> None:
        for lq in self._live.values():
            lq.stale = True
        self._orphans.clear()

    async def _resubscribe(self) -> None:
        """After a reconnect: subscribe every live query again and report the difference."""
        for lq in list(self._live.values()):
            if lq.closed_reason is not None:
                continue
            self._subscribing += 1
            try:
                q = lq.query
                reply = await self.connector.request(
                    m.Subscribe(0, lq.collection, q.text if q.text is not None else q, lq.ctx)
                )
            except Exception as exc:
                log.warning("resubscribing %s failed: %s", lq.id, exc)
                if not isinstance(exc, (ConnectionLost, TimeoutError)):
                    lq._shutdown(f"resubscribe failed: {exc}")
                continue  # a lost connection triggers another reconnect and resubscribe
            finally:
                self._subscribing -= 1
            self.clock.observe(reply.clock)
            if lq.closed_reason is not None:  # closed here while the resubscribe was in flight
                asyncio.ensure_future(self._unsubscribe_quietly(reply.query_id))
                continue
            old_ids = set(lq._key_of)
            self._bind(lq, reply.query_id)
            n = lq._reset(reply.results)
            new_ids = set(lq._key_of)
            self._cache_add(lq.collection, reply.results, new_ids=[i for i in new_ids if i not in old_ids])
            self._cache_drop(lq.collection, [i for i in old_ids if i not in new_ids])
            lq._deliver(n)
            self._drain_orphans(lq)

    async def _unsubscribe_quietly(self, remote_id: str) -> None:
        try:
            await self.connector.request(m.Unsubscribe(0, remote_id))
        except Exception:
            pass  # released with the connection anyway

    # --- cache -----------------------------------------------------------------

    def _cache_add(self, collection: str, entities: Sequence[Entity], new_ids: Sequence[str] | None = None) -> None:
        """Write current values; `new_ids` (default: all) gained one more window holding them."""
        if not entities and not new_ids:
            return
        refs = self._refs
        for i in new_ids if new_ids is not None else [e.id for e in entities]:
            refs[(collection, i)] = refs.get((collection, i), 0) + 1
        if entities:
            self.cache.apply(
                WriteBatch(
                    # No copy of the props here: an engine copies (or serialises) what it stores.
                    states=[(collection, EntityState(e.id, e.props, _CACHE_STAMP)) for e in entities]
                )
            )

    def _cache_drop(self, collection: str, ids: Sequence[str]) -> None:
        """One window fewer holds each id; ids no window holds are tombstoned in the cache."""
        gone = []
        refs = self._refs
        for i in ids:
            k = (collection, i)
            n = refs.get(k, 0) - 1
            if n > 0:
                refs[k] = n
            else:
                refs.pop(k, None)
                gone.append(i)
        if gone and self._closed_reason is None:
            self.cache.apply(
                WriteBatch(states=[(collection, EntityState(i, {}, _CACHE_STAMP, deleted=_CACHE_STAMP)) for i in gone])
            )

    # --- reporting -------------------------------------------------------------

    def connector_stats(self) -> dict[str, Any]:
        """One-way delays (ns) of received messages per type, sent counts, reconnects, local/remote reads."""
        s = self.connector.connector_stats()
        s["reads_local"] = self.reads_local
        s["reads_remote"] = self.reads_remote
        s["stale_clock_retries"] = self.stale_clock_retries
        return s

    def stats(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "node_id": self.node_id,
            "live_queries": len(self._live),
            "cached_entities": len(self._refs),
            "clock": self.clock.value,
            "stale_clock_retries": self.stale_clock_retries,
        }
