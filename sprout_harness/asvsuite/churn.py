"""Subscription churn: subscribers subscribe, stay until they have seen a few changes, and
unsubscribe, over and over, while a writer updates the entities they watch (the harness's
`churn` phase; it checks every initial result and that no live subscriber missed a
notification). One run per commit and parameter combination in `setup_cache`.
"""

from __future__ import annotations

from typing import Any

from ._common import cache_or_skip, scale
from ._topology import CACHE_TIMEOUT, FamilyBenchmark, run_family

__all__ = ["SubscriptionChurn"]


def _run() -> Any:
    sz = scale()
    return run_family(
        datasets={"albums": 0, "pets": sz.dataset},
        phases=[
            (
                "churn",
                {
                    "subscribers": sz.churn_subscribers,
                    "cycles": sz.churn_cycles,
                    "hold_notifications": 3,
                    "writers": 1,
                    "write_interval_ms": 1.0,
                },
            )
        ],
    )


class SubscriptionChurn(FamilyBenchmark):
    """Churning `where shelter = S` subscriptions while writes flow."""

    phase = "churn"

    def setup_cache(self) -> Any:
        return cache_or_skip(_run)

    setup_cache.timeout = CACHE_TIMEOUT  # type: ignore[attr-defined]

    def track_subscribe_p50(self, cache: Any, *p: Any) -> float:
        """ms, median subscribe -> initial result."""
        return self.fig("latency", "subscribe", "p50")

    def track_subscribe_p99(self, cache: Any, *p: Any) -> float:
        return self.fig("latency", "subscribe", "p99")

    def track_unsubscribe_p50(self, cache: Any, *p: Any) -> float:
        """ms, median unsubscribe."""
        return self.fig("latency", "unsubscribe", "p50")

    def track_notify_lag_p50(self, cache: Any, *p: Any) -> float:
        """ms, median commit -> notification while subscriptions come and go."""
        return self.fig("lag", "notify", "p50")

    def track_notify_lag_p99(self, cache: Any, *p: Any) -> float:
        return self.fig("lag", "notify", "p99")
