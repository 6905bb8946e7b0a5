"""filtered-subscriptions — many live queries, each write matching only a fraction of them.

The phase creates G = round(1 / match_fraction) groups of 2 hot entities plus one cold
entity nobody watches. `subscriptions` live queries (over `connections` connections)
each watch one group: `seq in (a, b)` (`predicate: equality`, which a store can route
by value) or `seq >= a and seq < a + 2` (`predicate: range`, which it must test on
every write). Three rounds of commits:

1. `baseline_commits` updates of the cold entity before any subscription: `commit@0_subs`;
2. the same with every subscription live, none matching: `commit@nonmatching` — the
   cost of non-matching writes is the difference (`extra.nonmatching_overhead_*`);
3. `commits` updates of random hot entities: `commit@matching`; each matches the
   subscriptions of one group only (~match_fraction of them). `lag.notify` is the lag
   of the matching ones.

Checks: every subscription's initial result is its group; matching subscribers got
exactly their notifications (each commit to their group once, none missing); no
subscriber got a notification for a write it does not match (the cold entity, other
groups). Counters: `matching_notifications`, `groups`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sprout_harness.workloads import realtime as rt
from sprout_harness.workloads.catalog import PhaseSpec, register_phase
from sprout_harness.workloads.context import PhaseContext
from sprout_harness.workloads.knobs import knob


@dataclass
class FilteredSubscriptionsKnobs:
    subscriptions: int = knob(100, "live queries", min=1)
    match_fraction: float = knob(0.1, "fraction of the live queries each matching write matches", min=0.001, max=1)
    predicate: str = knob(
        "equality",
        "how a live query names its group: equality (seq in (a, b)) or range (seq >= a and seq < a+2)",
        choices=("equality", "range"),
    )
    connections: int = knob(10, "connections the live queries are spread over", min=1)
    processes: int = rt.fleet_knob_processes()
    connector: str = rt.fleet_knob_connector()
    concurrency: int = rt.fleet_knob_concurrency()
    collection: str = rt.fleet_knob_collection()
    commits: int = knob(100, "matching commits (round 3)", min=1)
    baseline_commits: int = knob(100, "non-matching commits in rounds 1 and 2 each", min=1)
    commit_interval_ms: float = knob(1.0, "pause between two commits", min=0)


async def run(ctx: PhaseContext, k: FilteredSubscriptionsKnobs) -> None:
    node = ctx.targets[0]
    coll = k.collection
    groups = max(1, min(k.subscriptions, round(1 / k.match_fraction)))
    hot = await rt.create_hot(ctx, node, coll, 2 * groups + 1)
    cold = hot.ids[-1]
    stream = rt.CommitStream(ctx, node, coll)
    rec = ctx.recorder
    rec.count("groups", groups)

    def query(g: int):  # type: ignore[no-untyped-def]
        a = hot.seqs[2 * g]
        return rt.watch_query([a, hot.seqs[2 * g + 1]]) if k.predicate == "equality" else rt.range_query(a, a + 2)

    await stream.run([cold], k.baseline_commits, k.commit_interval_ms, op="commit@0_subs")
    live = await rt.LiveQueries.start(ctx, stream, k.processes, k.connector)
    fleet = live.fleet
    async with live:
        conns = await live.connect(k.connections, k.concurrency)
        group_of = [s % groups for s in range(k.subscriptions)]
        specs = [(s % conns, coll, query(group_of[s])) for s in range(k.subscriptions)]
        sres = await fleet.subscribe(specs, k.concurrency)
        rec.latency("subscribe").merge(sres["initial"])
        ctx.require(
            "every subscription started",
            sres["failures"] == 0,
            f"{sres['failures']} failed: {'; '.join(sres['errors'][:2])}",
        )
        wrong = rt.initial_mismatches(sres["results"], [{hot.ids[2 * g], hot.ids[2 * g + 1]} for g in group_of])
        ctx.check_none("initial results are the group's entities", wrong)
        ctx.advance(1)

        await stream.run([cold], k.baseline_commits, k.commit_interval_ms, op="commit@nonmatching")
        ctx.advance(1)
        first_matching = len(stream.commits)
        rng = ctx.rng
        for _ in range(k.commits):
            g = rng.randrange(groups)
            await stream.commit(hot.ids[2 * g + rng.randrange(2)], op="commit@matching")
            if k.commit_interval_ms:
                await asyncio.sleep(k.commit_interval_ms / 1000)
        ctx.advance(1)
        entity_group = {hot.ids[i]: i // 2 for i in range(2 * groups)}
        expected = [
            [c.value for c in stream.commits[first_matching:] if entity_group.get(c.entity) == group_of[s]]
            for s in range(k.subscriptions)
        ]
        await rt.wait_counts(ctx, fleet, [len(e) for e in expected])
        # Nothing more is owed; a short grace lets a stray (wrong) delivery show up before we look.
        await asyncio.sleep(min(0.2, ctx.check_timeout_s))
        col = await fleet.collect(stream.sent())
        rt.record_lags(ctx, col)
        rec.count("matching_notifications", col["notifications"])
        missing_subs, extra_subs = [], []
        for s in range(k.subscriptions):
            missing, extra = rt.missing_and_extra(col["seen"][s], expected[s])
            if missing:
                missing_subs.append(
                    f"subscription {s} (group {group_of[s]}) missed {len(missing)} of {len(expected[s])}"
                )
            if extra:
                extra_subs.append(
                    f"subscription {s} (group {group_of[s]}) got {len(extra)} it does not match "
                    f"or twice (e.g. value {extra[0]})"
                )
        base = rec.latency("commit@0_subs")
        non = rec.latency("commit@nonmatching")
        if base.count and non.count:
            for q in (50.0, 99.0):
                rec.extra[f"nonmatching_overhead_p{q:g}_ms"] = round((non.percentile(q) - base.percentile(q)) / 1e6, 4)
        rec.extra["groups"] = groups
        rec.extra["subscriptions_per_matching_write"] = round(k.subscriptions / groups, 1)
        ctx.check_none("matching subscribers got exactly their notifications", missing_subs)
        ctx.check_none("non-matching subscribers got none", extra_subs)


register_phase(
    PhaseSpec(
        name="filtered-subscriptions",
        summary="many live queries, each write matching a fraction; lag of matching, cost of non-matching writes",
        run=run,
        knobs=FilteredSubscriptionsKnobs,
        needs=("subscribe", "update"),
        targets=("durable",),
        metrics=(*rt.FLEET_METRICS, "commit@0_subs", "commit@nonmatching", "commit@matching", *rt.LAG_METRICS),
    )
)
