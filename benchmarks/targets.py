"""The performance targets of issues 2 and 3, as data: each is a ratio of a loam figure to
its anchor measured in the same asv run (same machine, commit and payloads).

`sprout_harness.asvtools.targets` reads this file (`TARGETS`) and an asv results file and
prints loam figure, anchor figure, ratio, target and met / missed by how much (`make bench`
and `make bench-asv` print it at the end). A missed target is reported, never hidden, and
does not fail the run. Benchmarks are named as asv names them; `params` are the values of
the parameterized loam benchmark (stack, connector, ephemerals). A target with no anchor
(`anchor: None`) is reported as a figure only.

`max_ratio`: loam time per op <= max_ratio x anchor time per op (a rate of >= 1/max_ratio).
An anchor may itself be a parameterized benchmark (`anchor_params`): the fan-out target
compares indexed live queries with the same number of live queries that must all be tested,
and the two lag targets compare with the raw anchor measured inside the same phase run,
right before and after the samples (anchors.py's stand-alone classes, measured in their own
process minutes apart, are still published for the trend).

Two rows after the in-process lag are reports that say where its budget goes: the lag on the
durable node itself (no connector, no codec), and loam's codec plus one loop turn with no
node work (the floor of an in-process connector that keeps the wire codec). Their two ratios
added are about what the in-process lag would be if the ephemeral side cost nothing.
"""

from __future__ import annotations

LEVELDB_DURABLE = ["loam-leveldb", "inprocess", 0]
LEVELDB_1_INPROCESS = ["loam-leveldb", "inprocess", 1]
LEVELDB_1_WEBSOCKET = ["loam-leveldb", "websocket", 1]
POSTGRES_DURABLE = ["loam-postgres", "inprocess", 0]

TARGETS: list[dict] = [
    {
        "name": "LevelDB batched create (>= 25% of raw write_batch put rate)",
        "issue": 2,
        "loam": "bench_create.CreateBatched.track_album_us_per_entity",
        "params": LEVELDB_DURABLE,
        "anchor": "anchors.AnchorLevelDB.track_put_write_batch",
        "max_ratio": 4.0,
    },
    {
        "name": "LevelDB get (>= 50% of raw plyvel get rate)",
        "issue": 2,
        "loam": "bench_fetch.NodeGetById.track_get",
        "params": LEVELDB_DURABLE,
        "anchor": "anchors.AnchorLevelDB.track_get_random",
        "max_ratio": 2.0,
    },
    {
        "name": "LevelDB get through the harness client (informative, same bound)",
        "issue": 2,
        "loam": "bench_fetch.GetById.track_get",
        "params": LEVELDB_DURABLE,
        "anchor": "anchors.AnchorLevelDB.track_get_random",
        "max_ratio": 2.0,
    },
    {
        "name": "PostgreSQL batched create (>= 50% of raw executemany in one tx)",
        "issue": 2,
        "loam": "bench_create.CreateBatched.track_album_us_per_entity",
        "params": POSTGRES_DURABLE,
        "anchor": "anchors.AnchorPostgres.track_executemany_one_tx",
        "max_ratio": 2.0,
    },
    {
        "name": "in-process commit -> notification lag p50 (<= 3x asyncio queue hop)",
        "issue": 3,
        "loam": "bench_live_limit.NotifyLag.track_lag_p50",
        "params": LEVELDB_1_INPROCESS,
        "anchor": "bench_live_limit.NotifyLag.track_paired_queue_hop",
        "anchor_params": LEVELDB_1_INPROCESS,
        "max_ratio": 3.0,
    },
    {
        "name": "lag on the durable node itself: no connector, no codec (report, vs the hop)",
        "issue": 3,
        "loam": "bench_live_limit.NotifyLag.track_lag_p50",
        "params": LEVELDB_DURABLE,
        "anchor": "bench_live_limit.NotifyLag.track_paired_queue_hop",
        "anchor_params": LEVELDB_DURABLE,
        "max_ratio": None,
    },
    {
        "name": "in-process floor: loam's codec + one loop turn, no node work (report, vs the hop)",
        "issue": 3,
        "loam": "bench_live_limit.NotifyLag.track_paired_codec_floor",
        "params": LEVELDB_1_INPROCESS,
        "anchor": "bench_live_limit.NotifyLag.track_paired_queue_hop",
        "anchor_params": LEVELDB_1_INPROCESS,
        "max_ratio": None,
    },
    {
        "name": "WebSocket commit -> notification lag p50 (<= 2x raw one-way latency)",
        "issue": 3,
        "loam": "bench_live_limit.NotifyLag.track_lag_p50",
        "params": LEVELDB_1_WEBSOCKET,
        "anchor": "bench_live_limit.NotifyLag.track_paired_ws_one_way_p50",
        "anchor_params": LEVELDB_1_WEBSOCKET,
        "max_ratio": 2.0,
    },
    {
        "name": "gap fill over WebSocket p50 (<= 3x raw round trip)",
        "issue": 3,
        "loam": "bench_live_limit.LiveLimitGapFill.track_refill_p50",
        "params": LEVELDB_1_WEBSOCKET,
        "anchor": "anchors.AnchorWebsockets.track_round_trip_p50",
        "max_ratio": 3.0,
    },
    {
        "name": "commit matching none of 1000 indexed live queries (<= 1/4 of testing all 1000)",
        "issue": 3,
        "loam": "bench_fanout.CommitFanOut.track_nonmatching_overhead_p50",
        "params": [1000, "equality"],
        "anchor": "bench_fanout.CommitFanOut.track_nonmatching_overhead_p50",
        "anchor_params": [1000, "range"],
        "max_ratio": 0.25,
    },
    {
        "name": "memory per idle live query, durable node (window of 10 + a constant: report)",
        "issue": 3,
        "loam": "bench_live_limit.LiveQueryMemory.track_bytes_per_idle_query",
        "params": LEVELDB_DURABLE,
        "anchor": None,
        "max_ratio": None,
    },
    {
        "name": "memory per idle live query, ephemeral + its durable side (report)",
        "issue": 3,
        "loam": "bench_live_limit.LiveQueryMemory.track_bytes_per_idle_query",
        "params": LEVELDB_1_INPROCESS,
        "anchor": None,
        "max_ratio": None,
    },
]
