"""Shared parts of the realtime scenarios (connection-scaling, subscription-scaling,
event-throughput, filtered-subscriptions): the fleet of connections with its live queries
and their checks (`LiveQueries`), hot entities, the commit stream. The trigger and
isolation phases commit on the same counter fields.

Every live query these scenarios open is `seq in (...)` over a dataset collection: an
equality-indexable predicate whose initial result the harness knows exactly (the `seq`
values it chose) and which a store can route without scanning (by (seq, value), or from a
`seq` index when one is declared). Commits set a counter field of a watched entity to a
fresh value (`mood` of pets, `tracks` of albums), so each notification says which commit
it carries.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from sprout_harness.contracts import Unsupported, hooks
from sprout_harness.contracts.query import AllOf, Cond, InList, QuerySpec
from sprout_harness.load.fleet import LocalFleet, WorkerFleet, measured_rss_bytes, stack_import_path
from sprout_harness.load.ray_fleet import RayFleet
from sprout_harness.metrics.histogram import Histogram
from sprout_harness.workloads import datasets
from sprout_harness.workloads.context import NodeRef, PhaseContext, ack_ns
from sprout_harness.workloads.knobs import knob

COUNTER_FIELD = {"pets": "mood", "albums": "tracks"}
COUNTER_BASE = 50_000_000  # above dataset values and other phases' counters

# the metrics every realtime phase records (`PhaseSpec.metrics`): the fleet's, both lags, and
# both lags per step where the phase has steps
FLEET_METRICS = ("connect", "subscribe", "create_hot")
LAG_METRICS = ("lag.notify", "lag.send_to_notify")
STEP_LAG_METRICS = (*LAG_METRICS, "lag.notify@*", "lag.send_to_notify@*")


def fleet_knob_processes() -> Any:
    return knob(0, "worker processes holding the connections (0: all in this process)", min=0, max=64)


def fleet_knob_connector() -> Any:
    return knob("", "connector of each connection (the stack's name for it; empty: the stack's first)")


def fleet_connector(ctx: PhaseContext, connector: str) -> str:
    """`connector`, or the stack's first when empty; Unsupported when the stack lacks it."""
    have = ctx.capabilities.connectors
    if not connector:
        if not have:
            raise Unsupported("the stack declares no connectors (Capabilities.connectors) to open connections over")
        return have[0]
    if have and connector not in have:
        raise Unsupported(f"the stack has no connector {connector!r} (it has: {', '.join(have)})")
    return connector


def fleet_knob_collection() -> Any:
    return knob("pets", "dataset kind the live queries watch", choices=("pets", "albums"))


def fleet_knob_concurrency() -> Any:
    return knob(50, "connections opened / subscriptions made at once", min=1)


async def make_fleet(ctx: PhaseContext, processes: int, connector: str, collection: str) -> Any:
    """A started fleet of connections to the target durable node (in-process or worker processes)."""
    node = ctx.targets[0]
    field = COUNTER_FIELD[collection]
    if processes == 0:
        connector = fleet_connector(ctx, connector)
        (open_connection,) = hooks.require(ctx, "open_connection")
        fleet: Any = LocalFleet(lambda i: open_connection(node.index, connector), field)
    else:
        (address_of,) = hooks.require(ctx, "connection_address")
        connect = getattr(type(ctx.stack), "connect_address", None)
        if not callable(connect):
            hooks.require(ctx, "connect_address")
        address = await worker_address(ctx, address_of, node.index, connector)
        return await start_worker_fleet(ctx, processes, address, field)
    await fleet.start()
    return fleet


async def start_worker_fleet(ctx: PhaseContext, processes: int, address: Any, field: str) -> Any:
    """A started fleet of `processes` workers (worker processes, or Ray actors as
    `runner.placement` says) whose clients reach `address`; Ray actors' whereabouts and clocks
    go into the phase's report. The caller closes it."""
    timeout = max(120.0, ctx.check_timeout_s * 4)
    fleet: Any
    if ctx.placement.get("engine") == "ray":
        fleet = RayFleet(
            ctx.placement["address"],
            ctx.placement.get("workers") or processes,
            stack_import_path(ctx.stack),
            address,
            field,
            timeout_s=timeout,
        )
    else:
        fleet = WorkerFleet(processes, stack_import_path(ctx.stack), address, field, timeout_s=timeout)
    try:
        await fleet.start()
    except BaseException:
        await fleet.close()
        raise
    if isinstance(fleet, RayFleet):
        _record_clocks(ctx, fleet.clocks())
    return fleet


