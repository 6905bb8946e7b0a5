"""Collects everything measured in one phase and freezes it into a ``PhaseResult``.

Latencies are ``time.perf_counter_ns`` deltas (the injectable ``clock``); wall-clock unix time is
only used for ``started_at``/``ended_at``. The recorder is not thread-safe: use one per thread or
keep recording on the event loop thread.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Callable

from sprout_harness.metrics.histogram import Histogram, HistogramSnapshot
from sprout_harness.metrics.results import Check, ErrorStat, PhaseResult, PhaseStatus
from sprout_harness.metrics.system import peak_rss_bytes
from sprout_harness.metrics.timeline import Timeline

MAX_ERROR_SAMPLES = 5
_MAX_SAMPLE_CHARS = 500


class _Timer:
    """Context manager returned by ``PhaseRecorder.timer``; a class, not a generator, to stay cheap."""

    __slots__ = ("_rec", "_op", "_t0", "elapsed_ns")

    def __init__(self, rec: PhaseRecorder, op: str) -> None:
        self._rec = rec
        self._op = op
        self._t0 = 0
        self.elapsed_ns: int | None = None

    def __enter__(self) -> _Timer:
        self._t0 = self._rec._clock()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        end = self._rec._clock()
        if exc_type is None:
            self.elapsed_ns = end - self._t0
            self._rec._record_at(self._op, self.elapsed_ns, end)
        elif issubclass(exc_type, Exception):
            # A failed op's duration would pollute the latency figures; it is an error instead.
            self._rec.error(exc_type.__name__, f"{self._op}: {exc}")
        # BaseException (cancellation, KeyboardInterrupt) is neither a sample nor an error.
        return False


class PhaseRecorder:
    """Everything measured in one phase."""

    def __init__(self, phase: str, clock: Callable[[], int] = time.perf_counter_ns) -> None:
        self.phase = phase
        self._clock = clock
        self._t0: int | None = None
        self._t1: int | None = None
        self._started_at = 0.0
        self._ended_at = 0.0
        self._timeline: Timeline | None = None
        self._latencies: dict[str, Histogram] = {}
        self._lags: dict[str, Histogram] = {}
        self._delays: dict[str, Histogram] = {}
        self._counters: dict[str, int] = {}
        self._errors: dict[str, list[Any]] = {}  # category -> [count, deque of samples]
        self._checks: list[Check] = []
        self._mark: tuple[PhaseStatus, str] | None = None
        self.extra: dict[str, Any] = {}
        """Free-form, JSON-serialisable facts about the phase (copied into ``PhaseResult.extra``)."""

    # -- phase wall time ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the phase clock (the timeline's second 0)."""
        self._t0 = self._clock()
        self._t1 = None
        self._started_at = time.time()
        self._timeline = Timeline(self._t0)

    def stop(self) -> None:
        """Stop the phase clock; later samples are still recorded but not in the wall time."""
        if self._t0 is None:
            self.start()
        self._t1 = self._clock()
        self._ended_at = time.time()

    @property
    def elapsed_ns(self) -> int:
        """Wall time so far (or of the whole phase once stopped)."""
        if self._t0 is None:
            return 0
        return (self._t1 if self._t1 is not None else self._clock()) - self._t0

    # -- samples -----------------------------------------------------------------------------

    def latency(self, op: str) -> Histogram:
        """Latency histogram of one operation type (created on first use).

        Samples added straight to it (e.g. ``record_many``) count in latency and throughput
        but not in the per-second timeline."""
        h = self._latencies.get(op)
        if h is None:
            h = self._latencies[op] = Histogram()
        return h

    def record(self, op: str, value_ns: int) -> None:
        """One finished operation: its latency sample, its count (the histogram's), its timeline second."""
        # Same as _record_at(op, value_ns, self._clock()), inlined: this is the per-sample hot path.
        h = self._latencies.get(op)
        if h is None:
            h = self.latency(op)
        h.record(value_ns)
        tl = self._timeline
        if tl is None:
            self.start()
            tl = self._timeline
        tl.record(self._clock(), value_ns)  # type: ignore[union-attr]

    def _record_at(self, op: str, value_ns: int, at_ns: int) -> None:
        h = self._latencies.get(op)
        if h is None:
            h = self.latency(op)
        h.record(value_ns)
        tl = self._timeline
        if tl is None:  # recording before start(): the phase starts with its first sample
            self.start()
            tl = self._timeline
        tl.record(at_ns, value_ns)  # type: ignore[union-attr]

    def timer(self, op: str) -> _Timer:
        """``with rec.timer("op"):`` records the block's perf_counter_ns duration on success;
        an exception is counted as an error of its type's name (and re-raised), not as latency."""
        return _Timer(self, op)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to a counter (e.g. ``entities_created``)."""
        self._counters[name] = self._counters.get(name, 0) + n

    def lag(self, name: str, value_ns: int) -> None:
        """A commit -> notification lag sample; reported as ``lag.<name>`` (stored under ``name``)."""
        h = self._lags.get(name)
        if h is None:
            h = self._lags[name] = Histogram()
        h.record(value_ns)

    def merge_lag(self, name: str, hist: Histogram) -> None:
        """Merge lag samples measured elsewhere (another process, a per-step histogram) into ``lag.<name>``."""
        h = self._lags.get(name)
        if h is None:
            h = self._lags[name] = Histogram()
        h.merge(hist)

    def connector_delay(self, message_type: str, value_ns: int) -> None:
        """Time a message of ``message_type`` spent in a connector between nodes."""
        h = self._delays.get(message_type)
        if h is None:
            h = self._delays[message_type] = Histogram()
        h.record(value_ns)

    def error(self, category: str, sample: str | None = None) -> None:
        """Count one error of ``category``; keep the ``MAX_ERROR_SAMPLES`` most recent messages."""
        entry = self._errors.get(category)
        if entry is None:
            entry = self._errors[category] = [0, deque(maxlen=MAX_ERROR_SAMPLES)]
        entry[0] += 1
        if sample is not None:
            entry[1].append(sample if len(sample) <= _MAX_SAMPLE_CHARS else sample[:_MAX_SAMPLE_CHARS] + "...")

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        """Record a validation result; one failed check makes the phase ``failed``."""
        self._checks.append(Check(name=name, ok=bool(ok), detail=detail))

    # -- status ------------------------------------------------------------------------------

    def mark_unsupported(self, reason: str) -> None:
        """The stack cannot run this phase; it is reported as ``unsupported``, not failed."""
        self._set_mark("unsupported", reason)

    def mark_cancelled(self, reason: str = "cancelled") -> None:
        """The phase was cut short (Ctrl-C, timeout)."""
        self._set_mark("cancelled", reason)

    def mark_error(self, reason: str) -> None:
        """The phase crashed (the harness or the stack raised)."""
        self._set_mark("error", reason)

    _PRECEDENCE = {"unsupported": 1, "cancelled": 2, "error": 3}

    def _set_mark(self, status: PhaseStatus, reason: str) -> None:
        if self._mark is None or self._PRECEDENCE[status] >= self._PRECEDENCE[self._mark[0]]:
            self._mark = (status, reason)

    def _status(self) -> tuple[PhaseStatus, str | None]:
        if self._mark is not None:
            return self._mark
        failed = [c for c in self._checks if not c.ok]
        if failed:
            return "failed", "; ".join(
                f"check {c.name!r} failed" + (f": {c.detail}" if c.detail else "") for c in failed
            )
        return "ok", None

    # -- reading while it runs ----------------------------------------------------------------

    def peek(self) -> PhaseSnapshot:
        """What was measured so far, copied without changing anything: safe from another
        thread than the one recording (the live monitor). `result()` is for the end of the
        phase: it flushes every histogram and builds the per-second timeline."""

        def hists(d: dict[str, Histogram]) -> dict[str, HistogramSnapshot]:
            return {k: h.snapshot() for k, h in list(d.items())}  # list(): one atomic copy

        errors = {}
        for k, (n, samples) in list(self._errors.items()):
            for _ in range(3):
                try:
                    errors[k] = (int(n), list(samples))
                    break
                except RuntimeError:  # appended to while copied: take it again
                    continue
            else:
                errors[k] = (int(n), [])
        return PhaseSnapshot(
            self.phase,
            self.elapsed_ns,
            hists(self._latencies),
            hists(self._lags),
            hists(self._delays),
            dict(self._counters),
            errors,
        )

    # -- result ------------------------------------------------------------------------------

    def result(self) -> PhaseResult:
        """Freeze what was measured (histograms are copied: later samples do not leak in)."""
        wall_ns = self.elapsed_ns
        wall_s = wall_ns / 1e9
        status, reason = self._status()
        return PhaseResult(
            name=self.phase,
            status=status,
            reason=reason,
            wall_ns=wall_ns,
            started_at=self._started_at,
            ended_at=self._ended_at if self._t1 is not None else time.time(),
            latencies={k: h.copy() for k, h in self._latencies.items()},
            lags={k: h.copy() for k, h in self._lags.items()},
            connector_delays={k: h.copy() for k, h in self._delays.items()},
            counters=dict(self._counters),
            errors={k: ErrorStat(count=c, samples=list(s)) for k, (c, s) in self._errors.items()},
            checks=list(self._checks),
            timeline=self._timeline.points() if self._timeline is not None else [],
            throughput={k: h.count / wall_s for k, h in self._latencies.items() if wall_s > 0},
            peak_rss_bytes=peak_rss_bytes(),
            extra=dict(self.extra),
        )


@dataclass(frozen=True)
class PhaseSnapshot:
    """A running phase's measurements so far (`PhaseRecorder.peek`): histograms as
    `HistogramSnapshot`s, counters, and errors as (count, recent samples)."""

    phase: str
    elapsed_ns: int
    latencies: dict[str, HistogramSnapshot]
    lags: dict[str, HistogramSnapshot]
    connector_delays: dict[str, HistogramSnapshot]
    counters: dict[str, int]
    errors: dict[str, tuple[int, list[str]]]
