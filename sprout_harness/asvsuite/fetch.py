"""Reads: get-by-id and fetch over the harness's predicate mix (every answer checked against
the reference evaluator), and the anchors' album payloads read by id (a ratio to the raw
gets of the stack's storage engine), through the client and through the `native_get` hook.

The workload runs once per commit and parameter combination in `setup_cache` (shared by
`FetchPredicates` and `GetById`: one function, so asv keys them to one cache). Lower is better.
"""

from __future__ import annotations

from typing import Any

from ._common import cache_or_skip, scale
from ._topology import CACHE_TIMEOUT, FamilyBenchmark, run_family

FAMILIES = ("equality", "range", "in", "and_or", "order_limit")

__all__ = ["FetchPredicates", "GetById", "NodeGetById"]


def _run() -> Any:
    sz = scale()
    return run_family(
        datasets={"albums": sz.dataset, "pets": 0},
        phases=[
            ("fetch", {"collection": "albums", "get_ops": sz.get_ops, "fetch_ops": sz.fetch_ops, "concurrency": 4}),
            (
                "asv-albums-get",
                {"count": sz.records, "batch_size": sz.album_batch, "repeats": sz.repeats, "gets": sz.get_ops},
            ),
        ],
    )


def _setup_cache(self: Any) -> Any:
    return cache_or_skip(_run)


_setup_cache.timeout = CACHE_TIMEOUT  # type: ignore[attr-defined]


class FetchPredicates(FamilyBenchmark):
    """The harness's `fetch` phase: gets by id and fetches per predicate family, 4 in flight."""

    phase = "fetch"
    setup_cache = _setup_cache

    def track_get_p50(self, cache: Any, *p: Any) -> float:
        """ms, median get-by-id latency (4 in flight)."""
        return self.fig("latency", "get", "p50")

    def track_get_p99(self, cache: Any, *p: Any) -> float:
        return self.fig("latency", "get", "p99")

    def track_fetch_p99(self, cache: Any, *p: Any) -> float:
        """ms, 99th percentile latency of a fetch, every predicate family together."""
        return self.fig("latency", "fetch:all", "p99")


def _family_tracker(family: str, pct: str) -> Any:
    def track(self: FetchPredicates, cache: Any, *p: Any) -> float:
        return self.fig("latency", f"fetch:{family}", pct)

    track.__name__ = f"track_fetch_{family}_{pct}"
    track.__doc__ = f"ms, {pct} latency of a fetch with a `{family}` predicate."
    return track


# p50 per predicate family (p99 over all of them above): every parameterized track_ method
# costs asv one process per combination, so the suite keeps to the figures that are read.
for _family in FAMILIES:
    setattr(FetchPredicates, f"track_fetch_{_family}_p50", _family_tracker(_family, "p50"))


class GetById(FamilyBenchmark):
    """The anchors' album payloads read by id in random order, one at a time (us per get)."""

    phase = "asv-albums-get"
    unit = "us"
    setup_cache = _setup_cache

    def track_get(self, cache: Any, *p: Any) -> float:
        """us per get through the harness's client (the adapter's Doc conversion included)."""
        return self.extra("get_us")


class NodeGetById(FamilyBenchmark):
    """The same gets through the stack's `native_get` hook: its own API under the client,
    no harness Doc conversion. n/a for a stack without the hook."""

    phase = "asv-albums-get"
    unit = "us"
    setup_cache = _setup_cache

    def setup(self, cache: Any, stack: str, connector: str, ephemerals: int) -> None:
        super().setup(cache, stack, connector, ephemerals)
        if not self.has_extra("native_get_us"):
            raise NotImplementedError(f"{stack}: the stack has no native_get hook (direct reads)")

    def track_get(self, cache: Any, *p: Any) -> float:
        """us per get through the stack's native_get hook."""
        return self.extra("native_get_us")