def record_lags(ctx: PhaseContext, col: dict[str, Any], label: Any = None) -> None:
    """A fleet collection's lags into the phase: `lag.notify` from the store's stamp and
    `lag.send_to_notify` from the writer's send (when the collection had send times), and
    the same per step as `<name>@<label>`."""
    for name, hist in (("notify", col["lag"]), ("send_to_notify", col["lag_send"])):
        if name == "notify" or hist.count:
            ctx.recorder.merge_lag(name, hist)
            if label is not None:
                ctx.recorder.merge_lag(f"{name}@{label}", hist)


def fleet_mode(ctx: PhaseContext, processes: int) -> str:
    """Where a fleet of `processes` workers keeps its connections, as the report says it."""
    if not processes:
        return "in this process"
    if ctx.placement.get("engine") == "ray":
        return f"{ctx.placement.get('workers') or processes} Ray actors"
    return f"{processes} worker processes"


def _record_clocks(ctx: PhaseContext, clocks: list[dict[str, Any]]) -> None:
    """Where the Ray actors ran and how well their clocks are known: lags recorded on another
    host are corrected by the actor's offset estimate and carry its bound."""
    rec = ctx.recorder
    rec.extra["placement"] = f"ray: {len(clocks)} actors on {len({c['node'] for c in clocks})} node(s)"
    rec.extra["ray_actors"] = len(clocks)
    remote = [c for c in clocks if not c["same_host"]]
    rec.extra["ray_actors_on_other_hosts"] = len(remote)
    rec.extra["clock_offset_bound_us"] = max((c["bound_ns"] for c in remote), default=0) / 1e3
    same = [c for c in clocks if c["same_host"]]
    rec.check(
        "actors on this host estimate their clock offset as 0 within its bound",
        all(abs(c["estimate_ns"]) <= c["bound_ns"] for c in same),
        ", ".join(
            f"actor {c['actor']}: {c['estimate_ns'] / 1e3:+.0f} us (bound {c['bound_ns'] / 1e3:.0f})" for c in same
        )
        or "no actor on this host",
    )


async def worker_address(ctx: PhaseContext, address_of: Any, durable: int, connector: str) -> Any:
    """The address worker processes connect to: over `connector`, or when it is empty over the
    first of the stack's connectors whose `connection_address` is not Unsupported (a stack's
    in-process connector cannot be reached from another process)."""
    if connector:
        return await address_of(durable, fleet_connector(ctx, connector))
    why: list[str] = []
    for candidate in ctx.capabilities.connectors:
        try:
            return await address_of(durable, candidate)
        except Unsupported as exc:
            why.append(f"{candidate}: {exc}")
    raise Unsupported(
        "no connector of the stack can be reached from worker processes"
        + (f" ({'; '.join(why)})" if why else " (it declares none)")
    )


def server_stats(ctx: PhaseContext, node: NodeRef) -> dict[str, Any]:
    fn = hooks.find(ctx.stack, "server_stats")
    if fn is None:
        return {}
    try:
        return dict(fn(node.index) or {})
    except Exception as exc:  # figures only: never break the phase for them
        ctx.recorder.error("server_stats", str(exc)[:200])
        return {}


