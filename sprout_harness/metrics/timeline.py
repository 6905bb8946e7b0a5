"""Per-second timeline of a phase: operations finished and their p99, relative to phase start.

Recording touches one histogram (the current second's) and only looks up another when the
second changes, so it stays O(1) and cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sprout_harness.metrics.histogram import Histogram

_NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class TimelinePoint:
    """One second of a phase: ``second`` since phase start, ops finished in it, their p99 (ns)."""

    second: int
    ops: int
    p99_ns: float

    def to_dict(self) -> dict[str, Any]:
        return {"second": self.second, "ops": self.ops, "p99_ns": self.p99_ns}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TimelinePoint:
        return cls(second=int(d["second"]), ops=int(d["ops"]), p99_ns=float(d["p99_ns"]))


class Timeline:
    """Latency samples bucketed by the second (since ``start_ns``) in which they finished."""

    __slots__ = ("start_ns", "_seconds", "_cur_sec", "_cur")

    def __init__(self, start_ns: int) -> None:
        self.start_ns = start_ns
        self._seconds: dict[int, Histogram] = {}
        self._cur_sec: int | None = None
        self._cur: Histogram | None = None

    def record(self, at_ns: int, value_ns: int) -> None:
        """Add a sample that finished at clock time ``at_ns`` (same clock as ``start_ns``)."""
        sec = (at_ns - self.start_ns) // _NS_PER_S
        if sec != self._cur_sec:
            if sec < 0:  # finished before the phase started (clock skew between callers): count in second 0
                sec = 0
            self._cur_sec = sec
            cur = self._seconds.get(sec)
            if cur is None:
                cur = self._seconds[sec] = Histogram()
            self._cur = cur
        self._cur.record(value_ns)  # type: ignore[union-attr]

    def points(self) -> list[TimelinePoint]:
        """One point per second from 0 to the last busy second; idle seconds (a stall) show ops=0, p99_ns=0."""
        if not self._seconds:
            return []
        last = max(self._seconds)
        out = []
        for s in range(last + 1):
            h = self._seconds.get(s)
            if h is None or not h.count:
                out.append(TimelinePoint(second=s, ops=0, p99_ns=0.0))
            else:
                out.append(TimelinePoint(second=s, ops=h.count, p99_ns=h.percentile(99.0)))
        return out
