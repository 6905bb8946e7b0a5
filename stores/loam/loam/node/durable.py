"""The durable node: owns a storage engine, applies transactions, serves live queries.

Write path (`apply_transaction`): admit and observe the Lamport clock (a clock above
`loam.node.clock.MAX_CLOCK`, or more than `max_clock_drift` ahead of this node's, is a
ValidationError and nothing is stored) -> drop a re-sent commit (same `commit_id`: the
original CommitRecord is returned again, without changes) -> validate ops -> read the
current states of ids not known to be new -> per op, in order: policy check against the
visible entity, LWW merge -> Change records -> `storage.apply(WriteBatch)` -> `durable_ns`
-> fan-out to live queries and commit listeners -> dedupe memory. The Change records are
derived before the write so that nothing but the fan-out lies between a commit's
timestamp and its notifications.
Any error before `storage.apply` leaves storage untouched (all-or-nothing).
With `require_fresh=True` (client commits forwarded by ephemeral nodes through the
service) a transaction any of whose writes would lose LWW against a stamp already
stored is refused with `StaleClockError` instead of being acked as a silent no-op.

`create()` is the batched-create fast path: its ids come from this node's
IdGenerator, so they are known to be new — no read, no merge, all in
`WriteBatch.new_ids`, Change records built directly.

Concurrency: non-blocking engines (memory, LevelDB) run inline, so a whole commit
(read, merge, write, fan-out) is atomic on the event loop. Blocking engines
(PostgreSQL) are called via `asyncio.to_thread`; commits touching disjoint ids run
concurrently, commits sharing an id are serialised by per-id locks held through the
fan-out, so every live query sees each entity's changes in commit order.

Hooks for other layers:
- `add_commit_listener(cb)`: called with every CommitRecord after it is durable
  (replication to ephemeral nodes, triggers); async callbacks are scheduled.
- `apply_transaction(tx, ctx)`: the entry point for transactions stamped elsewhere.
- `stats()`: counters for reports (commits, live queries, subscriptions per
  collection, memory estimate per live query).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from loam.errors import NodeClosedError, StaleClockError, ValidationError
from loam.live.feed import CommitFeed, CommitListener
from loam.live.livequery import WindowedLiveQuery
from loam.live.registry import SubscriptionRegistry
from loam.model import (
    Change,
    CommitRecord,
    Context,
    Create,
    Delete,
    Entity,
    EntityState,
    IdGenerator,
    NotificationCallback,
    Op,
    Scalar,
    Transaction,
    Update,
    check_props,
    checked_copies,
    new_node_id,
)
from loam.node.clock import DEFAULT_MAX_DRIFT, LamportClock
from loam.policy.base import PolicyAgent
from loam.policy.permissive import PermissivePolicy
from loam.query.ast import Query
from loam.query.evaluate import compile_predicate
from loam.query.order import sort_key_func
from loam.query.paging import coerce_query, fetch_filtered
from loam.storage.base import StorageEngine, WriteBatch


class _KeyLocks:
    """Per-(collection, id) locks; acquisition of a key set is all-at-once (no deadlock)."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], asyncio.Event] = {}

    async def acquire(self, keys: set[tuple[str, str]]) -> None:
        while True:
            busy = next((self._held[k] for k in keys if k in self._held), None)
            if busy is None:
                for k in keys:
                    self._held[k] = asyncio.Event()
                return
            await busy.wait()

    def release(self, keys: set[tuple[str, str]]) -> None:
        for k in keys:
            ev = self._held.pop(k, None)
            if ev is not None:
                ev.set()


