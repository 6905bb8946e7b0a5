"""What the live monitor knows about a run: a thread-safe observer the runner updates.

The runner calls the observer hooks (``run_started``, ``stage``, ``phase_started``,
``phase_finished``, ``run_finished``) on its event-loop thread. The monitor runs on a thread
of its own, because a phase whose stack calls never suspend (LevelDB writes) would starve a
server sharing the runner's loop. Live figures come from the phase's ``PhaseRecorder``:
``sample()``, called by the monitor thread once per interval, copies its histograms without
ever writing to them (no flush), so the measurement cannot be disturbed; a copy taken while
a sample lands may be one sample off, which only the live view sees. Every reader (HTTP
handlers, the Prometheus collector) gets copies made under a lock, so the cost on the run is
one snapshot per interval, whatever the number of viewers.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from sprout_harness.metrics.histogram import Histogram, HistogramSnapshot
from sprout_harness.metrics.recorder import PhaseRecorder
from sprout_harness.metrics.results import PhaseResult, RunMetadata, RunResult

STAGES = ("starting", "seeding", "syncing")
TERMINAL = ("completed", "failed", "cancelled")
RUN_STATUS_TO_MONITOR = {"ok": "completed", "failed": "failed", "error": "failed", "cancelled": "cancelled"}
DEFAULT_WINDOW = 600  # timeline points kept (10 minutes at the default 1 s interval)
_RECENT_HISTORY = 200

Buckets = dict[int, int]  # lowest value of a histogram bucket (ns) -> samples in it


@dataclass
class HistView:
    """A copy of one histogram's state: sparse buckets plus exact count/sum/min/max (ns)."""

    count: int = 0
    sum_ns: int = 0
    min_ns: int = 0
    max_ns: int = 0
    buckets: Buckets = field(default_factory=dict)
    relative_error: float = 0.01
    max_value_ns: int = 3_600 * 10**9

    @classmethod
    def of_snapshot(cls, snap: HistogramSnapshot) -> HistView:
        """From `Histogram.snapshot()` (taken by the recording side's own API, any thread)."""
        counts = snap.counts
        nz = np.flatnonzero(counts)
        n = int(counts.sum())
        if not n:
            return cls(relative_error=snap.relative_error, max_value_ns=snap.max_value_ns)
        lowers = snap.lowers
        buckets = {int(lowers[i]): int(counts[i]) for i in nz}
        # min: the lowest bucket's start (within the relative error of the exact min, and
        # consistent with the buckets); max only ever grows.
        return cls(
            count=n,
            sum_ns=int(snap.sum_ns),
            min_ns=min(buckets),
            max_ns=max(int(snap.max_ns), max(buckets)),
            buckets=buckets,
            relative_error=snap.relative_error,
            max_value_ns=snap.max_value_ns,
        )

    @classmethod
    def of(cls, h: Histogram) -> HistView:
        d = h.to_dict()
        return cls(
            count=d["count"],
            sum_ns=d["sum"],
            min_ns=d["min"],
            max_ns=d["max"],
            buckets={int(lo): int(n) for lo, n in d["buckets"]},
            relative_error=d["relative_error"],
            max_value_ns=d["max_value_ns"],
        )

    def histogram(self) -> Histogram:
        return Histogram.from_dict(
            {
                "relative_error": self.relative_error,
                "max_value_ns": self.max_value_ns,
                "count": self.count,
                "sum": self.sum_ns,
                "min": self.min_ns,
                "max": self.max_ns,
                "buckets": sorted(self.buckets.items()),
            }
        )

    def minus(self, earlier: HistView | None) -> HistView:
        """Samples added since ``earlier`` (min/max bounded by the bucket range: within the histogram's error)."""
        if earlier is None or not earlier.count:
            return self
        delta = {lo: n - earlier.buckets.get(lo, 0) for lo, n in self.buckets.items()}
        delta = {lo: n for lo, n in delta.items() if n > 0}
        if not delta:
            return HistView(relative_error=self.relative_error, max_value_ns=self.max_value_ns)
        return HistView(
            count=sum(delta.values()),
            sum_ns=self.sum_ns - earlier.sum_ns,
            min_ns=min(delta),
            max_ns=self.max_ns,
            buckets=delta,
            relative_error=self.relative_error,
            max_value_ns=self.max_value_ns,
        )

    def merged(self, other: HistView) -> HistView:
        if not other.count:
            return self
        if not self.count:
            return other
        b = dict(self.buckets)
        for lo, n in other.buckets.items():
            b[lo] = b.get(lo, 0) + n
        return HistView(
            count=self.count + other.count,
            sum_ns=self.sum_ns + other.sum_ns,
            min_ns=min(self.min_ns, other.min_ns),
            max_ns=max(self.max_ns, other.max_ns),
            buckets=b,
            relative_error=self.relative_error,
            max_value_ns=self.max_value_ns,
        )

    def summary_ms(self) -> dict[str, float | int | None]:
        """count and p50/p90/p99/max in ms (None when empty)."""
        if not self.count:
            return {"count": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
        p50, p90, p99 = self.histogram().percentiles([50.0, 90.0, 99.0])
        return {
            "count": self.count,
            "p50_ms": _ms(p50),
            "p90_ms": _ms(p90),
            "p99_ms": _ms(p99),
            "max_ms": _ms(self.max_ns),
        }


def _ms(ns: float | None) -> float | None:
    if ns is None or not math.isfinite(ns):
        return None
    return round(ns / 1e6, 6)


@dataclass
class PhaseView:
    """Everything the monitor shows about one phase (live or finished)."""

    name: str
    status: str = "running"
    reason: str | None = None
    wall_s: float = 0.0
    latencies: dict[str, HistView] = field(default_factory=dict)
    lags: dict[str, HistView] = field(default_factory=dict)
    connector_delays: dict[str, HistView] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)  # category -> {count, samples}

    @property
    def ops(self) -> int:
        return sum(h.count for h in self.latencies.values())

    @classmethod
    def of_result(cls, r: PhaseResult) -> PhaseView:
        return cls(
            name=r.name,
            status=r.status,
            reason=r.reason,
            wall_s=r.wall_ns / 1e9,
            latencies={k: HistView.of(h) for k, h in r.latencies.items()},
            lags={k: HistView.of(h) for k, h in r.lags.items()},
            connector_delays={k: HistView.of(h) for k, h in r.connector_delays.items()},
            counters=dict(r.counters),
            errors={k: {"count": e.count, "samples": list(e.samples)} for k, e in r.errors.items()},
        )

    def to_dict(self) -> dict[str, Any]:
        wall = self.wall_s
        return {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "wall_s": round(wall, 3),
            "ops": self.ops,
            "ops_per_s": round(self.ops / wall, 1) if wall > 0 else None,
            "error_count": sum(e["count"] for e in self.errors.values()),
            "latencies": {
                k: {**h.summary_ms(), "ops_per_s": round(h.count / wall, 1) if wall > 0 else None}
                for k, h in self.latencies.items()
            },
            "lags": {k: h.summary_ms() for k, h in self.lags.items()},
            "connector_delays": {k: h.summary_ms() for k, h in self.connector_delays.items()},
            "counters": dict(self.counters),
            "errors": {k: {"count": e["count"], "samples": list(e["samples"])} for k, e in self.errors.items()},
        }


