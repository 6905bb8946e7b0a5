"""Live queries: one LISTEN connection per durable node, re-evaluating the affected queries.

The trigger (schema.py) sends one notification per changed row. The listener drains what
has arrived, groups it by collection, and runs ONE query per collection and batch: the
current rows of the changed ids plus a hit flag per live query on that collection
(queries.match_sql). Then, per live query:

- plain queries (no ORDER BY / LIMIT) keep a set: a changed row that matches is
  added/updated, one that no longer matches (or was deleted) is removed;
- window queries (ORDER BY and/or LIMIT) are affected when a changed row is in the window
  or matches now; then the window is refilled by re-running the query in SQL, and the
  notification carries the difference (rows that left, rows that entered, changed rows).

Commit timestamps: the writer registers each transaction's txid before COMMIT and its
perf_counter_ns when COMMIT returns (`Commits`); a notification waits for that value, so
lag is commit-returned -> callback on one clock, as for loam. Several commits coalesced
into one re-evaluation report the earliest of them (lag is never understated); commits
that returned before the query was registered are skipped (its initial read has them). Writes
made by another process fall back to the trigger's wall-clock time mapped onto
perf_counter.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import psycopg

from sprout_harness.contracts.client import Doc, Notification
from sprout_harness.contracts.query import QuerySpec
from sprout_pgnotify import queries, schema

log = logging.getLogger(__name__)
COMMIT_WAIT_S = 5.0  # a registered txid whose COMMIT never reports back (should not happen)
_MAX_COMMITS = 100_000


@dataclass(frozen=True, slots=True)
class Change:
    """One parsed notification."""

    collection: str
    id: str
    op: str  # I, U or D
    txid: int
    wall_us: int


def parse(payload: str) -> Change:
    d = json.loads(payload)
    return Change(d["c"], d["id"], d["op"], int(d["tx"]), int(d["ts"]))


class Commits:
    """txid -> perf_counter_ns when its COMMIT returned, for the transactions of this process."""

    def __init__(self) -> None:
        self._done: OrderedDict[int, int] = OrderedDict()
        self._pending: dict[int, asyncio.Future[int | None]] = {}
        self._wall_offset_ns = time.time_ns() - time.perf_counter_ns()

    def begin(self, txid: int) -> None:
        """The transaction's statement returned its txid; COMMIT is next."""
        self._pending[txid] = asyncio.get_running_loop().create_future()

    def committed(self, txid: int, commit_ns: int) -> None:
        self._done[txid] = commit_ns
        if len(self._done) > _MAX_COMMITS:
            self._done.popitem(last=False)
        fut = self._pending.pop(txid, None)
        if fut is not None and not fut.done():
            fut.set_result(commit_ns)

    def aborted(self, txid: int) -> None:
        fut = self._pending.pop(txid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def commit_ns(self, change: Change) -> int:
        """The commit's perf_counter_ns (waits for our own COMMIT to return if needed)."""
        ns = self._done.get(change.txid)
        if ns is not None:
            return ns
        fut = self._pending.get(change.txid)
        if fut is not None:
            try:
                async with asyncio.timeout(COMMIT_WAIT_S):
                    got = await asyncio.shield(fut)
            except TimeoutError:
                got = None
            if got is not None:
                return got
        return change.wall_us * 1000 - self._wall_offset_ns  # another process's write


Callback = Callable[[Notification], Any]


@dataclass(eq=False)
class LiveQuery:
    """One subscription's state. `results` is the current result in order."""

    collection: str
    query: QuerySpec
    callback: Callback
    rows: dict[str, Doc] = field(default_factory=dict)  # plain queries
    window: list[Doc] = field(default_factory=list)  # window queries
    closed: bool = False
    since_ns: int = field(default_factory=time.perf_counter_ns)  # registered (before the initial read)

    @property
    def windowed(self) -> bool:
        return bool(self.query.order_by) or self.query.limit is not None

    @property
    def results(self) -> list[Doc]:
        return list(self.window) if self.windowed else list(self.rows.values())

    def reset(self, docs: Sequence[Doc]) -> None:
        if self.windowed:
            self.window = list(docs)
        else:
            self.rows = {d.id: d for d in docs}


def _doc(id_: str, props: Any) -> Doc:
    return Doc(id_, props)


class Listener:
    """LISTENs on one durable node's channel and keeps its live queries up to date."""

    def __init__(self, dsn: str, schema_name: str, pool: Any, commits: Commits) -> None:
        self.dsn = dsn
        self.schema = schema_name
        self.pool = pool
        self.commits = commits
        self.live: dict[str, list[LiveQuery]] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.errors: list[str] = []
        self.notifications = 0
        self._conn: psycopg.AsyncConnection | None = None
        self._queue: asyncio.Queue[Change] = asyncio.Queue()
        self._tasks: list[asyncio.Task[Any]] = []

    def lock(self, collection: str) -> asyncio.Lock:
        return self.locks.setdefault(collection, asyncio.Lock())

    async def start(self) -> None:
        self._conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        await self._conn.execute(f"LISTEN {queries.ident(schema.channel(self.schema))}")
        self._tasks = [
            asyncio.create_task(self._receive(), name=f"pgnotify-listen-{self.schema}"),
            asyncio.create_task(self._process(), name=f"pgnotify-eval-{self.schema}"),
        ]

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        for lqs in self.live.values():
            for lq in lqs:
                lq.closed = True
        self.live.clear()

    # -- subscriptions ---------------------------------------------------------------------

    async def subscribe(self, collection: str, query: QuerySpec, callback: Callback) -> LiveQuery:
        """Register, then read the initial result under the collection's lock (no change is lost:
        anything committed after the read is re-evaluated after it)."""
        lq = LiveQuery(collection, query, callback)
        sql, params = queries.select_sql(schema.table(self.schema, collection), query)
        async with self.lock(collection):
            self.live.setdefault(collection, []).append(lq)
            try:
                lq.reset(await self._select(sql, params))
            except BaseException:
                self.live[collection].remove(lq)
                raise
        return lq

    def unsubscribe(self, lq: LiveQuery) -> None:
        lq.closed = True
        lqs = self.live.get(lq.collection, [])
        if lq in lqs:
            lqs.remove(lq)

    async def _select(self, sql: str, params: list[Any]) -> list[Doc]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return [_doc(i, p) for i, p in await cur.fetchall()]

    # -- the loop --------------------------------------------------------------------------

    async def _receive(self) -> None:
        assert self._conn is not None
        try:
            async for n in self._conn.notifies():
                try:
                    self._queue.put_nowait(parse(n.payload))
                except (ValueError, KeyError) as exc:
                    self.errors.append(f"bad notification payload {n.payload[:200]!r}: {exc}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the LISTEN connection died: live queries can no longer be kept
            self.errors.append(f"LISTEN connection on {self.schema} failed: {type(exc).__name__}: {exc}")
            log.error("pgnotify listener stopped: %s", exc)
            await self._close_all(f"listener stopped: {exc}")

    async def _close_all(self, reason: str) -> None:
        for lqs in list(self.live.values()):
            for lq in list(lqs):
                await _call(lq.callback, Notification(commit_ns=None, kind="closed"))
                lq.closed = True
        self.live.clear()

    async def _process(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self.notifications += len(batch)
            by_coll: dict[str, list[Change]] = {}
            for ch in batch:
                by_coll.setdefault(ch.collection, []).append(ch)
            for coll, changes in by_coll.items():
                if not self.live.get(coll):
                    continue
                try:
                    async with self.lock(coll):
                        await self._evaluate(coll, changes)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # keep serving the other queries; the error is reported
                    self.errors.append(f"re-evaluating live queries on {coll}: {type(exc).__name__}: {exc}")
                    log.exception("pgnotify: re-evaluation failed")

    async def _evaluate(self, coll: str, changes: list[Change]) -> None:
        lqs = [lq for lq in self.live.get(coll, []) if not lq.closed]
        if not lqs:
            return
        by_id: dict[str, list[Change]] = {}
        for ch in changes:
            by_id.setdefault(ch.id, []).append(ch)
        ids = list(by_id)
        table = schema.table(self.schema, coll)
        sql, params = queries.match_sql(table, [lq.query.where for lq in lqs])
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, [*params, ids])
            rows = await cur.fetchall()
        current = {r[0]: (r[1], list(r[2:])) for r in rows}

        stamps = {c.txid: await self.commits.commit_ns(c) for c in changes}
        out: list[tuple[LiveQuery, Notification]] = []
        for k, lq in enumerate(lqs):
            # Changes committed before the query was registered are already in its initial result.
            mine = {i: [c for c in chs if stamps[c.txid] >= lq.since_ns] for i, chs in by_id.items()}
            lq_ids = [i for i in ids if mine[i]]
            if not lq_ids:
                continue
            hits = {i for i in lq_ids if i in current and current[i][1][k]}
            if lq.windowed:
                note = await self._refill(lq, table, lq_ids, hits, current)
            else:
                note = self._apply_plain(lq, lq_ids, hits, current)
            if note is None:
                continue
            commit_ns, txid = min((stamps[c.txid], c.txid) for i in lq_ids if i in note[2] for c in mine[i])
            added, updated, removed = note[0], note[1], note[3]
            out.append(
                (
                    lq,
                    Notification(
                        commit_ns=commit_ns,
                        added=added,
                        updated=updated,
                        removed=removed,
                        commit_id=str(txid),
                        received_ns=time.perf_counter_ns(),
                    ),
                )
            )
        for lq, n in out:
            if not lq.closed:
                await _call(lq.callback, n)

    def _apply_plain(self, lq: LiveQuery, ids: list[str], hits: set[str], current: dict[str, Any]) -> Any:
        added: list[Doc] = []
        updated: list[Doc] = []
        removed: list[str] = []
        for i in ids:
            if i in hits:
                d = _doc(i, current[i][0])
                (updated if i in lq.rows else added).append(d)
                lq.rows[i] = d
            elif i in lq.rows:
                del lq.rows[i]
                removed.append(i)
        touched = {d.id for d in added} | {d.id for d in updated} | set(removed)
        if not touched:
            return None
        return tuple(added), tuple(updated), touched, tuple(removed)

    async def _refill(self, lq: LiveQuery, table: str, ids: list[str], hits: set[str], current: dict[str, Any]) -> Any:
        old = {d.id: d for d in lq.window}
        relevant = [i for i in ids if i in old or i in hits]
        if not relevant:
            return None
        sql, params = queries.select_sql(table, lq.query)
        new = await self._select(sql, params)
        lq.window = new
        new_ids = {d.id for d in new}
        added = tuple(d for d in new if d.id not in old)
        updated = tuple(d for d in new if d.id in old and (d.id in relevant or d.props != old[d.id].props))
        removed = tuple(i for i in old if i not in new_ids)
        touched = {d.id for d in added} | {d.id for d in updated} | set(removed)
        if not touched:
            return None
        # The commit(s) behind this refill: the changed rows that caused it.
        return added, updated, touched | set(relevant), removed


async def _call(fn: Callback, n: Notification) -> None:
    try:
        r = fn(n)
        if inspect.isawaitable(r):
            await r
    except Exception:  # a subscriber's bug must not stop the other live queries
        log.exception("pgnotify: a live-query callback failed")
