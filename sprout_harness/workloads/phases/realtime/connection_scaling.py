"""connection-scaling — open C client connections in steps, each holding a live query.

Connections are ephemeral clients over `connector` (WebSocket by default) to the target
durable node, opened by the stack's `open_connection` hook in this process, or by
`processes` worker processes (the stack's `connection_address` / `connect_address`
hooks). Each step opens `connections / steps` more (`connect_concurrency` at a time);
each new connection subscribes one live query `seq in (beacon, w1..w_watch)`: a beacon
entity the phase creates plus `watch` seeded rows of its own. Then `commits_per_step`
commits update the beacon, so every connection observes every commit.

Figures: `connect` (per connection: open + handshake), `subscribe` (time to initial
result), `update` (beacon commits), `lag.notify` (commit -> notification, all
connections) and `lag.notify@<C>` per step, `lag.send_to_notify` (the writer's send ->
notification, on the load generator's clocks) likewise; counters `connections`,
`connect_failures`, `rss_per_connection_bytes` (this process's RSS growth per
connection: the server and, with processes=0, the clients too),
`client_rss_per_connection_bytes` (worker processes), `server_live_query_bytes_per_connection`
(the stack's own estimate, `server_stats`), `server_rss_per_connection_bytes` (when the
server runs in a process of its own and `server_stats` reports its `rss_bytes`); `extra.steps`
has each step's figures. With `raw_floor`, each step also measures the fan-out floor at the same
connection count (`workloads.broadcast_floor`: bare websockets, one pre-encoded message
broadcast to as many connections in a worker process), as `lag.floor@<C>`, with the step's
`lag_over_floor_p50` / `_p99`.
Checks: every connection opened, every initial result is exactly the watched rows,
every connection received every commit made after it subscribed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sprout_harness.contracts.errors import ConfigError
from sprout_harness.workloads import realtime as rt
from sprout_harness.workloads.broadcast_floor import broadcast_floor
from sprout_harness.workloads.catalog import PhaseSpec, register_phase
from sprout_harness.workloads.context import PhaseContext
from sprout_harness.workloads.knobs import knob


@dataclass
class ConnectionScalingKnobs:
    connections: int = knob(100, "connections open at the end (C)", min=1)
    steps: int = knob(4, "steps to reach C (each opens C/steps more, then measures)", min=1)
    processes: int = rt.fleet_knob_processes()
    connector: str = rt.fleet_knob_connector()
    connect_concurrency: int = rt.fleet_knob_concurrency()
    collection: str = rt.fleet_knob_collection()
    watch: int = knob(2, "seeded rows each connection's live query holds besides the beacon", min=0)
    commits_per_step: int = knob(20, "beacon commits after each step (observed by every connection)", min=1)
    commit_interval_ms: float = knob(20.0, "pause between two beacon commits", min=0)
    raw_floor: bool = knob(
        False,
        "after each step, the fan-out floor at the same connection count: "
        "bare websockets broadcast to a worker process (lag.floor@<C>)",
    )
    raw_floor_bytes: int = knob(300, "size of the floor's broadcast message", min=24, max=1 << 20)

    def validate(self, path: str) -> None:
        if self.steps > self.connections:
            raise ConfigError(
                f"steps={self.steps} is more than connections={self.connections}; lower steps", f"{path}.steps"
            )


async def run(ctx: PhaseContext, k: ConnectionScalingKnobs) -> None:
    node = ctx.targets[0]
    coll = k.collection
    seeded = ctx.datasets.get(coll, 0)
    ctx.require(
        "dataset present",
        k.watch == 0 or seeded > 0,
        f"watch={k.watch} needs seeded {coll}: raise datasets.{coll} (or set watch: 0)",
    )
    seqs = rt.seq_index(ctx, node, coll)
    beacon = await rt.create_hot(ctx, node, coll, 1)
    stream = rt.CommitStream(ctx, node, coll)
    live = await rt.LiveQueries.start(ctx, stream, k.processes, k.connector, {**seqs, beacon.seqs[0]: beacon.ids[0]})
    fleet = live.fleet
    rec = ctx.recorder
    rec.extra["mode"] = rt.fleet_mode(ctx, k.processes)
    steps = []
    async with live:
        base_rss, base_client = rt.rss(), await fleet.client_rss()
        base_stats = rt.server_stats(ctx, node)
        base_server, base_server_rss = base_stats.get("live_query_memory_bytes"), base_stats.get("rss_bytes")
        opened = 0
        for step in range(k.steps):
            target = round(k.connections * (step + 1) / k.steps)
            rss0, client0 = rt.rss(), await fleet.client_rss()
            st0 = rt.server_stats(ctx, node)
            t0 = time.perf_counter_ns()
            res = await fleet.open(target - opened, k.connect_concurrency)
            rec.latency("connect").merge(res["connect"])
            live.failures += res["failures"]
            live.errors += res["errors"]
            new = list(range(opened, res["open"]))
            specs = [
                (c, coll, rt.watch_query([beacon.seqs[0], *rt.dataset_seqs(seqs, seeded, k.watch, c)])) for c in new
            ]
            sres = await fleet.subscribe(specs, k.connect_concurrency)
            connect_wall = time.perf_counter_ns() - t0
            live.subscribed(specs, sres)
            opened = res["open"]
            rss1, client1 = rt.rss(), await fleet.client_rss()
            st1 = rt.server_stats(ctx, node)

            await stream.run(beacon.ids, k.commits_per_step, k.commit_interval_ms)
            col = await live.delivered(opened)
            added = max(1, len(new))
            row = {
                "connections": opened,
                "opened": len(new),
                "failures": res["failures"] + sres["failures"],
                "connect_wall_s": round(connect_wall / 1e9, 3),
                "connect_p50_ms": rt.lag_summary(res["connect"])["p50_ms"],
                "connect_p99_ms": rt.lag_summary(res["connect"])["p99_ms"],
                "subscribe_p50_ms": rt.lag_summary(sres["initial"])["p50_ms"],
                "rss_per_connection_bytes": (rss1 - rss0) // added,
                "client_rss_per_connection_bytes": (client1 - client0) // added if k.processes else None,
                "server_connections": st1.get("connections"),
                "server_live_queries": st1.get("live_queries"),
                "notifications": col["notifications"],
                "lag": rt.lag_summary(col["lag"]),
            }
            if k.raw_floor:  # the same count of connections, bare websockets, no store: the floor
                floor = await broadcast_floor(
                    opened,
                    k.commits_per_step,
                    k.raw_floor_bytes,
                    k.commit_interval_ms / 1000,
                    max(120.0, ctx.check_timeout_s),
                )
                rec.merge_lag(f"floor@{opened}", floor)
                row["floor"] = rt.lag_summary(floor)
                for stat in ("p50_ms", "p99_ms"):
                    if row["floor"][stat] and row["lag"][stat] is not None:
                        row[f"lag_over_floor_{stat[:3]}"] = round(row["lag"][stat] / row["floor"][stat], 3)
            for key, name in (
                ("rss_bytes", "server_rss_per_connection_bytes"),
                ("live_query_memory_bytes", "server_live_query_bytes_per_connection"),
            ):
                grown = rt.stats_growth(st0, st1, key, added)
                if grown is not None:
                    row[name] = grown
            steps.append(row)
            ctx.advance(len(new))

        lost = [
            f"subscription {s} missed {len(missing)} of {owed} commits (first: value {missing[0]})"
            for s, (missing, _, owed) in enumerate(await live.deliveries())
            if missing
        ]
        rec.count("connections", opened)
        rec.count("connect_failures", live.failures)
        rec.count("subscriptions", len(live.since))
        if opened:
            rec.count("rss_per_connection_bytes", max(0, (rt.rss() - base_rss) // opened))
            if k.processes:
                rec.count("client_rss_per_connection_bytes", max(0, (await fleet.client_rss() - base_client) // opened))
            end = rt.server_stats(ctx, node)
            top = end.get("live_query_memory_bytes")
            if top is not None and base_server is not None:
                rec.count("server_live_query_bytes_per_connection", max(0, (top - base_server) // opened))
            if end.get("rss_bytes") is not None and base_server_rss is not None:
                rec.count("server_rss_per_connection_bytes", max(0, (end["rss_bytes"] - base_server_rss) // opened))
        rec.extra["steps"] = steps
        live.check_started("every connection opened")
        ctx.check_none("every connection received every commit", lost, "subscriptions")


register_phase(
    PhaseSpec(
        name="connection-scaling",
        summary="open C connections in steps, each with a live query; connect time, memory per connection, lag",
        run=run,
        knobs=ConnectionScalingKnobs,
        needs=("subscribe", "update"),
        targets=("durable",),
        metrics=(*rt.FLEET_METRICS, "update", *rt.STEP_LAG_METRICS, "lag.floor@*"),
    )
)
