"""The performance targets, as data, keyed by name: each is a ratio of a figure of the stack
under test to its anchor measured in the same asv run (same machine, commit and payloads).

`sprout_harness.asvtools.targets` reads `TARGETS` from this file and an asv results file and
prints figure, anchor, ratio, bound and met / missed by how much (`make bench` and `make
bench-asv` print it at the end, missed targets again below the table). A missed target is
reported, never hidden, and does not fail the run. Benchmarks are named as asv names them;
`params` are the values of the parameterized benchmark (stack, connector, ephemerals). A
target with no anchor (`anchor: None`) or no bound (`max_ratio: None`) is a report.

`max_ratio`: time per op of the figure <= max_ratio x the anchor's time per op (a rate of
>= 1/max_ratio). An anchor may itself be a parameterized benchmark (`anchor_params`): the
fan-out target compares indexed live queries with the same number of live queries that must
all be tested, and the two lag targets compare with the raw anchor measured inside the same
phase run, right before and after the samples (anchors.py's stand-alone classes, measured in
their own process minutes apart, are still published for the trend).

The two rows after the in-process lag say where its budget goes: the lag on the durable node
itself (no connector, no codec), and loam's codec plus one loop turn with no node work (the
floor of an in-process connector that keeps the wire codec). Their two ratios added are about
what the in-process lag would be if the ephemeral side cost nothing.
"""

from __future__ import annotations

LEVELDB_DURABLE = ["loam-leveldb", "inprocess", 0]
LEVELDB_1_INPROCESS = ["loam-leveldb", "inprocess", 1]
LEVELDB_1_WEBSOCKET = ["loam-leveldb", "websocket", 1]
POSTGRES_DURABLE = ["loam-postgres", "inprocess", 0]

TARGETS: dict[str, dict] = {
    "leveldb-create-batched": {
        "title": "LevelDB batched create (<= 3.5x raw write_batch put)",
        "figure": "bench_create.CreateBatched.track_album_us_per_entity",
        "params": LEVELDB_DURABLE,
        "anchor": "anchors.AnchorLevelDB.track_put_write_batch",
        "max_ratio": 3.5,
    },
    "leveldb-get": {
        "title": "LevelDB get (<= 3x raw plyvel get)",
        "figure": "bench_fetch.NodeGetById.track_get",
        "params": LEVELDB_DURABLE,
        "anchor": "anchors.AnchorLevelDB.track_get_random",
        "max_ratio": 3.0,
    },
    "leveldb-get-harness": {
        "title": "LevelDB get through the harness client (informative, same bound)",
        "figure": "bench_fetch.GetById.track_get",
        "params": LEVELDB_DURABLE,
        "anchor": "anchors.AnchorLevelDB.track_get_random",
        "max_ratio": 3.0,
    },
    "postgres-create-batched": {
        "title": "PostgreSQL batched create (<= 1.5x raw executemany in one tx)",
        "figure": "bench_create.CreateBatched.track_album_us_per_entity",
        "params": POSTGRES_DURABLE,
        "anchor": "anchors.AnchorPostgres.track_executemany_one_tx",
        "max_ratio": 1.5,
    },
    "inprocess-lag": {
        "title": "in-process commit -> notification lag p50 (<= 3x the raw codec floor: msgspec + one loop turn)",
        "figure": "bench_live_limit.NotifyLag.track_lag_p50",
        "params": LEVELDB_1_INPROCESS,
        "anchor": "bench_live_limit.NotifyLag.track_paired_raw_codec_floor",
        "anchor_params": LEVELDB_1_INPROCESS,
        "max_ratio": 3.0,
    },
    "inprocess-lag-vs-hop": {
        "title": "in-process commit -> notification lag p50 against the bare asyncio hop (report)",
        "figure": "bench_live_limit.NotifyLag.track_lag_p50",
        "params": LEVELDB_1_INPROCESS,
        "anchor": "bench_live_limit.NotifyLag.track_paired_queue_hop",
        "anchor_params": LEVELDB_1_INPROCESS,
        "max_ratio": None,
    },
    "durable-lag-share": {
        "title": "lag on the durable node itself: no connector, no codec (report, vs the hop)",
        "figure": "bench_live_limit.NotifyLag.track_lag_p50",
        "params": LEVELDB_DURABLE,
        "anchor": "bench_live_limit.NotifyLag.track_paired_queue_hop",
        "anchor_params": LEVELDB_DURABLE,
        "max_ratio": None,
    },
    "inprocess-codec-floor": {
        "title": "in-process floor: loam's codec + one loop turn, no node work (report, vs the hop)",
        "figure": "bench_live_limit.NotifyLag.track_paired_codec_floor",
        "params": LEVELDB_1_INPROCESS,
        "anchor": "bench_live_limit.NotifyLag.track_paired_queue_hop",
        "anchor_params": LEVELDB_1_INPROCESS,
        "max_ratio": None,
    },
    "websocket-lag": {
        "title": "WebSocket commit -> notification lag p50 (<= 2x raw one-way latency)",
        "figure": "bench_live_limit.NotifyLag.track_lag_p50",
        "params": LEVELDB_1_WEBSOCKET,
        "anchor": "bench_live_limit.NotifyLag.track_paired_ws_one_way_p50",
        "anchor_params": LEVELDB_1_WEBSOCKET,
        "max_ratio": 2.0,
    },
    "websocket-gap-fill": {
        "title": "gap fill over WebSocket p50 (<= 3x raw round trip)",
        "figure": "bench_live_limit.LiveLimitGapFill.track_refill_p50",
        "params": LEVELDB_1_WEBSOCKET,
        "anchor": "anchors.AnchorWebsockets.track_round_trip_p50",
        "max_ratio": 3.0,
    },
    "fanout-nonmatching": {
        "title": "commit matching none of 1000 indexed live queries (<= 1/4 of testing all 1000)",
        "figure": "bench_fanout.CommitFanOut.track_nonmatching_overhead_p50",
        "params": [1000, "equality"],
        "anchor": "bench_fanout.CommitFanOut.track_nonmatching_overhead_p50",
        "anchor_params": [1000, "range"],
        "max_ratio": 0.25,
    },
    "wire-fanout-p50": {
        "title": "commit -> notification p50 to 1,000 WebSocket clients (<= 2x bare websockets broadcast)",
        "figure": "bench_realtime.RealtimeFanOut.track_lag_p50",
        "params": [4],
        "anchor": "bench_realtime.RealtimeFanOut.track_floor_p50",
        "anchor_params": [4],
        "max_ratio": 2.0,
    },
    "wire-fanout-p99": {
        "title": "commit -> notification p99 to 1,000 WebSocket clients (<= 2x bare websockets broadcast)",
        "figure": "bench_realtime.RealtimeFanOut.track_lag_p99",
        "params": [4],
        "anchor": "bench_realtime.RealtimeFanOut.track_floor_p99",
        "anchor_params": [4],
        "max_ratio": 2.0,
    },
    "memory-idle-query-durable": {
        "title": "memory per idle live query, durable node (window of 10 + a constant: report)",
        "figure": "bench_live_limit.LiveQueryMemory.track_bytes_per_idle_query",
        "params": LEVELDB_DURABLE,
        "anchor": None,
        "max_ratio": None,
    },
    "memory-idle-query-ephemeral": {
        "title": "memory per idle live query, ephemeral + its durable side (report)",
        "figure": "bench_live_limit.LiveQueryMemory.track_bytes_per_idle_query",
        "params": LEVELDB_1_INPROCESS,
        "anchor": None,
        "max_ratio": None,
    },
}