def stats_growth(before: dict[str, Any], after: dict[str, Any], key: str, per: int) -> int | None:
    """How much `server_stats` figure `key` grew per unit (connection, subscription) between two
    readings, or None when the stack does not report it."""
    if before.get(key) is None or after.get(key) is None:
        return None
    return int((after[key] - before[key]) // per)


def rss() -> int:
    return measured_rss_bytes()


@dataclass
class Hot:
    """Entities the phase created to commit on: `ids[i]` has `seq` `seqs[i]`."""

    collection: str
    ids: list[str]
    seqs: list[int]


async def create_hot(ctx: PhaseContext, node: NodeRef, collection: str, n: int) -> Hot:
    start = ctx.allocate(collection, n)
    rows = datasets.build(collection, n, ctx.seed, start)
    ack = await ctx.timed("create_hot", node.client.create(collection, rows))
    ctx.require("hot entities created", len(ack.ids) == n, f"{len(ack.ids)} ids for {n} rows")
    model = ctx.model(node)
    for id_, row in zip(ack.ids, rows):
        model.put(collection, id_, row)
    return Hot(collection, list(ack.ids), [int(r["seq"]) for r in rows])  # type: ignore[arg-type]


def seq_index(ctx: PhaseContext, node: NodeRef, collection: str) -> dict[int, str]:
    """seq -> id of the group's current entities of `collection`."""
    return {int(p["seq"]): i for i, p in ctx.model(node).data.get(collection, {}).items()}  # type: ignore[arg-type]


def watch_query(seqs: list[int]) -> QuerySpec:
    return QuerySpec(InList("seq", tuple(sorted(set(seqs)))), kind="in")


def range_query(lo: int, hi: int) -> QuerySpec:
    """`seq >= lo and seq < hi`: not routable by an equality index (every commit is checked)."""
    return QuerySpec(AllOf((Cond("seq", ">=", lo), Cond("seq", "<", hi))), kind="range")


def dataset_seqs(seqs: dict[int, str], seeded: int, count: int, offset: int) -> list[int]:
    """`count` seeded seq values (0 <= seq < seeded, still present) for live query number `offset`:
    deterministic and spread out, so neighbouring queries watch rows far apart."""
    if seeded <= 0 or count <= 0 or not seqs:
        return []
    out: list[int] = []
    stride = 7919  # a prime
    for j in range(count):
        s = (offset * count + j) * stride % seeded
        for _ in range(seeded):  # a row an earlier phase deleted: take the next one
            if s in seqs and s not in out:
                break
            s = (s + 1) % seeded
        else:
            return out
        out.append(s)
    return out


@dataclass
class Commit:
    value: int
    entity: str
    commit_ns: int  # the store's stamp, else when the call returned
    sent_ns: int = 0  # when the writer sent it (this process's clock)


@dataclass
class CommitStream:
    """Updates of the counter field through one node, each with a fresh value."""

    ctx: PhaseContext
    writer: NodeRef
    collection: str
    commits: list[Commit] = field(default_factory=list)
    next_value: int = COUNTER_BASE

    @property
    def field(self) -> str:
        return COUNTER_FIELD[self.collection]

    async def commit(self, entity: str, op: str = "update") -> Commit:
        self.next_value += 1
        v = self.next_value
        props = {self.field: v}
        self.ctx.model(self.writer).update(self.collection, entity, props)
        sent = time.perf_counter_ns()
        ack = await self.ctx.timed(op, self.writer.client.update(self.collection, entity, props))
        c = Commit(v, entity, ack_ns(ack, time.perf_counter_ns()), sent)
        self.commits.append(c)
        return c

    def sent(self) -> dict[int, int]:
        """Counter value -> when the writer sent that commit."""
        return {c.value: c.sent_ns for c in self.commits}

    async def run(self, entities: list[str], n: int, interval_ms: float, op: str = "update") -> list[Commit]:
        out = []
        for i in range(n):
            out.append(await self.commit(entities[i % len(entities)], op))
            await asyncio.sleep(interval_ms / 1000)  # also lets deliveries run between commits
        return out


async def wait_counts(ctx: PhaseContext, fleet: Any, expected: list[int], timeout: float | None = None) -> bool:
    """Poll until every subscription has seen at least its expected number of values."""
    deadline = time.monotonic() + (timeout if timeout is not None else ctx.check_timeout_s)
    delay = 0.005
    while True:
        counts = await fleet.counts()
        if all(c >= e for c, e in zip(counts, expected)):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


def missing_and_extra(seen: list[int], expected: list[int]) -> tuple[list[int], list[int]]:
    """Values expected but not seen, and values seen that were not expected (or seen twice)."""
    exp = set(expected)
    missing = [v for v in expected if v not in set(seen)]
    extra, once = [], set()
    for v in seen:
        if v not in exp or v in once:
            extra.append(v)
        once.add(v)
    return missing, extra


def lag_summary(h: Histogram) -> dict[str, float | None]:
    if not h.count:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    p50, p99 = h.percentiles((50.0, 99.0))
    return {
        "count": h.count,
        "p50_ms": round(p50 / 1e6, 3),
        "p99_ms": round(p99 / 1e6, 3),
        "max_ms": round(h.max / 1e6, 3),
    }


def initial_mismatches(results: list[list[str] | None], expected: list[set[str]], limit: int = 3) -> list[str]:
    out = []
    for s, (got, exp) in enumerate(zip(results, expected)):
        if got is None:
            continue  # a failed subscription is counted as a failure
        if set(got) != exp:
            out.append(
                f"subscription {s}: {len(got)} results, expected {len(exp)} "
                f"(missing {len(exp - set(got))}, unexpected {len(set(got) - exp)})"
            )
            if len(out) >= limit:
                break
    return out


@dataclass
class LiveQueries:
    """A fleet of connections to the target durable node and the live queries opened on it,
    with what every realtime phase checks of them: from which commit on each live query must
    see every commit (`since`), failed connections or subscriptions, wrong initial results.
    `async with` closes the fleet whatever happens."""

    ctx: PhaseContext
    fleet: Any
    stream: CommitStream
    ids: dict[int, str] = field(default_factory=dict)  # seq -> id of every entity a query may watch
    since: list[int] = field(default_factory=list)  # per live query: its first commit to see
    wrong_initial: list[str] = field(default_factory=list)
    failures: int = 0
    errors: list[str] = field(default_factory=list)

    @classmethod
    async def start(
        cls, ctx: PhaseContext, stream: CommitStream, processes: int, connector: str, ids: dict[int, str] | None = None
    ) -> LiveQueries:
        return cls(ctx, await make_fleet(ctx, processes, connector, stream.collection), stream, ids or {})

    async def __aenter__(self) -> LiveQueries:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.fleet.close()

    async def connect(self, n: int, concurrency: int) -> int:
        """Open `n` connections, each required to open; the number open."""
        res = await self.fleet.open(n, concurrency)
        self.ctx.recorder.latency("connect").merge(res["connect"])
        self.ctx.require(
            "every connection opened",
            res["failures"] == 0 and res["open"] > 0,
            f"{res['failures']} failed: {'; '.join(res['errors'][:2])}",
        )
        return int(res["open"])

    def expected(self, specs: list[tuple[int, str, QuerySpec]]) -> list[set[str]]:
        """The initial result of each `seq in (...)` live query of `specs`."""
        return [{self.ids[v] for v in q.where.values} for _, _, q in specs]  # type: ignore[union-attr]

    def subscribed(self, specs: list[tuple[int, str, QuerySpec]], sres: dict[str, Any]) -> None:
        """Book a `fleet.subscribe(specs)` answer: its latencies, failures and initial results;
        each of these live queries must see every commit from now on."""
        self.ctx.recorder.latency("subscribe").merge(sres["initial"])
        self.failures += sres["failures"]
        self.errors += sres["errors"]
        self.wrong_initial += initial_mismatches(sres["results"], self.expected(specs))
        self.since += [len(self.stream.commits)] * len(specs)

    async def subscribe(self, specs: list[tuple[int, str, QuerySpec]], concurrency: int) -> dict[str, Any]:
        sres = await self.fleet.subscribe(specs, concurrency)
        self.subscribed(specs, sres)
        return sres

    async def delivered(self, label: int) -> dict[str, Any]:
        """Wait until every live query has seen the commits it owes, collect: lag into
        `lag.notify` and `lag.notify@<label>`."""
        await wait_counts(self.ctx, self.fleet, [len(self.stream.commits) - s for s in self.since])
        col = await self.fleet.collect(self.stream.sent())
        record_lags(self.ctx, col, label)
        return col

    async def deliveries(self) -> list[tuple[list[int], list[int], int]]:
        """After the last commit (late arrivals collected too), per live query: the commit
        values it missed, those it got unexpectedly or twice, and how many it was owed."""
        final = await self.fleet.collect(self.stream.sent())
        record_lags(self.ctx, final)
        out = []
        for s, since in enumerate(self.since):
            expect = [c.value for c in self.stream.commits[since:]]
            missing, extra = missing_and_extra(final["seen"][s], expect)
            out.append((missing, extra, len(expect)))
        return out

    def check_started(self, name: str) -> None:
        """`name` holds when nothing failed to open or subscribe; every initial result is exact."""
        self.ctx.check(name, self.failures == 0, f"{self.failures} failed: {'; '.join(self.errors[:2])}")
        self.ctx.check_none("initial results are the watched rows", self.wrong_initial)
