"""isolation — the same workload on D databases of one server, in parallel.

The stack's `database_client` hook gives a client per database (`iso<tag>_<i>`, fresh per phase) next
to the target durable node: in-process (`connector: direct`) or over a connector naming
the database (`websocket`, `inprocess`). On every database at once: create `rows`
entities (the same dataset rows, so every database holds look-alike data), subscribe
`subscribers` live queries over the whole collection, make `ops` updates of its own
entities (a fresh counter value each), then read back.

Figures: aggregate `create`, `update`, `get`, `fetch` latencies and `lag.notify`, plus
per database `update@<db>` and `lag.notify@<db>`; counters `databases`, `updates`,
`notifications`; `extra.per_database` (updates/s, lag p50/p99 per database).
Checks (no read, fetch or notification crosses a database boundary): every fetch of a
database returns exactly its own entities and values; a get of another database's ids
returns nothing; every notification carries only the database's own entities, and each
subscriber received each of its database's updates.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sprout_harness.contracts import hooks
from sprout_harness.contracts.client import Notification
from sprout_harness.contracts.query import QuerySpec
from sprout_harness.metrics.histogram import Histogram
from sprout_harness.workloads import datasets
from sprout_harness.workloads import realtime as rt
from sprout_harness.workloads.catalog import PhaseSpec, register_phase
from sprout_harness.workloads.context import PhaseContext
from sprout_harness.workloads.knobs import knob


@dataclass
class IsolationKnobs:
    databases: int = knob(3, "databases (D), each running the workload at the same time", min=1, max=100)
    rows: int = knob(200, "entities created in each database", min=1)
    ops: int = knob(200, "updates per database", min=1)
    subscribers: int = knob(2, "live queries (whole collection) per database", min=0)
    collection: str = knob("pets", "dataset kind", choices=("pets", "albums"))
    connector: str = knob(
        "direct",
        "how clients reach a database: direct (in-process node) or a connector "
        "naming the database (websocket, inprocess)",
    )
    batch_size: int = knob(100, "entities per create call", min=1)
    foreign_gets: int = knob(20, "gets of other databases' ids per database (must find nothing)", min=0)


@dataclass
class _Db:
    name: str
    client: Any
    props: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> expected props
    values: list[int] = field(default_factory=list)  # counter values committed
    seen: list[list[int]] = field(default_factory=list)  # per subscriber
    foreign: list[str] = field(default_factory=list)  # ids of other databases seen in notifications
    lag: Histogram = field(default_factory=Histogram)
    subs: list[Any] = field(default_factory=list)
    update_ns: int = 0


class Isolation:
    """One run of the phase, step by step, over its databases (`dbs`, in opening order)."""

    def __init__(self, ctx: PhaseContext, k: IsolationKnobs) -> None:
        (self.open_db,) = hooks.require(ctx, "database_client")
        self.ctx, self.k = ctx, k
        self.coll = k.collection
        self.field = rt.COUNTER_FIELD[k.collection]
        self.dbs: list[_Db] = []
        self.counter = rt.COUNTER_BASE  # the last counter value committed, over all databases

    async def open(self) -> None:
        """`databases` fresh databases next to the target durable node."""
        node = self.ctx.targets[0]
        connector = None if self.k.connector == "direct" else self.k.connector
        tag = uuid.uuid4().hex[:6]  # fresh databases: another phase's databases keep their data
        for i in range(self.k.databases):
            name = f"iso{tag}_{i}"
            client = await self.ctx.timed("open_database", self.open_db(node.index, name, connector))
            self.dbs.append(_Db(name, client))

    async def load(self) -> None:
        """The same `rows` dataset rows created in every database at once."""
        rows = datasets.build(self.coll, self.k.rows, self.ctx.seed, 0)

        async def load_one(db: _Db) -> None:
            for j in range(0, len(rows), self.k.batch_size):
                batch = rows[j : j + self.k.batch_size]
                ack = await self.ctx.timed("create", db.client.create(self.coll, batch))
                for id_, row in zip(ack.ids, batch):
                    db.props[id_] = dict(row)

        await asyncio.gather(*(load_one(db) for db in self.dbs))

    def on_notify(self, db: _Db, s: int, n: Notification) -> None:
        now = time.perf_counter_ns()
        if n.kind != "change":
            return
        if n.commit_ns is not None:
            db.lag.record(max(0, now - n.commit_ns))
        for d in (*n.added, *n.updated):
            if d.id not in db.props:
                db.foreign.append(d.id)
            v = d.props.get(self.field)
            if type(v) is int:
                db.seen[s].append(v)

    async def subscribe(self) -> None:
        """`subscribers` live queries over the whole collection on every database."""
        for db in self.dbs:
            for s in range(self.k.subscribers):
                db.seen.append([])
                db.subs.append(
                    await self.ctx.timed(
                        "subscribe",
                        db.client.subscribe(self.coll, QuerySpec(), lambda n, db=db, s=s: self.on_notify(db, s, n)),
                    )
                )

    async def update(self) -> None:
        """`ops` updates of its own entities on every database, the databases taking turns."""
        ctx = self.ctx

        async def update_one(db: _Db) -> None:
            ids = list(db.props)
            rng = ctx.rng.__class__(f"{ctx.seed}:isolation:{db.name}")
            t0 = time.perf_counter_ns()
            for _ in range(self.k.ops):
                id_ = ids[rng.randrange(len(ids))]
                self.counter += 1
                v = self.counter
                db.props[id_][self.field] = v
                t = time.perf_counter_ns()
                await ctx.timed("update", db.client.update(self.coll, id_, {self.field: v}))
                ctx.recorder.record(f"update@{db.name}", time.perf_counter_ns() - t)
                db.values.append(v)
                await asyncio.sleep(0)  # the databases take turns: they run in parallel
            db.update_ns = time.perf_counter_ns() - t0

        await asyncio.gather(*(update_one(db) for db in self.dbs))

    def notified(self) -> bool:
        """Every subscriber has as many notified values as its database has updates."""
        return all(len(s) >= len(db.values) for db in self.dbs for s in db.seen)

    async def crossings(self) -> list[str]:
        """What crossed a database boundary: a fetch with others' entities or values, a get
        that found another database's id, a notification carrying another's entity."""
        ctx, coll, k = self.ctx, self.coll, self.k
        crossed: list[str] = []
        for db in self.dbs:
            got = await ctx.timed("fetch", db.client.fetch(coll, QuerySpec()))
            got_props = {d.id: dict(d.props) for d in got}
            if set(got_props) != set(db.props):
                crossed.append(
                    f"{db.name}: fetch returned {len(got_props)} entities, expected its {len(db.props)} "
                    f"({len(set(got_props) - set(db.props))} not its own)"
                )
            else:
                wrong = [i for i, p in got_props.items() if p != db.props[i]]
                if wrong:
                    crossed.append(f"{db.name}: {len(wrong)} entities with other values, e.g. {wrong[0]}")
            others = [i for o in self.dbs if o is not db for i in list(o.props)[: k.foreign_gets]][: k.foreign_gets]
            for i in others:
                doc = await ctx.timed("get", db.client.get(coll, i))
                if doc is not None:
                    crossed.append(f"{db.name}: get of another database's id {i} found it")
                    break
            if db.foreign:
                crossed.append(
                    f"{db.name}: notifications carried {len(db.foreign)} other databases' entities, "
                    f"e.g. {db.foreign[0]}"
                )
        return crossed

    def deliveries(self) -> list[str]:
        """The subscribers that missed or got foreign or duplicate updates; the lag figures,
        aggregate and per database, into the recorder."""
        rec = self.ctx.recorder
        missed: list[str] = []
        per_db: dict[str, Any] = {}
        for db in self.dbs:
            for s, seen in enumerate(db.seen):
                missing, extra = rt.missing_and_extra(seen, db.values)
                if missing or extra:
                    missed.append(
                        f"{db.name} subscriber {s}: {len(missing)} of {len(db.values)} missing, "
                        f"{len(extra)} not its own or twice"
                    )
            rec.merge_lag("notify", db.lag)
            rec.merge_lag(f"notify@{db.name}", db.lag)
            per_db[db.name] = {
                "updates_per_s": round(self.k.ops / (db.update_ns / 1e9), 1) if db.update_ns else None,
                "lag": rt.lag_summary(db.lag),
            }
        rec.count("databases", len(self.dbs))
        rec.count("updates", sum(len(db.values) for db in self.dbs))
        rec.count("notifications", sum(db.lag.count for db in self.dbs))
        rec.extra["per_database"] = per_db
        rec.extra["connector"] = self.k.connector
        return missed

    async def close(self) -> None:
        """Every subscription and database client opened, whatever happened (best effort)."""
        for db in self.dbs:
            for sub in db.subs:
                try:
                    await sub.close()
                except Exception:
                    pass
            close = getattr(db.client, "close", None)
            if close is not None:
                try:
                    await close()
                except Exception:
                    pass


async def run(ctx: PhaseContext, k: IsolationKnobs) -> None:
    iso = Isolation(ctx, k)
    try:
        await iso.open()
        await iso.load()
        ctx.advance(1)
        await iso.subscribe()
        await iso.update()
        ctx.advance(1)
        await ctx.wait_for(iso.notified)
        crossed = await iso.crossings()
        missed = iso.deliveries()
        ctx.check_none("no read, fetch or notification crossed a database boundary", crossed)
        ctx.check_none("every subscriber received its database's updates, once", missed)
    finally:
        await iso.close()


register_phase(
    PhaseSpec(
        name="isolation",
        summary="the same workload on D databases in parallel; per-database and aggregate figures; no crossing",
        run=run,
        knobs=IsolationKnobs,
        needs=("create", "get", "fetch", "update", "subscribe"),
        targets=("durable",),
        metrics=(
            "open_database",
            "create",
            "subscribe",
            "update",
            "update@*",
            "fetch",
            "get",
            "lag.notify",
            "lag.notify@*",
        ),
    )
)