def _read_recorder(rec: PhaseRecorder) -> PhaseView:
    """A copy of what ``rec`` measured so far, safe from any thread (`PhaseRecorder.peek`)."""
    snap = rec.peek()
    return PhaseView(
        name=snap.phase,
        wall_s=snap.elapsed_ns / 1e9,
        latencies={k: HistView.of_snapshot(h) for k, h in snap.latencies.items()},
        lags={k: HistView.of_snapshot(h) for k, h in snap.lags.items()},
        connector_delays={k: HistView.of_snapshot(h) for k, h in snap.connector_delays.items()},
        counters=snap.counters,
        errors={k: {"count": n, "samples": samples} for k, (n, samples) in snap.errors.items()},
    )


def _merge_all(hs: dict[str, HistView]) -> HistView:
    out = HistView()
    for h in hs.values():
        out = out.merged(h)
    return out


class RunState:
    """Thread-safe live state of one run: the runner's observer and the monitor's data source."""

    def __init__(
        self,
        metadata: RunMetadata | None = None,
        *,
        window: int = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.RLock()
        self._sample_lock = threading.Lock()  # one sample() at a time (monitor thread, phase end)
        self._clock = clock
        self._t0 = clock()
        self._started_wall = time.time()
        self._metadata = metadata
        self._status = "starting"
        self._history: list[dict[str, Any]] = []
        self._phases: list[PhaseView] = []  # finished phases, in order
        self._current: PhaseView | None = None  # latest sample of the running phase
        self._recorder: PhaseRecorder | None = None
        self._prev: tuple[float, HistView, HistView, int] | None = None  # last sample: t, ops, lags, errors
        self._timeline: deque[dict[str, Any]] = deque(maxlen=window)
        self._result: RunResult | None = None
        self._reason: str | None = None
        self._stop_handler: Callable[[str], bool] | None = None
        self._stop_requested: str | None = None
        self._nodes_provider: Callable[[], Any] | None = None
        self._nodes: Any = None
        self._nodes_error: str | None = None
        self._samples = 0
        self._version = 0  # bumped on every change: keys the metrics cache
        self._cache: tuple[int, dict[str, Any]] | None = None
        self._set_status("starting")

    # -- observer hooks (runner thread) ------------------------------------------------------

    def run_started(self, metadata: RunMetadata) -> None:
        with self._lock:
            self._metadata = metadata
        self.stage("starting")

    def stage(self, name: str) -> None:
        """A setup stage began: "starting", "seeding" or "syncing"."""
        self._set_status(name)

    def phase_started(self, title: str, recorder: PhaseRecorder) -> None:
        with self._lock:
            self._recorder = recorder
            self._current = PhaseView(name=title)
            self._prev = None
        self._set_status(f"running {title}", phase=title)

    def phase_finished(self, result: PhaseResult) -> None:
        self.sample()  # the phase's last partial interval still belongs on the timeline
        with self._lock:
            self._recorder = None
            self._current = None
            self._prev = None
            self._phases.append(PhaseView.of_result(result))
            self._version += 1

    def run_finished(self, result: RunResult) -> None:
        with self._lock:
            if self._result is not None:
                return
            self._result = result
            self._reason = result.reason
            self._recorder = None
            self._current = None
            if self._stop_requested and result.status == "cancelled":
                self._reason = f"{self._stop_requested}; {result.reason}" if result.reason else self._stop_requested
        self._set_status(RUN_STATUS_TO_MONITOR.get(result.status, "failed"))

    def _set_status(self, status: str, phase: str | None = None) -> None:
        with self._lock:
            if self._history and self._history[-1]["status"] == status:
                return  # e.g. "starting" reported by both the monitor and the runner
            self._status = status
            self._version += 1
            self._history.append(
                {"status": status, "phase": phase, "elapsed_s": round(self.elapsed_s, 3), "at": time.time()}
            )
            del self._history[:-_RECENT_HISTORY]

    # -- stop --------------------------------------------------------------------------------

    def set_stop_handler(self, handler: Callable[[str], bool]) -> None:
        """``handler(reason) -> bool`` asks the run to stop gracefully (e.g. ``Runner.request_stop``)."""
        with self._lock:
            self._stop_handler = handler

    def request_stop(self, reason: str = "stop requested from the monitor") -> bool:
        """Ask the run to stop; False when it has already finished or nothing can stop it."""
        with self._lock:
            if self._status in TERMINAL or self._stop_handler is None:
                return False
            handler = self._stop_handler
            self._stop_requested = reason
        return bool(handler(reason))

    @property
    def stop_requested(self) -> bool:
        with self._lock:
            return self._stop_requested is not None

    # -- per-node figures --------------------------------------------------------------------

    def set_nodes_provider(self, provider: Callable[[], Any] | None) -> None:
        """``provider()`` returns per-node / per-connection figures the stack reports (JSON-able);
        called at each sample, on the monitor's thread: it must only read."""
        with self._lock:
            self._nodes_provider = provider

    # -- sampling (runner thread) ------------------------------------------------------------

    def sample(self) -> None:
        """Snapshot the running phase's recorder and add one timeline point (any thread)."""
        with self._sample_lock:
            self._sample()

    def _sample(self) -> None:
        with self._lock:
            rec, provider = self._recorder, self._nodes_provider
        nodes, nodes_error = None, None
        if provider is not None:
            try:
                nodes = provider()
            except Exception as exc:  # a stack's stats hook must not break the run
                nodes_error = f"{type(exc).__name__}: {exc}"
        now = self.elapsed_s
        view = _read_recorder(rec) if rec is not None else None
        with self._lock:
            self._samples += 1
            self._version += 1
            if provider is not None:
                self._nodes, self._nodes_error = nodes, nodes_error
            if view is None or rec is not self._recorder:
                return
            self._current = view
            ops, lags = _merge_all(view.latencies), _merge_all(view.lags)
            errors = sum(e["count"] for e in view.errors.values())
            if self._prev is None:
                t_prev, ops_prev, lags_prev, err_prev = now - view.wall_s, None, None, 0
            else:
                t_prev, ops_prev, lags_prev, err_prev = self._prev
            self._prev = (now, ops, lags, errors)
            dt = now - t_prev
            d_ops, d_lags = ops.minus(ops_prev), lags.minus(lags_prev)
            s_ops, s_lags = d_ops.summary_ms(), d_lags.summary_ms()
            self._timeline.append(
                {
                    "t": round(now, 3),
                    "phase": view.name,
                    "ops": d_ops.count,
                    "ops_per_s": round(d_ops.count / dt, 1) if dt > 0 else None,
                    "p50_ms": s_ops["p50_ms"],
                    "p99_ms": s_ops["p99_ms"],
                    "lag_count": d_lags.count,
                    "lag_p50_ms": s_lags["p50_ms"],
                    "lag_p99_ms": s_lags["p99_ms"],
                    "errors": errors - err_prev,
                }
            )

    # -- reading (any thread) ----------------------------------------------------------------

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self._t0

    @property
    def status(self) -> str:
        with self._lock:
            return self._status

    @property
    def result(self) -> RunResult | None:
        with self._lock:
            return self._result

    def status_dict(self) -> dict[str, Any]:
        """Run status, elapsed time, current phase, status history and the (masked) config."""
        with self._lock:
            m = self._metadata
            return {
                "status": self._status,
                "terminal": self._status in TERMINAL,
                "reason": self._reason,
                "stop_requested": self._stop_requested,
                "elapsed_s": round(self.elapsed_s, 3),
                "started_at": m.started_at if m and m.started_at else self._started_wall,
                "phase": self._current.name if self._current else None,
                "phases_done": [{"name": p.name, "status": p.status} for p in self._phases],
                "phases_planned": [self._phase_title(p) for p in (m.config.get("phases") or [])] if m else [],
                "history": list(self._history),
                "run_id": m.run_id if m else None,
                "config_name": m.config_name if m else None,
                "stack": m.stack if m else None,
                "config": m.config if m else {},
                "samples": self._samples,
            }

    @staticmethod
    def _phase_title(p: Any) -> str:
        if isinstance(p, dict):
            return p.get("label") or f"{p.get('name')}@{p.get('target', 'durable')}"
        return str(p)

    def metrics_dict(self) -> dict[str, Any]:
        """Overall and per-operation figures, the timeline window, errors and per-node figures.

        The figures are computed once per change (sample, phase end), not once per viewer."""
        with self._lock:
            status = self.status_dict()
            version = self._version
            cached = self._cache
        if cached is None or cached[0] != version:
            cached = (version, self._figures())
            with self._lock:
                self._cache = cached
        figures = cached[1]
        elapsed = status["elapsed_s"]
        overall = {
            **figures["overall"],
            "ops_per_s": round(figures["overall"]["ops"] / elapsed, 1) if elapsed > 0 else None,
        }
        return {"status": status, **figures, "overall": overall}

    def _figures(self) -> dict[str, Any]:
        with self._lock:
            phases = list(self._phases)
            current = self._current
            timeline = list(self._timeline)
            nodes, nodes_error = self._nodes, self._nodes_error
            m = self._metadata
        every = phases + ([current] if current else [])
        ops = sum(p.ops for p in every)
        errors: list[dict[str, Any]] = []
        for p in every:
            for cat, e in p.errors.items():
                errors.append({"phase": p.name, "category": cat, "count": e["count"], "samples": list(e["samples"])})
        all_lat = _merge_all({f"{i}/{k}": h for i, p in enumerate(every) for k, h in p.latencies.items()})
        all_lag = _merge_all({f"{i}/{k}": h for i, p in enumerate(every) for k, h in p.lags.items()})
        delays: dict[str, HistView] = {}
        for p in every:
            for k, h in p.connector_delays.items():
                delays[k] = delays.get(k, HistView()).merged(h)
        return {
            "overall": {
                "ops": ops,
                "errors": sum(e["count"] for e in errors),
                "latency": all_lat.summary_ms(),
                "lag": all_lag.summary_ms(),
            },
            "current": current.to_dict() if current else None,
            "phases": [p.to_dict() for p in phases],
            "timeline": timeline,
            "errors": errors,
            "nodes": {
                "topology": (m.topology if m else {}),
                "connections": {k: h.summary_ms() for k, h in delays.items()},
                "stack": nodes,
                "stack_error": nodes_error,
            },
        }

    def prometheus_view(self) -> dict[str, Any]:
        """Copies for the Prometheus collector: metadata, status, and each phase's histograms."""
        with self._lock:
            return {
                "metadata": self._metadata,
                "status": self._status,
                "elapsed_s": self.elapsed_s,
                "phases": list(self._phases) + ([self._current] if self._current else []),
                "current": self._current.name if self._current else None,
            }