class DurableNode:
    """A loam node that owns storage (`role = "durable"`); implements `loam.node.api.Node`."""

    role = "durable"

    def __init__(
        self,
        storage: StorageEngine,
        policy: PolicyAgent | None = None,
        node_id: str | None = None,
        *,
        strict_collections: bool = True,
        dedupe_window: int = 100_000,
        max_clock_drift: int = DEFAULT_MAX_DRIFT,
    ) -> None:
        if policy is None:
            policy = PermissivePolicy()
        self.storage = storage
        self.policy = policy
        self.node_id = node_id or new_node_id()
        self.strict_collections = strict_collections
        self.clock = LamportClock()
        self.ids = IdGenerator()
        self.registry = SubscriptionRegistry()
        self.feed = CommitFeed(self.registry)
        self.closed_reason: str | None = None
        self._started = False
        self._blocking = bool(getattr(storage, "blocking", False))
        self._filters_reads = bool(getattr(self.policy, "filters_reads", True))
        # Policy flags are read once, here. When the policy says reads are unconditional
        # (check_read never refuses, can_read always allows) and the engine never blocks,
        # a get of a known collection on an open node is the engine's own read: `get`
        # keeps one per collection (`storage.reader`), filled on a collection's first
        # checked get and emptied on close.
        self._direct_reads = (
            not self._blocking
            and not self._filters_reads
            and getattr(self.policy, "checks_reads", True) is False
            and callable(getattr(storage, "reader", None))
        )
        self._readers: dict[str, Callable[[str], Entity | None]] = {}
        self._collections: set[str] = set()
        self._recent: OrderedDict[str, CommitRecord] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[CommitRecord]] = {}
        self._dedupe_window = dedupe_window
        self.max_clock_drift = max_clock_drift  # see loam.node.clock: refused beyond it, nothing stored
        self._locks = _KeyLocks()
        self._lq_seq = itertools.count(1)
        self._live: dict[str, WindowedLiveQuery] = {}
        self.commits = 0
        self.stale_rejections = 0  # forwarded commits refused with StaleClockError

    # --- lifecycle ----------------------------------------------------------

    async def _io(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._blocking:
            return await asyncio.to_thread(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    async def start(self) -> None:
        """Open storage and resume the Lamport clock from its commit log."""
        if self.closed_reason is not None:
            raise NodeClosedError(f"durable node {self.node_id} is closed ({self.closed_reason}); create a new node")
        if self._started:
            return
        await self._io(self.storage.open)
        self.clock = LamportClock(await self._io(self.storage.last_clock))
        self._collections = set(await self._io(self.storage.collections))
        self._started = True

    async def close(self, reason: str = "node closed") -> None:
        """Close every live query with `reason` (they get kind="closed"), then storage."""
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        self._readers.clear()
        for lq in list(self._live.values()):
            lq.shutdown(reason)
        if self._started:
            await self._io(self.storage.close)

    def _check_open(self) -> None:
        if self.closed_reason is not None:
            raise NodeClosedError(f"durable node {self.node_id} is closed: {self.closed_reason}")
        if not self._started:
            raise NodeClosedError(f"durable node {self.node_id} is not started; await node.start() first")

    # --- writes -------------------------------------------------------------

    async def commit(self, ops: Sequence[Op], ctx: Context) -> CommitRecord:
        """Apply `ops` atomically as one transaction stamped by this node."""
        self._check_open()
        tx = self._stamp(ops)
        return await self._apply(tx, ctx, True)

    def _stamp(self, ops: Sequence[Op]) -> Transaction:
        clock = self.clock.tick()
        return Transaction(f"{self.node_id}-{clock}", self.node_id, clock, tuple(ops))

    async def apply_transaction(
        self, tx: Transaction, ctx: Context, *, require_existing: bool | None = None, require_fresh: bool = False
    ) -> CommitRecord:
        """Apply a transaction stamped by any node (ephemeral nodes forward theirs here).

        `require_existing` (default: True when this node stamped `tx`) makes an update
        or delete of a missing id a ValidationError; otherwise such ops are merged
        (LWW: an update arriving before its create, a delete of an absent id).

        `require_fresh` is for a client's commit, whose ack promises the write is in
        the state: if any create/update would lose LWW to a stamp already stored (a
        property's stamp or the entity's creation stamp), nothing is written and
        `StaleClockError` carries this node's clock so the sender can re-stamp above it
        and re-send. Refused transactions are not remembered for dedupe, so the re-sent
        copy may keep its commit_id. Replication leaves it off: plain LWW, any order."""
        self._check_open()
        if require_existing is None:
            require_existing = tx.node_id == self.node_id
        return await self._apply(tx, ctx, require_existing, require_fresh)

    async def create(
        self, collection: str, props: Sequence[dict[str, Scalar]], ctx: Context
    ) -> tuple[list[str], CommitRecord]:
        """Create entities in one transaction; returns their new ids (in order) and the commit.

        The fast path: ids come from this node's generator so they cannot exist; no
        read, no LWW merge, one `WriteBatch` with every id in `new_ids`."""
        self._check_open()
        if isinstance(props, dict) or not isinstance(props, Sequence):
            raise ValidationError("create() takes a list of property dicts; wrap a single dict in a list")
        if not isinstance(collection, str) or not collection:
            raise ValidationError(f"a collection name must be a non-empty string, got {collection!r}")
        if not props:
            raise ValidationError(f"create() in {collection!r} needs at least one property dict")
        with _gc_paused(len(props)):
            batch, ids, clock = self._build_create(collection, props, ctx)
            changes = tuple(
                [Change(collection, st.id, "create", None, Entity(st.id, st.values)) for _, st in batch.states]
            )
            if not self._blocking:
                self.storage.apply(batch)
                return ids, self._finish_create(collection, batch, clock, changes)
        await asyncio.to_thread(self.storage.apply, batch)
        with _gc_paused(len(ids)):
            rec = self._finish_create(collection, batch, clock, changes)
        for lq in self._live_for(rec):
            await lq.settle()
        return ids, rec

    def _build_create(
        self, collection: str, props: Sequence[dict[str, Scalar]], ctx: Context
    ) -> tuple[WriteBatch, list[str], int]:
        try:
            copies = checked_copies(props)
        except ValidationError as exc:
            raise ValidationError(f"{collection}: {exc}") from None
        ids = self.ids.new_many(len(copies))
        if getattr(self.policy, "checks_writes", True):
            check = self.policy.check_write
            for i, c in zip(ids, copies):
                check(ctx, Create(collection, i, c), None)
        clock = self.clock.tick()
        stamp = (clock, self.node_id)
        batch = WriteBatch(
            states=[(collection, EntityState(i, c, stamp, {})) for i, c in zip(ids, copies)],
            new_ids=set(ids),
            commit={"commit_id": f"{self.node_id}-{clock}", "node_id": self.node_id, "clock": clock, "ops": len(ids)},
        )
        return batch, ids, clock

    def _finish_create(
        self, collection: str, batch: WriteBatch, clock: int, changes: tuple[Change, ...]
    ) -> CommitRecord:
        assert batch.commit is not None
        rec = CommitRecord(batch.commit["commit_id"], self.node_id, clock, time.perf_counter_ns(), changes)
        self._collections.add(collection)
        return self._record(rec)

    async def update(self, collection: str, id: str, props: dict[str, Scalar], ctx: Context) -> CommitRecord:
        # commit() inline: one coroutine less between the commit and its caller
        self._check_open()
        op = Update(collection, id, dict(props) if isinstance(props, dict) else props)
        return await self._apply(self._stamp((op,)), ctx, True)

    async def delete(self, collection: str, id: str, ctx: Context) -> CommitRecord:
        self._check_open()
        return await self._apply(self._stamp((Delete(collection, id),)), ctx, True)

    async def _apply(
        self, tx: Transaction, ctx: Context, require_existing: bool, require_fresh: bool = False
    ) -> CommitRecord:
        # Checked before the clock observes it: one far-future clock would otherwise be
        # adopted by this node, stored in its commit log and spread to every client.
        bad = self.clock.admission_error(tx.clock, self.max_clock_drift)
        if bad is not None:
            raise ValidationError(f"commit {tx.commit_id} refused, nothing was written: {bad}")
        self.clock.observe(tx.clock)
        rec = self._recent.get(tx.commit_id)
        if rec is not None:
            return rec
        fut = self._inflight.get(tx.commit_id)
        if fut is not None:  # the same commit re-sent while the first copy is being applied
            return await asyncio.shield(fut)
        _validate(tx)
        if not self._blocking:
            return self._apply_sync(tx, ctx, require_existing, require_fresh)
        keys = {(op.collection, op.id) for op in tx.ops}
        loop = asyncio.get_running_loop()
        fut = self._inflight[tx.commit_id] = loop.create_future()
        await self._locks.acquire(keys)
        try:
            states = await asyncio.to_thread(_read_all, self.storage, _group_reads(tx.ops))
            batch, pending = self._merge(tx, ctx, require_existing, states, require_fresh)
            changes = _changes(pending)
            await asyncio.to_thread(self.storage.apply, batch)
            rec = self._finish(tx, pending, changes)
            for lq in self._live_for(rec):
                await lq.settle()  # hold the id locks until these changes are applied in order
            fut.set_result(rec)
            return rec
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: nobody may be waiting
            raise
        finally:
            self._inflight.pop(tx.commit_id, None)
            self._locks.release(keys)

    def _live_for(self, rec: CommitRecord) -> list[WindowedLiveQuery]:
        if not rec.changes or not len(self.registry):
            return []
        return [lq for lq in self.registry.route(rec.changes) if lq._worker is not None]

    def _apply_sync(
        self, tx: Transaction, ctx: Context, require_existing: bool, require_fresh: bool = False
    ) -> CommitRecord:
        states = _read_all(self.storage, _group_reads(tx.ops))
        batch, pending = self._merge(tx, ctx, require_existing, states, require_fresh)
        changes = _changes(pending)
        self.storage.apply(batch)
        return self._finish(tx, pending, changes)

    def _merge(
        self,
        tx: Transaction,
        ctx: Context,
        require_existing: bool,
        states: dict[tuple[str, str], EntityState],
        require_fresh: bool = False,
    ) -> tuple[WriteBatch, list[tuple[str, EntityState, Entity | None]]]:
        """LWW-merge every op into working states, policy-checking each; touches no storage.

        `require_fresh`: raise StaleClockError (before anything is written) when a
        create/update would lose LWW against a stored stamp (see apply_transaction)."""
        stamp = (tx.clock, tx.node_id)
        check = self.policy.check_write if getattr(self.policy, "checks_writes", True) else None
        working: dict[tuple[str, str], EntityState] = {}
        befores: dict[tuple[str, str], Entity | None] = {}
        for op in tx.ops:
            key = (op.collection, op.id)
            st = working.get(key)
            if st is None:
                st = states.get(key)
            cur = None if st is None or st.deleted is not None else Entity(st.id, dict(st.values))
            if key not in befores:
                befores[key] = cur
            if check is not None:
                check(ctx, op, cur)
            if require_fresh and st is not None and st.deleted is None and not isinstance(op, Delete):
                newer = _newer_stamp(st, op.props, stamp)
                if newer is not None:
                    self._refuse_stale(tx, op, newer)
            if isinstance(op, Create):
                if require_existing and st is not None:
                    what = "exists" if st.deleted is None else "was deleted (ids are never reused)"
                    raise ValidationError(
                        f"cannot create {op.collection}/{op.id}: it {what}; omit the id to get a new one"
                    )
                if st is None:
                    st = EntityState(op.id, dict(op.props), stamp)
                else:
                    _write(st, op.props, stamp)
            elif isinstance(op, Update):
                if cur is None and require_existing:
                    raise ValidationError(_not_found(op, self._collections))
                if st is None:
                    st = EntityState(op.id, dict(op.props), stamp)
                else:
                    _write(st, op.props, stamp)
            else:
                if cur is None and require_existing:
                    raise ValidationError(_not_found(op, self._collections))
                if st is None:
                    st = EntityState(op.id, {}, stamp, deleted=stamp)
                else:
                    st.merge_delete(stamp)
            working[key] = st
        batch = WriteBatch(
            states=[(c, st) for (c, _), st in working.items()],
            commit={"commit_id": tx.commit_id, "node_id": tx.node_id, "clock": tx.clock, "ops": len(tx.ops)},
        )
        pending = [(c, st, befores[(c, i)]) for (c, i), st in working.items()]
        return batch, pending

    def _refuse_stale(self, tx: Transaction, op: Op, newer: tuple[int, str]) -> None:
        self.stale_rejections += 1
        clock = max(self.clock.value, newer[0])
        raise StaleClockError(
            f"commit {tx.commit_id} is stamped ({tx.clock}, {tx.node_id!r}) but {op.collection}/{op.id} already "
            f"holds a write stamped {newer}: under LWW it would be dropped, so nothing was written. Re-stamp the "
            f"transaction above clock {clock} and send it again (an EphemeralNode does this itself)",
            clock,
        )

    def _finish(
        self, tx: Transaction, pending: list[tuple[str, EntityState, Entity | None]], changes: tuple[Change, ...]
    ) -> CommitRecord:
        """The commit is written: stamp it, learn its collections, fan it out.

        `changes` were derived before the write (`_changes`), so that between the commit's
        timestamp and its fan-out there is nothing but the record itself."""
        rec = CommitRecord(tx.commit_id, tx.node_id, tx.clock, time.perf_counter_ns(), changes)
        colls = self._collections
        for c, _, _ in pending:
            if c not in colls:
                colls.add(c)
        return self._record(rec)

    def _record(self, rec: CommitRecord) -> CommitRecord:
        """Fan the commit out, then count it and remember it (for re-sends).

        The fan-out is synchronous (nothing can re-send the commit in between), so the
        bookkeeping waits until the notifications are on their way. The dedupe memory
        keeps the record without its changes: it stays small, and a re-sent commit
        changes nothing anyway."""
        self.feed.publish(rec)
        self._recent[rec.commit_id] = (
            CommitRecord(rec.commit_id, rec.node_id, rec.clock, rec.durable_ns) if rec.changes else rec
        )
        if len(self._recent) > self._dedupe_window:
            self._recent.popitem(last=False)
        self.commits += 1
        return rec

    # --- reads --------------------------------------------------------------

    def _check_collection(self, collection: str) -> bool:
        """False when the collection does not exist and strict_collections is off."""
        if not isinstance(collection, str) or not collection:
            raise ValidationError(f"a collection name must be a non-empty string, got {collection!r}")
        if collection in self._collections:
            return True
        if self.strict_collections:
            known = ", ".join(sorted(self._collections)) or "(none yet)"
            raise ValidationError(
                f"unknown collection {collection!r}; known: {known}. A collection exists once an entity is created in it"
            )
        return False

    def _readable(self, ctx: Context, collection: str) -> Callable[[Entity], bool] | None:
        if not getattr(self.policy, "filters_reads", True):
            return None
        can = self.policy.can_read
        return lambda e: can(ctx, collection, e)

    async def get(self, collection: str, id: str, ctx: Context) -> Entity | None:
        """The visible entity, or None if absent, deleted or not readable by `ctx`."""
        # The hot read path. With unconditional reads (see __init__) a collection that
        # passed the checks once on this open node has a reader: one dict lookup, then the
        # engine's read. Otherwise: open and collection checks, the policy, the engine.
        try:
            read = self._readers[collection]
        except (KeyError, TypeError):  # not (yet) direct, or not a str
            pass
        else:
            return read(id)
        if self.closed_reason is not None or not self._started:
            self._check_open()
        if (type(collection) is not str or collection not in self._collections) and not self._check_collection(
            collection
        ):
            return None
        policy = self.policy
        policy.check_read(ctx, collection)
        if self._blocking:
            e = await asyncio.to_thread(self.storage.get, collection, id)
        elif self._direct_reads:
            read = self._readers[collection] = self.storage.reader(collection)  # type: ignore[attr-defined]
            return read(id)
        else:
            e = self.storage.get(collection, id)
        if e is not None and self._filters_reads and not policy.can_read(ctx, collection, e):
            return None
        return e

    async def fetch(self, collection: str, query: str | Query, ctx: Context) -> list[Entity]:
        """Entities matching `query`, in query order, filtered by the read policy."""
        self._check_open()
        q = coerce_query(query)
        if not self._check_collection(collection):
            return []
        self.policy.check_read(ctx, collection)
        rows, _ = await self._io(
            fetch_filtered, self.storage.fetch, collection, q, limit=q.limit, readable=self._readable(ctx, collection)
        )
        return rows

    async def subscribe(
        self, collection: str, query: str | Query, ctx: Context, callback: NotificationCallback | None = None
    ) -> WindowedLiveQuery:
        """A live query: `results` now, then a Notification per commit that changes them.

        Unlike get/fetch, subscribing to a collection that does not exist yet is allowed
        (the live query waits for its first entities)."""
        self._check_open()
        q = coerce_query(query)
        if not isinstance(collection, str) or not collection:
            raise ValidationError(f"a collection name must be a non-empty string, got {collection!r}")
        self.policy.check_read(ctx, collection)
        lq = WindowedLiveQuery(
            id=f"{self.node_id}:lq{next(self._lq_seq)}",
            collection=collection,
            query=q,
            source=self.storage,
            key=sort_key_func(q.order_by),
            predicate=compile_predicate(q.where) if q.where is not None else None,
            readable=self._readable(ctx, collection),
            on_release=self._release,
            callback=callback,
        )
        if not self._blocking:
            lq.load_sync()
            self._register(lq)
        else:
            self._register(lq)
            try:
                await lq.load_async()
            except BaseException:
                lq.shutdown("initial read failed")
                raise
        return lq

    def _register(self, lq: WindowedLiveQuery) -> None:
        self._live[lq.id] = lq
        self.registry.add(lq)

    def _release(self, lq: WindowedLiveQuery) -> None:
        self._live.pop(lq.id, None)
        self.registry.remove(lq)

    # --- hooks ----------------------------------------------------------------

    def add_commit_listener(self, cb: CommitListener) -> None:
        """Call `cb(record)` for every commit once durable (after live-query fan-out)."""
        self.feed.add_listener(cb)

    def remove_commit_listener(self, cb: CommitListener) -> None:
        self.feed.remove_listener(cb)

    def live_queries(self) -> list[WindowedLiveQuery]:
        return list(self._live.values())

    def collections(self) -> list[str]:
        return sorted(self._collections)

    def stats(self) -> dict[str, Any]:
        """Counters for reports; memory figures are sys.getsizeof-based estimates."""
        mem = {lq.id: lq.memory_estimate() for lq in self._live.values()}
        return {
            "node_id": self.node_id,
            "role": self.role,
            "clock": self.clock.value,
            "commits": self.commits,
            "stale_rejections": self.stale_rejections,
            "live_queries": len(self._live),
            "subscriptions": self.registry.counts(),
            "registry_entries": self.registry.entries(),
            "live_query_memory": mem,
            "live_query_memory_mean": (sum(mem.values()) // len(mem)) if mem else 0,
            "storage": self.storage.describe(),
            "policy": self.policy.describe(),
        }


# --- helpers -----------------------------------------------------------------


@contextmanager
def _gc_paused(n: int) -> Iterator[None]:
    """Pause the cyclic GC while a large batch allocates its (acyclic) objects.

    A 10k-entity create allocates ~5 tracked objects per entity; with the GC on they
    are traversed again and again by young-generation collections, which costs as
    much as the rest of the fast path. Nothing here awaits, so the pause is short."""
    if n < 256 or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _validate(tx: Transaction) -> None:
    if not tx.ops:
        raise ValidationError("a transaction needs at least one operation")
    for op in tx.ops:
        if not isinstance(op, (Create, Update, Delete)):
            raise ValidationError(f"not an operation: {op!r}; use loam.model.Create, Update or Delete")
        if not isinstance(op.collection, str) or not op.collection:
            raise ValidationError(f"a collection name must be a non-empty string, got {op.collection!r}")
        if not isinstance(op.id, str) or not op.id:
            raise ValidationError(f"{op.collection}: an entity id must be a non-empty string, got {op.id!r}")
        if not isinstance(op, Delete):
            try:
                check_props(op.props)
            except ValidationError as exc:
                raise ValidationError(f"{op.collection}/{op.id}: {exc}") from None


def _group_reads(ops: Sequence[Op]) -> dict[str, list[str]]:
    reads: dict[str, list[str]] = {}
    for op in ops:
        reads.setdefault(op.collection, []).append(op.id)
    return reads


def _read_all(storage: StorageEngine, reads: dict[str, list[str]]) -> dict[tuple[str, str], EntityState]:
    out: dict[tuple[str, str], EntityState] = {}
    for c, ids in reads.items():
        for i, st in storage.read_states(c, ids).items():
            out[(c, i)] = st
    return out


def _write(st: EntityState, props: dict[str, Scalar], stamp: tuple[int, str]) -> None:
    """LWW write; a later op of the same transaction (same stamp) overwrites an earlier one."""
    same = [k for k in props if k in st.values and st.stamp_of(k) == stamp]
    if same:
        for k in same:
            st.values[k] = props[k]
        props = {k: v for k, v in props.items() if k not in same}
    st.merge_write(props, stamp)


def _newer_stamp(st: EntityState, props: dict[str, Scalar], stamp: tuple[int, str]) -> tuple[int, str] | None:
    """The highest stamp a write of `props` at `stamp` would be compared with, if it beats `stamp`.

    The creation stamp always counts: a write stamped before the entity was created is
    stale even for a property the entity does not have yet."""
    best = st.stamp
    stamps = st.stamps
    if stamps:
        for k in props:
            s = stamps.get(k)
            if s is not None and s > best:
                best = s
    return best if best > stamp else None


def _not_found(op: Op, known: set[str]) -> str:
    what = "update" if isinstance(op, Update) else "delete"
    if op.collection not in known:
        return f"cannot {what} {op.collection}/{op.id}: unknown collection {op.collection!r}; known: {', '.join(sorted(known)) or '(none yet)'}"
    return f"cannot {what} {op.collection}/{op.id}: not found (never created, or deleted)"


__all__ = ["DurableNode"]


def _changes(pending: list[tuple[str, EntityState, Entity | None]]) -> tuple[Change, ...]:
    """What a commit will change, visibly: one Change per entity whose value differs."""
    changes: list[Change] = []
    for c, st, before in pending:
        after = None if st.deleted is not None else Entity(st.id, st.values)
        if after is None:
            if before is None:
                continue
            kind = "delete"
        elif before is None:
            kind = "create"
        else:
            if before.props == after.props:
                continue  # lost every LWW comparison: nothing visible changed
            kind = "update"
        changes.append(Change(c, st.id, kind, before, after))
    return tuple(changes)
