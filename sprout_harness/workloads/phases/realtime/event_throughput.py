"""event-throughput — sustained commits fanned out to a growing number of subscribers.

`connections` connections (this process or `processes` workers) hold the subscribers.
Each step raises the subscriber count to `subscribers * (step+1) / steps`; every
subscriber watches the `hot` entities the phase creates (`seq in (...)`, plus one seeded
row of its own so no two queries are identical). Then `commits_per_step` commits update
the hot entities in turn, back to back or paced by `rate` (commits/s), and each reaches
every subscriber.

Figures per step k (subscribers): `lag.notify@<k>`, counter
`notifications_per_s@<k>` (notifications delivered / time from the step's first commit
to its last delivery) and `extra.steps`; overall `lag.notify`, `update` latency,
counters `notifications`, `commits`.
Check: every notification arrived — each subscriber received every commit made after it
subscribed, exactly once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sprout_harness.contracts.errors import ConfigError
from sprout_harness.workloads import realtime as rt
from sprout_harness.workloads.catalog import PhaseSpec, register_phase
from sprout_harness.workloads.context import PhaseContext
from sprout_harness.workloads.knobs import knob


@dataclass
class EventThroughputKnobs:
    subscribers: int = knob(100, "subscribers at the last step (the largest fan-out)", min=1)
    steps: int = knob(3, "fan-out steps", min=1)
    connections: int = knob(10, "connections the subscribers are spread over", min=1)
    processes: int = rt.fleet_knob_processes()
    connector: str = rt.fleet_knob_connector()
    concurrency: int = rt.fleet_knob_concurrency()
    collection: str = rt.fleet_knob_collection()
    hot: int = knob(4, "entities the commits update (every subscriber watches all of them)", min=1)
    commits_per_step: int = knob(200, "commits per step", min=1)
    rate: float = knob(0.0, "commits per second (0: each commit as soon as the previous one is acked)", min=0)

    def validate(self, path: str) -> None:
        if self.steps > self.subscribers:
            raise ConfigError(f"steps={self.steps} is more than subscribers={self.subscribers}", f"{path}.steps")


async def run(ctx: PhaseContext, k: EventThroughputKnobs) -> None:
    node = ctx.targets[0]
    coll = k.collection
    seeded = ctx.datasets.get(coll, 0)
    seqs = rt.seq_index(ctx, node, coll)
    hot = await rt.create_hot(ctx, node, coll, k.hot)
    stream = rt.CommitStream(ctx, node, coll)
    rec = ctx.recorder
    live = await rt.LiveQueries.start(ctx, stream, k.processes, k.connector, {**seqs, **dict(zip(hot.seqs, hot.ids))})
    steps = []
    async with live:
        conns = await live.connect(k.connections, k.concurrency)
        total = 0
        for step in range(k.steps):
            target = round(k.subscribers * (step + 1) / k.steps)
            specs = [
                (s % conns, coll, rt.watch_query([*hot.seqs, *rt.dataset_seqs(seqs, seeded, 1, s)]))
                for s in range(total, target)
            ]
            await live.subscribe(specs, k.concurrency)
            total = target
            await live.fleet.collect()  # start the step's counts from zero

            t0 = time.perf_counter_ns()
            gap_s = 1.0 / k.rate if k.rate > 0 else 0.0
            for i in range(k.commits_per_step):
                await stream.commit(hot.ids[i % len(hot.ids)])
                if gap_s:  # paced on a fixed timeline: a slow commit is not followed by a pause
                    due = t0 + int((i + 1) * gap_s * 1e9)
                    await asyncio.sleep(max(0.0, (due - time.perf_counter_ns()) / 1e9))
                elif i % 16 == 15:
                    await asyncio.sleep(0)
            commit_wall = time.perf_counter_ns() - t0
            col = await live.delivered(target)
            span = (col["last_ns"] - t0) if col["last_ns"] is not None else 0
            rate = round(col["notifications"] / (span / 1e9)) if span > 0 else 0
            rec.count(f"notifications_per_s@{target}", rate)
            rec.count("notifications", col["notifications"])
            steps.append(
                {
                    "subscribers": target,
                    "commits": k.commits_per_step,
                    "commits_per_s": round(k.commits_per_step / (commit_wall / 1e9), 1) if commit_wall else None,
                    "notifications": col["notifications"],
                    "notifications_per_s": rate,
                    "delivery_span_s": round(span / 1e9, 3),
                    "lag": rt.lag_summary(col["lag"]),
                }
            )
            ctx.advance(1)

        bad = [
            f"subscriber {s}: {len(missing)} of {owed} missing, {len(extra)} unexpected/duplicate"
            for s, (missing, extra, owed) in enumerate(await live.deliveries())
            if missing or extra
        ]
        if bad:
            slow = rt.server_stats(ctx, node).get("slow_connections_closed")
            if slow:  # the likely cause, first: the server's backpressure dropped slow readers
                bad.insert(0, f"the server closed {slow} connection(s) whose client did not keep up")
        rec.count("commits", len(stream.commits))
        rec.count("subscribers", total)
        rec.extra["steps"] = steps
        live.check_started("every subscription started")
        ctx.check_none("every notification arrived, once", bad, "subscribers")


register_phase(
    PhaseSpec(
        name="event-throughput",
        summary="sustained commits fanned out to a growing number of subscribers; notifications/s and lag per fan-out",
        run=run,
        knobs=EventThroughputKnobs,
        needs=("subscribe", "update"),
        targets=("durable",),
        metrics=(*rt.FLEET_METRICS, "update", *rt.STEP_LAG_METRICS),
    )
)
