"""Live queries and gap filling: ORDER BY + LIMIT windows kept whole while writes push
members out (the harness's `live-limit` phase), commit -> notification lag one write at a
time, and the memory an idle live query costs.

One run per commit and parameter combination in `setup_cache`, shared by the classes of
this module (one function: asv keys them to one cache). Lower is better.
"""

from __future__ import annotations

import math
from typing import Any

from ._common import cache_or_skip, scale
from ._topology import CACHE_TIMEOUT, FamilyBenchmark, run_family

__all__ = ["LiveLimitGapFill", "NotifyLag", "LiveQueryMemory"]


def _run() -> Any:
    sz = scale()
    return run_family(
        datasets={"albums": sz.dataset, "pets": 0},
        phases=[
            ("live-limit", {"subscribers": sz.live_subscribers, "live_limit": 10, "ops": sz.live_ops}),
            ("asv-notify-lag", {"samples": sz.lag_samples}),
            ("asv-idle-memory", {"queries": sz.idle_queries, "live_limit": 10}),
        ],
    )


def _setup_cache(self: Any) -> Any:
    return cache_or_skip(_run)


_setup_cache.timeout = CACHE_TIMEOUT  # type: ignore[attr-defined]


class LiveLimitGapFill(FamilyBenchmark):
    """`where genre = G order by rating desc limit 10` windows on every target; each write
    lowers or deletes a window's top member, so the stack must refill the gap. Checks: every
    window refilled to the expected one, and equals a fresh fetch at the end."""

    phase = "live-limit"
    setup_cache = _setup_cache

    def track_refill_p50(self, cache: Any, *p: Any) -> float:
        """ms, median commit -> window whole again (gap filled); over WebSocket its anchor is
        AnchorWebsockets.track_round_trip_p50."""
        return self.fig("lag", "window_refill", "p50")

    def track_refill_p99(self, cache: Any, *p: Any) -> float:
        return self.fig("lag", "window_refill", "p99")

    def track_notify_lag_p50(self, cache: Any, *p: Any) -> float:
        """ms, median commit -> notification of the windows' changes."""
        return self.fig("lag", "notify", "p50")

    def track_notify_lag_p99(self, cache: Any, *p: Any) -> float:
        return self.fig("lag", "notify", "p99")

    def track_update_p50(self, cache: Any, *p: Any) -> float:
        """ms, median latency of the writes that push members out (live queries open)."""
        return self.fig("latency", "update", "p50")

    def track_update_p99(self, cache: Any, *p: Any) -> float:
        return self.fig("latency", "update", "p99")


class NotifyLag(FamilyBenchmark):
    """One plain live query on every target, one update at a time through the durable node,
    each awaited on every target before the next: commit -> notification without queueing.
    Anchors: in-process AnchorAsyncioQueue.track_hop, WebSocket AnchorWebsockets.track_one_way_latency_p50."""

    phase = "asv-notify-lag"
    unit = "us"
    setup_cache = _setup_cache

    def track_lag_p50(self, cache: Any, *p: Any) -> float:
        """us, median commit -> notification lag."""
        return self.fig("lag", "notify_single", "p50") * 1e3

    def track_lag_p99(self, cache: Any, *p: Any) -> float:
        """us, 99th percentile commit -> notification lag."""
        return self.fig("lag", "notify_single", "p99") * 1e3

    def track_paired_queue_hop(self, cache: Any, *p: Any) -> float:
        """us, the raw asyncio queue hop (`queue_hop_us` of sprout_harness.workloads.anchors,
        the function AnchorAsyncioQueue runs) measured inside this phase,
        before and after its samples: the in-process target's anchor."""
        return self.extra("paired_queue_hop_us")

    def track_paired_codec_floor(self, cache: Any, *p: Any) -> float:
        """us, median commit stamp -> received through the stack's own wire codec and one
        loop turn, no node work (`codec_hop_p50_us` of sprout_harness.workloads.anchors, the
        `notify_codec` hook; n/a without it), measured inside this phase: what the codec the in-process connector
        keeps costs by itself."""
        return self.extra("paired_codec_floor_us") if self.has_extra("paired_codec_floor_us") else math.nan

    def track_paired_raw_codec_floor(self, cache: Any, *p: Any) -> float:
        """us, median commit stamp -> received through a notify encoded and decoded with msgspec
        alone and one loop turn (`raw_notify_codec` + `codec_hop_p50_us` of
        sprout_harness.workloads.anchors; no stack's code in it), measured inside this phase:
        the in-process target's anchor. n/a on commits whose harness predates it."""
        if not self.has_extra("paired_raw_codec_floor_us"):
            raise NotImplementedError("this commit's asv-notify-lag phase does not measure the raw codec floor")
        return self.extra("paired_raw_codec_floor_us")

    def track_paired_ws_one_way_p50(self, cache: Any, *p: Any) -> float:
        """us, the raw websockets one-way latency (`ws_one_way_latencies_us`, the function
        AnchorWebsockets runs) measured inside this phase, before and after its samples: the WebSocket target's anchor."""
        return self.extra("paired_ws_one_way_p50_us")


class LiveQueryMemory(FamilyBenchmark):
    """Memory per idle `order by ... limit 10` live query (tracemalloc over the whole process:
    the target node and, for an ephemeral, the durable node's side of the subscription)."""

    phase = "asv-idle-memory"
    unit = "bytes"
    setup_cache = _setup_cache

    def track_bytes_per_idle_query(self, cache: Any, *p: Any) -> float:
        """bytes per idle live query (its window of 10 members included)."""
        return self.extra("bytes_per_idle_query")
