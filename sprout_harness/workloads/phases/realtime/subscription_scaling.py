"""subscription-scaling — S live queries spread over a fixed set of connections, added in steps.

`connections` connections are opened first (as in connection-scaling: this process or
`processes` worker processes). Each step adds `subscriptions / steps` live queries,
round-robin over the connections; live query s is `seq in (beacon, result_size seeded
rows)`. After each step `commits_per_step` beacon commits reach every live query.

Figures: `subscribe` (time to initial result, all steps) and `subscribe@<S>` per step,
`connect`, `update`, `lag.notify` and `lag.notify@<S>`; counters `subscriptions`,
`subscribe_failures`, `server_live_query_bytes_per_subscription` (the stack's
`server_stats` estimate), `rss_per_subscription_bytes` (this process: the server, and
the clients too when processes=0); `extra.steps` per step.
Checks: every subscription started, every initial result is exactly its rows, every live
query received every commit made after it started.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sprout_harness.contracts.errors import ConfigError
from sprout_harness.workloads import realtime as rt
from sprout_harness.workloads.catalog import PhaseSpec, register_phase
from sprout_harness.workloads.context import PhaseContext
from sprout_harness.workloads.knobs import knob


@dataclass
class SubscriptionScalingKnobs:
    subscriptions: int = knob(200, "live queries open at the end (S)", min=1)
    connections: int = knob(10, "connections the live queries are spread over", min=1)
    steps: int = knob(4, "steps to reach S", min=1)
    processes: int = rt.fleet_knob_processes()
    connector: str = rt.fleet_knob_connector()
    concurrency: int = rt.fleet_knob_concurrency()
    collection: str = rt.fleet_knob_collection()
    result_size: int = knob(4, "seeded rows in each live query's result (plus the beacon)", min=0)
    commits_per_step: int = knob(10, "beacon commits after each step (every live query sees each)", min=1)
    commit_interval_ms: float = knob(10.0, "pause between two beacon commits", min=0)

    def validate(self, path: str) -> None:
        if self.steps > self.subscriptions:
            raise ConfigError(f"steps={self.steps} is more than subscriptions={self.subscriptions}", f"{path}.steps")


async def run(ctx: PhaseContext, k: SubscriptionScalingKnobs) -> None:
    node = ctx.targets[0]
    coll = k.collection
    seeded = ctx.datasets.get(coll, 0)
    ctx.require(
        "dataset present",
        k.result_size == 0 or seeded > 0,
        f"result_size={k.result_size} needs seeded {coll}: raise datasets.{coll}",
    )
    seqs = rt.seq_index(ctx, node, coll)
    beacon = await rt.create_hot(ctx, node, coll, 1)
    stream = rt.CommitStream(ctx, node, coll)
    rec = ctx.recorder
    live = await rt.LiveQueries.start(ctx, stream, k.processes, k.connector, {**seqs, beacon.seqs[0]: beacon.ids[0]})
    steps = []
    async with live:
        conns = await live.connect(k.connections, k.concurrency)
        base_server = rt.server_stats(ctx, node).get("live_query_memory_bytes")
        base_rss = rt.rss()
        total = 0
        for step in range(k.steps):
            target = round(k.subscriptions * (step + 1) / k.steps)
            specs = [
                (s % conns, coll, rt.watch_query([beacon.seqs[0], *rt.dataset_seqs(seqs, seeded, k.result_size, s)]))
                for s in range(total, target)
            ]
            rss0, st0 = rt.rss(), rt.server_stats(ctx, node)
            t0 = time.perf_counter_ns()
            sres = await live.fleet.subscribe(specs, k.concurrency)
            wall = time.perf_counter_ns() - t0
            live.subscribed(specs, sres)
            rec.latency(f"subscribe@{target}").merge(sres["initial"])
            rss1, st1 = rt.rss(), rt.server_stats(ctx, node)
            total = target

            await stream.run(beacon.ids, k.commits_per_step, k.commit_interval_ms)
            col = await live.delivered(target)
            added = max(1, len(specs))
            row = {
                "subscriptions": target,
                "added": len(specs),
                "subscribe_wall_s": round(wall / 1e9, 3),
                "initial_result": rt.lag_summary(sres["initial"]),
                "rss_per_subscription_bytes": (rss1 - rss0) // added,
                "server_live_queries": st1.get("live_queries"),
                "lag": rt.lag_summary(col["lag"]),
            }
            grown = rt.stats_growth(st0, st1, "live_query_memory_bytes", added)
            if grown is not None:
                row["server_live_query_bytes_per_subscription"] = grown
            steps.append(row)
            ctx.advance(len(specs))

        lost = [
            f"subscription {s} missed {len(missing)} of {owed} commits"
            for s, (missing, _, owed) in enumerate(await live.deliveries())
            if missing
        ]
        rec.count("subscriptions", total)
        rec.count("subscribe_failures", live.failures)
        rec.count("rss_per_subscription_bytes", max(0, (rt.rss() - base_rss) // max(1, total)))
        top = rt.server_stats(ctx, node).get("live_query_memory_bytes")
        if top is not None and base_server is not None:
            rec.count("server_live_query_bytes_per_subscription", max(0, (top - base_server) // max(1, total)))
        rec.extra["steps"] = steps
        live.check_started("every subscription started")
        ctx.check_none("every live query received every commit", lost)


register_phase(
    PhaseSpec(
        name="subscription-scaling",
        summary="S live queries over the connections in steps; time to initial result, server memory per subscription",
        run=run,
        knobs=SubscriptionScalingKnobs,
        needs=("subscribe", "update"),
        targets=("durable",),
        metrics=(*rt.FLEET_METRICS, "subscribe@*", "update", *rt.STEP_LAG_METRICS),
    )
)
