"""asv benchmarks: what the harness's own measuring costs per recorded sample.

asv runs ``setup`` before every timed call, so setups here only build a histogram/recorder
(cheap: bucket layouts are cached per process) and reuse sample lists made once at import.
Lower is better for every figure. ``time_record_1000`` / 1000 is the cost of one sample.
"""

from __future__ import annotations

import numpy as np

from ._common import require, rng

_DRAWS = rng(2026, numpy=True).lognormal(mean=np.log(200_000), sigma=1.5, size=100_000)
_ARRAY = np.clip(_DRAWS, 1_000, 10**9).astype(np.int64)
_SAMPLES_1000 = [int(v) for v in _ARRAY[:1000]]
_FULL: list = []  # one read-only histogram shared by the read benchmarks, built on first use


def _metrics():
    """The harness's metrics modules, imported lazily: a commit that predates them shows n/a."""
    return require("sprout_harness.metrics.histogram"), require("sprout_harness.metrics.recorder")


def _full_histogram():
    if not _FULL:
        h = _metrics()[0].Histogram()
        h.record_many(_ARRAY)
        _FULL.append(h)
    return _FULL[0]


class RecordSample:
    """Histogram.record: the inner loop of every latency measurement."""

    def setup(self) -> None:
        self.h = _metrics()[0].Histogram()
        self.v = _SAMPLES_1000[0]

    def time_record(self) -> None:
        self.h.record(self.v)

    def time_record_1000(self) -> None:
        record = self.h.record
        for v in _SAMPLES_1000:
            record(v)

    def time_record_many_100k(self) -> None:
        self.h.record_many(_ARRAY)


class RecorderSample:
    """PhaseRecorder.record (histogram + timeline) and the timer context manager."""

    def setup(self) -> None:
        self.rec = _metrics()[1].PhaseRecorder("bench")
        self.rec.start()

    def time_record_1000(self) -> None:
        record = self.rec.record
        for v in _SAMPLES_1000:
            record("op", v)

    def time_timer_1000(self) -> None:
        timer = self.rec.timer
        for _ in range(1000):
            with timer("op"):
                pass


class ReadFigures:
    """Reading a full histogram: summary (9 figures) and the sparse encoding."""

    def setup(self) -> None:
        self.h = _full_histogram()

    def time_summary(self) -> None:
        self.h.summary()

    def time_to_dict(self) -> None:
        self.h.to_dict()

    def track_record_error_p99_relative(self) -> float:
        """Relative error of p99 against numpy's exact 'lower' percentile (accuracy, lower is better)."""
        exact = float(np.percentile(_ARRAY, 99, method="lower"))
        return abs(self.h.percentile(99) - exact) / exact

    track_record_error_p99_relative.unit = "ratio"  # type: ignore[attr-defined]
