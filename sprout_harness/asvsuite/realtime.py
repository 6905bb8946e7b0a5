"""Fan-out over the wire beside its floor: the harness's `connection-scaling` phase opens
`wire_connections` WebSocket clients (in one worker process) in 4 steps, each with a live query
on the durable node, and after each step fans `COMMITS` commits out to all of them; right after,
at the same connection count, the phase broadcasts the same number of pre-encoded messages
with bare `websockets` to as many connections in a worker process (`raw_floor`: the floor).
Both are commit (send) -> receipt on the shared clock, p50 and p99 per step; the phase's checks
(every connection received every commit, every message reached every connection) fail the
benchmark otherwise. The durable-only row of the first variant of the stack axis that is
benchmarked over the `websocket` connector (n/a without one).
"""

from __future__ import annotations

from typing import Any

from ._common import cache_or_skip, scale, skip_if_skipped
from ._topology import CACHE_TIMEOUT, ERROR, NA, VARIANTS, entry, first_variant_over

__all__ = ["RealtimeFanOut"]

STEPS = 4
COMMITS = 20
CONNECTOR = "websocket"


def connections(step: int) -> int:
    return round(scale().wire_connections * step / STEPS)


def _run() -> Any:
    sz = scale()
    name = first_variant_over(CONNECTOR)
    knobs = {
        "connections": sz.wire_connections,
        "steps": STEPS,
        "processes": 1,
        "connector": "websocket",
        "commits_per_step": COMMITS,
        "commit_interval_ms": 50,
        "raw_floor": True,
        "collection": "pets",
    }
    got = entry(
        (name, VARIANTS[name].connectors[0], 0),
        {"albums": 0, "pets": sz.dataset},
        [("connection-scaling", knobs)],
    )
    if got["status"] == NA:
        raise NotImplementedError(got["reason"])
    if got["status"] == ERROR:
        raise RuntimeError(got["reason"])  # a lost notification or message: fail loudly
    return got["phases"]["connection-scaling"]["lag"]


class RealtimeFanOut:
    """Commit -> notification lag to every WebSocket client, and the bare-websockets floor at the
    same connection count, per step (step k: k/4 of `wire_connections`, 1,000 at full scale)."""

    params = [[1, 2, 3, 4]]
    param_names = ["step"]
    unit = "ms"
    timeout = CACHE_TIMEOUT

    def setup_cache(self) -> Any:
        return cache_or_skip(_run)

    setup_cache.timeout = CACHE_TIMEOUT  # type: ignore[attr-defined]

    def setup(self, cache: Any, step: int) -> None:
        skip_if_skipped(cache)
        self.lags = cache

    def _fig(self, name: str, step: int, pct: str) -> float:
        key = f"{name}@{connections(step)}"
        try:
            return float(self.lags[key][pct])
        except KeyError:
            raise RuntimeError(f"no figure {key!r} (has: {sorted(self.lags)})") from None

    def track_lag_p50(self, cache: Any, step: int) -> float:
        """ms, median commit -> notification lag over every client, at this step."""
        return self._fig("notify", step, "p50")

    def track_lag_p99(self, cache: Any, step: int) -> float:
        return self._fig("notify", step, "p99")

    def track_floor_p50(self, cache: Any, step: int) -> float:
        """ms, median send -> receipt of a bare websockets broadcast to as many connections."""
        return self._fig("floor", step, "p50")

    def track_floor_p99(self, cache: Any, step: int) -> float:
        return self._fig("floor", step, "p99")
