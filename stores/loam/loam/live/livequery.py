"""A live query: an initial result plus a notification for every commit that changes it.

`WindowedLiveQuery` is transport-free; a node owns it and feeds it commits through
`on_commit(record, changes)` (normally from `loam.live.feed.CommitFeed`). Its data
source is anything with the storage engine's `fetch(collection, query, after=, limit=)`
and a `blocking` flag — the durable node passes its storage engine; an ephemeral node
can pass its cache.

Processing one commit: every change's new value is tested against the predicate and
the read policy and applied to the `Window`; if a LIMIT window lost members it is
refilled once with `source.fetch(after=boundary, limit=missing)` (never by re-running
the whole query); then one `Notification` with the net diff is emitted (none when the
result did not change).

Delivery: notifications go to an `asyncio.Queue` read by `next()` / `async for`, and
to listeners. Sync listeners run inline in the fan-out path (keep them cheap); async
listeners are awaited in order by one task per live query. When a `callback` is given
at subscribe time the queue is not filled until `next()` is first called, so a
callback-only subscriber does not accumulate notifications.

With a non-blocking source everything runs inline in the committing coroutine, so
`results` is exact as soon as `commit` returns. With a blocking source (PostgreSQL)
refills run in a thread and commits are processed in order by a per-query task.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import time
from collections import deque
from typing import Any, Callable, Protocol

from loam.live.stream import NotificationStream
from loam.live.window import Window
from loam.model import Change, CommitRecord, Entity, Notification, NotificationCallback
from loam.query.ast import Expr, Query
from loam.query.paging import fetch_filtered

log = logging.getLogger(__name__)
_perf_ns = time.perf_counter_ns


class Source(Protocol):
    blocking: bool

    def fetch(
        self, collection: str, query: Query, *, after: Entity | None = None, limit: int | None = None
    ) -> list[Entity]: ...


class WindowedLiveQuery(NotificationStream):
    """Implements `loam.node.api.LiveQuery`; see the module docstring."""

    def __init__(
        self,
        *,
        id: str,
        collection: str,
        query: Query,
        source: Source,
        key: Callable[[Entity], Any],
        predicate: Callable[[Entity], bool] | None,
        readable: Callable[[Entity], bool] | None,
        on_release: Callable[[WindowedLiveQuery], None],
        callback: NotificationCallback | None = None,
    ) -> None:
        self.id = id
        self.collection = collection
        self.query = query
        self.closed_reason: str | None = None
        self.notifications = 0  # emitted so far
        self.gap_fills = 0  # refills that found entities
        self._source = source
        self._blocking = bool(getattr(source, "blocking", False))
        self._predicate = predicate
        self._readable = readable
        self._on_release = on_release
        self._window = Window(key, query.limit)
        self._queue: asyncio.Queue[Notification] | None = None if callback is not None else asyncio.Queue()
        self._sync_listeners: list[Callable[[Notification], Any]] = []
        self._async_listeners: list[NotificationCallback] = []
        # Created on first use: an idle live query should cost its window and little else,
        # and an empty deque is ~600 bytes.
        self._async_pending: deque[Notification] | None = None
        self._async_task: asyncio.Task[None] | None = None
        self._pending: deque[tuple[CommitRecord, list[Change]]] | None = None  # blocking sources
        self._worker: asyncio.Task[None] | None = None
        self._loading = False
        if callback is not None:
            self.add_listener(callback)

    # --- LiveQuery surface ------------------------------------------------

    @property
    def where(self) -> Expr | None:
        return self.query.where

    @property
    def results(self) -> list[Entity]:
        return self._window.results

    @property
    def complete(self) -> bool:
        """True when the result holds every match (always without LIMIT)."""
        return self._window.complete

    def add_listener(self, callback: NotificationCallback) -> None:
        if inspect.iscoroutinefunction(callback):
            self._async_listeners.append(callback)
        else:
            self._sync_listeners.append(callback)

    async def close(self) -> None:
        """Unsubscribe: leaves the registry, delivers kind="closed" (reason "unsubscribed")."""
        self.shutdown("unsubscribed")

    # --- node side ---------------------------------------------------------

    def matches(self, e: Entity | None) -> Entity | None:
        if e is None:
            return None
        if self._predicate is not None and not self._predicate(e):
            return None
        if self._readable is not None and not self._readable(e):
            return None
        return e

    def load_sync(self) -> None:
        """Initial result from a non-blocking source (call before registering; nothing can interleave)."""
        rows, exhausted = fetch_filtered(
            self._source.fetch, self.collection, self.query, limit=self.query.limit, readable=self._readable
        )
        self._window.load(rows, exhausted)

    async def load_async(self) -> None:
        """Initial result from a blocking source; call after registering: commits arriving
        meanwhile are queued and applied afterwards, in order."""
        self._loading = True
        try:
            rows, exhausted = await asyncio.to_thread(
                fetch_filtered,
                self._source.fetch,
                self.collection,
                self.query,
                limit=self.query.limit,
                readable=self._readable,
            )
            self._window.load(rows, exhausted)
        finally:
            self._loading = False
        if self._pending and self._worker is None and self.closed_reason is None:
            self._worker = asyncio.get_running_loop().create_task(self._drain())

    def on_commit(self, record: CommitRecord, changes: list[Change]) -> None:
        """Feed one commit's changes that may concern this query (called by the fan-out)."""
        if self.closed_reason is not None:
            return
        if not self._blocking:
            self._apply(changes)
            w = self._window
            if w.limit is not None and not w.complete:  # Window.missing() can be > 0
                missing = w.missing()
                if missing:
                    self._refill_sync(missing)
            self._emit(record)
            return
        if self._pending is None:
            self._pending = deque()
        self._pending.append((record, changes))
        if self._worker is None and not self._loading:
            self._worker = asyncio.get_running_loop().create_task(self._drain())

    async def settle(self) -> None:
        """Wait until every commit handed to this query so far is processed (blocking sources)."""
        while self._worker is not None:
            worker = self._worker
            try:
                await asyncio.shield(worker)
            except asyncio.CancelledError:
                # shutdown() cancels the worker (e.g. an unsubscribe while a commit settles);
                # that ends the query, not the committing caller. Our own cancellation propagates.
                task = asyncio.current_task()
                if not worker.cancelled() or (task is not None and task.cancelling()):
                    raise

    def _apply(self, changes: list[Change]) -> None:
        w = self._window
        pred, readable = self._predicate, self._readable
        for ch in changes:
            e = ch.after  # self.matches(ch.after), inline (once per change per query)
            if e is not None and ((pred is not None and not pred(e)) or (readable is not None and not readable(e))):
                e = None
            w.apply(ch.id, e)

    def _refill_sync(self, missing: int) -> None:
        w = self._window
        rows, exhausted = fetch_filtered(
            self._source.fetch,
            self.collection,
            self.query,
            after=w.boundary(),
            limit=missing,
            readable=self._readable,
        )
        w.extend(rows, exhausted)

    async def _drain(self) -> None:
        try:
            while self._pending and self.closed_reason is None:
                record, changes = self._pending.popleft()  # type: ignore[union-attr]
                self._apply(changes)
                missing = self._window.missing()
                if missing:
                    w = self._window
                    rows, exhausted = await asyncio.to_thread(
                        fetch_filtered,
                        self._source.fetch,
                        self.collection,
                        self.query,
                        after=w.boundary(),
                        limit=missing,
                        readable=self._readable,
                    )
                    if self.closed_reason is not None:
                        return
                    w.extend(rows, exhausted)
                self._emit(record)
        except Exception:  # a failing refill must not kill the node; the query ends with the reason
            log.exception("live query %s failed", self.id)
            self.shutdown("live query failed while refilling; see the node log")
        finally:
            self._worker = None

    def _emit(self, record: CommitRecord | None) -> None:
        added, updated, removed, filled = self._window.finish()
        if not (added or updated or removed):
            return
        if filled:
            self.gap_fills += 1
        if record is not None:  # positional: query_id, commit_id, commit_ns, received_ns, ...
            n = Notification(
                self.id,
                record.commit_id,
                record.durable_ns,
                _perf_ns(),
                added,
                updated,
                removed,
                "change",
                None,
                filled,
            )
        else:
            n = Notification(self.id, None, None, _perf_ns(), added, updated, removed, "change", None, filled)
        self._deliver(n)

    def _deliver(self, n: Notification) -> None:
        self.notifications += 1
        if self._queue is not None:
            self._queue.put_nowait(n)
        for cb in self._sync_listeners:
            try:
                r = cb(n)
                if r is not None and inspect.isawaitable(r):  # a sync-looking callable that returned a coroutine
                    asyncio.ensure_future(r)
            except Exception:
                log.exception("live query %s: listener %r failed", self.id, cb)
        if self._async_listeners:
            if self._async_pending is None:
                self._async_pending = deque()
            self._async_pending.append(n)
            if self._async_task is None:
                self._async_task = asyncio.get_running_loop().create_task(self._run_async_listeners())

    async def _run_async_listeners(self) -> None:
        try:
            while self._async_pending:
                n = self._async_pending.popleft()  # type: ignore[union-attr]
                for cb in self._async_listeners:
                    try:
                        await cb(n)  # type: ignore[misc]
                    except Exception:
                        log.exception("live query %s: listener %r failed", self.id, cb)
        finally:
            self._async_task = None

    def shutdown(self, reason: str) -> None:
        """End the query: release registry entries and pending work, deliver kind="closed"."""
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        self._on_release(self)
        self._pending = None
        if self._worker is not None and self._worker is not asyncio.current_task():
            self._worker.cancel()
            self._worker = None
        self._deliver(
            Notification(
                query_id=self.id,
                commit_id=None,
                commit_ns=None,
                received_ns=time.perf_counter_ns(),
                kind="closed",
                reason=reason,
            )
        )
        self._sync_listeners = []
        self._window = Window(self._window.key, self._window.limit)  # drop the result

    def memory_estimate(self) -> int:
        """Approximate bytes this live query holds (object, window, queue)."""
        n = sys.getsizeof(self) + self._window.size_estimate()
        if self._queue is not None:
            n += sys.getsizeof(self._queue) + sys.getsizeof(self._queue._queue)  # type: ignore[attr-defined]
            n += self._queue.qsize() * 200
        return n

    def __repr__(self) -> str:
        return f"<LiveQuery {self.id} {self.collection} {self.query.text or self.query!r} n={len(self._window)}>"
