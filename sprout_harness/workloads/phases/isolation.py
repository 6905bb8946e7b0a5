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
    connector: str = knob("direct", "how clients reach a database: direct (in-process node) or a connector "
                          "naming the database (websocket, inprocess)")
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


async def run(ctx: PhaseContext, k: IsolationKnobs) -> None:
    (open_db,) = hooks.require(ctx, "database_client")
    node = ctx.targets[0]
    coll = k.collection
    fieldname = rt.COUNTER_FIELD[coll]
    connector = None if k.connector == "direct" else k.connector
    rec = ctx.recorder
    dbs: list[_Db] = []
    try:
        tag = uuid.uuid4().hex[:6]  # fresh databases: another phase's databases keep their data
        for i in range(k.databases):
            name = f"iso{tag}_{i}"
            client = await ctx.timed("open_database", open_db(node.index, name, connector))
            dbs.append(_Db(name, client))
        rows = datasets.build(coll, k.rows, ctx.seed, 0)  # the same rows in every database

        async def load(db: _Db) -> None:
            for j in range(0, len(rows), k.batch_size):
                batch = rows[j:j + k.batch_size]
                ack = await ctx.timed("create", db.client.create(coll, batch))
                for id_, row in zip(ack.ids, batch):
                    db.props[id_] = dict(row)

        await asyncio.gather(*(load(db) for db in dbs))
        ctx.advance(1)

        def on_notify(db: _Db, s: int, n: Notification) -> None:
            now = time.perf_counter_ns()
            if n.kind != "change":
                return
            if n.commit_ns is not None:
                db.lag.record(max(0, now - n.commit_ns))
            for d in (*n.added, *n.updated):
                if d.id not in db.props:
                    db.foreign.append(d.id)
                v = d.props.get(fieldname)
                if type(v) is int:
                    db.seen[s].append(v)

        for db in dbs:
            for s in range(k.subscribers):
                db.seen.append([])
                db.subs.append(await ctx.timed("subscribe", db.client.subscribe(
                    coll, QuerySpec(), lambda n, db=db, s=s: on_notify(db, s, n))))

        counter = {"v": rt.COUNTER_BASE}

        async def update(db: _Db) -> None:
            ids = list(db.props)
            rng = ctx.rng.__class__(f"{ctx.seed}:isolation:{db.name}")
            t0 = time.perf_counter_ns()
            for _ in range(k.ops):
                id_ = ids[rng.randrange(len(ids))]
                counter["v"] += 1
                v = counter["v"]
                db.props[id_][fieldname] = v
                t = time.perf_counter_ns()
                await ctx.timed("update", db.client.update(coll, id_, {fieldname: v}))
                rec.record(f"update@{db.name}", time.perf_counter_ns() - t)
                db.values.append(v)
                await asyncio.sleep(0)  # the databases take turns: they run in parallel
            db.update_ns = time.perf_counter_ns() - t0

        await asyncio.gather(*(update(db) for db in dbs))
        ctx.advance(1)
        await ctx.wait_for(lambda: all(len(s) >= len(db.values) for db in dbs for s in db.seen))

        crossed: list[str] = []
        for db in dbs:
            got = await ctx.timed("fetch", db.client.fetch(coll, QuerySpec()))
            got_props = {d.id: dict(d.props) for d in got}
            if set(got_props) != set(db.props):
                crossed.append(f"{db.name}: fetch returned {len(got_props)} entities, expected its {len(db.props)} "
                               f"({len(set(got_props) - set(db.props))} not its own)")
            else:
                wrong = [i for i, p in got_props.items() if p != db.props[i]]
                if wrong:
                    crossed.append(f"{db.name}: {len(wrong)} entities with other values, e.g. {wrong[0]}")
            others = [i for o in dbs if o is not db for i in list(o.props)[:k.foreign_gets]][:k.foreign_gets]
            for i in others:
                doc = await ctx.timed("get", db.client.get(coll, i))
                if doc is not None:
                    crossed.append(f"{db.name}: get of another database's id {i} found it")
                    break
            if db.foreign:
                crossed.append(f"{db.name}: notifications carried {len(db.foreign)} other databases' entities, "
                               f"e.g. {db.foreign[0]}")
        missed: list[str] = []
        per_db: dict[str, Any] = {}
        for db in dbs:
            for s, seen in enumerate(db.seen):
                missing, extra = rt.missing_and_extra(seen, db.values)
                if missing or extra:
                    missed.append(f"{db.name} subscriber {s}: {len(missing)} of {len(db.values)} missing, "
                                  f"{len(extra)} not its own or twice")
            rec.merge_lag("notify", db.lag)
            rec.merge_lag(f"notify@{db.name}", db.lag)
            per_db[db.name] = {"updates_per_s": round(k.ops / (db.update_ns / 1e9), 1) if db.update_ns else None,
                               "lag": rt.lag_summary(db.lag)}
        rec.count("databases", len(dbs))
        rec.count("updates", sum(len(db.values) for db in dbs))
        rec.count("notifications", sum(db.lag.count for db in dbs))
        rec.extra["per_database"] = per_db
        rec.extra["connector"] = k.connector
        ctx.check_none("no read, fetch or notification crossed a database boundary", crossed)
        ctx.check_none("every subscriber received its database's updates, once", missed)
    finally:
        for db in dbs:
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


register_phase(PhaseSpec(
    name="isolation",
    summary="the same workload on D databases in parallel; per-database and aggregate figures; no crossing",
    run=run,
    knobs=IsolationKnobs,
    needs=("create", "get", "fetch", "update", "subscribe"),
    targets=("durable",),
    metrics=("open_database", "create", "subscribe", "update", "update@*", "fetch", "get", "lag.notify",
             "lag.notify@*"),
))
