"""Concurrent writers: W writers (one per target, round robin) update existing entities of
disjoint partitions through the harness's `writers` phase; the phase checks that every node
converges to the expected state. Reported as commit latency and time per update (the inverse
of throughput, so lower is better like every figure here). One run per commit and parameter
combination in `setup_cache`.
"""

from __future__ import annotations

from typing import Any

from ._common import cache_or_skip, scale
from ._topology import CACHE_TIMEOUT, FamilyBenchmark, run_family

WRITERS = 4

__all__ = ["ConcurrentWriters"]


def _run() -> Any:
    sz = scale()
    return run_family(
        datasets={"albums": 0, "pets": sz.dataset},
        phases=[("writers", {"collection": "pets", "writers": WRITERS, "ops": sz.writer_ops, "readback_sample": 50})],
    )


class ConcurrentWriters(FamilyBenchmark):
    """4 concurrent writers on disjoint partitions of `pets`; every node converges."""

    phase = "writers"

    def setup_cache(self) -> Any:
        return cache_or_skip(_run)

    setup_cache.timeout = CACHE_TIMEOUT  # type: ignore[attr-defined]

    def track_update_p50(self, cache: Any, *p: Any) -> float:
        """ms, median commit latency of one update (4 writers at once)."""
        return self.fig("latency", "update", "p50")

    def track_update_p99(self, cache: Any, *p: Any) -> float:
        return self.fig("latency", "update", "p99")

    def track_time_per_update(self, cache: Any, *p: Any) -> float:
        """us per update, all writers together (1 / throughput while they write): the mean
        commit latency / 4, as each writer issues its next update when the last returns
        (the phase's wall time would include its convergence check)."""
        return self.fig("latency", "update", "mean") * 1e3 / WRITERS

    track_time_per_update.unit = "us"  # type: ignore[attr-defined]
