"""Creates: batched creates through the harness's `create` phase, and the anchors' album
payloads created in batches (per-entity time, read as a ratio to the raw storage anchors).

One run per commit and parameter combination (stack x connector x ephemerals, see
`_topology`), in `setup_cache`; the `track_` methods return its figures. Lower is better.
"""

from __future__ import annotations

from typing import Any

from ._common import cache_or_skip, scale
from ._topology import CACHE_TIMEOUT, FamilyBenchmark, run_family

__all__ = ["CreateBatched"]


def _run() -> Any:
    sz = scale()
    return run_family(
        datasets={"albums": 0, "pets": 0},
        phases=[
            ("create", {"collection": "albums", "count": sz.create, "batch_size": 100, "concurrency": 4}),
            ("asv-albums-create", {"count": sz.records, "batch_size": sz.album_batch, "repeats": sz.repeats}),
        ],
    )


class CreateBatched(FamilyBenchmark):
    """Batched creates: the harness's `create` phase (100 entities per call, 4 in flight,
    every write checked to have landed) and the album payloads of the anchors."""

    phase = "create"

    def setup_cache(self) -> Any:
        return cache_or_skip(_run)

    setup_cache.timeout = CACHE_TIMEOUT  # type: ignore[attr-defined]

    def track_batch_p50(self, cache: Any, *p: Any) -> float:
        """ms, median latency of one create call of 100 entities."""
        return self.fig("latency", "create_batch", "p50")

    def track_batch_p99(self, cache: Any, *p: Any) -> float:
        """ms, 99th percentile latency of one create call of 100 entities."""
        return self.fig("latency", "create_batch", "p99")

    def track_album_us_per_entity(self, cache: Any, *p: Any) -> float:
        """us per entity: album payloads created in batches (median of repeats); read it as a
        ratio to the raw batched writes of the stack's storage engine."""
        return self.extra("create_us_per_entity", "asv-albums-create")

    track_album_us_per_entity.unit = "us"  # type: ignore[attr-defined]
