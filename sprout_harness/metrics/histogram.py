"""Mergeable log-bucketed latency histogram with a fixed relative error.

Buckets are integer ranges ``[lo, hi]`` with ``hi <= lo * (1 + a) / (1 - a)``; the value
reported for a bucket is ``2 * lo * hi / (lo + hi)``, which is within ``a`` (relative) of every
integer in the bucket. Small values get one bucket per integer, so they are exact. Zero has a
bucket of its own; values above ``max_value_ns`` land in one overflow bucket and are reported
as the exact maximum seen (a conservative upper bound).

The bucket layout depends only on ``(relative_error, max_value_ns)`` and is computed once per
process, so creating a histogram is cheap. ``record`` is a C-level ``bisect`` on the integer
bucket bounds plus a Python list increment; ``record_many`` uses ``numpy.searchsorted`` on the
same bounds, so both paths put every value in the same bucket. The Python-list counts are
folded into the numpy array lazily, when something reads the histogram.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, NamedTuple

import numpy as np

SUMMARY_KEYS = ("count", "min", "mean", "p50", "p90", "p95", "p99", "p999", "max")
_SUMMARY_QUANTILES = (("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0), ("p999", 99.9))
_NO_MIN = 1 << 127  # sentinel above any plausible value: keeps the min test in record() branch-free


@dataclass(frozen=True)
class _Layout:
    """Bucket bounds shared by every histogram with the same parameters."""

    relative_error: float
    max_value_ns: int
    uppers: list[int]  # inclusive upper bound per bucket; bucket 0 is the zero bucket
    uppers_np: np.ndarray
    lowers_np: np.ndarray  # smallest integer per bucket, plus the overflow bucket's
    reps_np: np.ndarray  # reported value per bucket (float64); overflow -> nan (uses max)

    @property
    def size(self) -> int:
        """Number of count slots: every bucket plus the overflow bucket."""
        return len(self.uppers) + 1


@lru_cache(maxsize=16)
def _layout(relative_error: float, max_value_ns: int) -> _Layout:
    if not 0.0 < relative_error < 1.0:
        raise ValueError(f"Histogram relative_error must be in (0, 1), got {relative_error!r}")
    if max_value_ns < 1:
        raise ValueError(f"Histogram max_value_ns must be >= 1, got {max_value_ns!r}")
    # A hair below the exact ratio so float rounding in lo * gamma never widens a bucket past it.
    gamma = (1.0 + relative_error) / (1.0 - relative_error) * (1.0 - 1e-12)
    uppers, lowers, reps = [0], [0], [0.0]
    lo = 1
    while lo <= max_value_ns:
        hi = min(max(lo, math.floor(lo * gamma)), max_value_ns)
        uppers.append(hi)
        lowers.append(lo)
        reps.append(2.0 * lo * hi / (lo + hi))
        lo = hi + 1
    lowers.append(max_value_ns + 1)  # overflow bucket
    reps.append(math.nan)
    return _Layout(
        relative_error=relative_error,
        max_value_ns=max_value_ns,
        uppers=uppers,
        uppers_np=np.asarray(uppers, dtype=np.int64),
        lowers_np=np.asarray(lowers, dtype=np.int64),
        reps_np=np.asarray(reps, dtype=np.float64),
    )


class HistogramSnapshot(NamedTuple):
    """A copy of a histogram's samples (`Histogram.snapshot`): the count per bucket in layout
    order (the last bucket is the overflow one), the smallest value of each bucket, the
    exact sum and max (ns; max is -1 when empty), and the layout's parameters."""

    counts: np.ndarray
    sum_ns: int
    max_ns: int
    lowers: np.ndarray
    relative_error: float
    max_value_ns: int


class Histogram:
    """Mergeable log-bucketed histogram of non-negative integers (ns), fixed relative error <= 1%, numpy-backed.

    Percentiles use the nearest-rank-below definition (numpy ``method="lower"``): the value at
    sorted index ``floor((count - 1) * q / 100)``, reported within ``relative_error`` of the
    exact sample and clamped to the exact ``[min, max]``. ``percentile(0)`` and
    ``percentile(100)`` are the exact min and max.
    """

    __slots__ = ("_layout", "_uppers", "_pending", "_counts", "_n", "_flushed_n", "_sum", "_min", "_max", "_gen")

    def __init__(self, relative_error: float = 0.01, max_value_ns: int = 3_600 * 10**9) -> None:
        self._layout = _layout(float(relative_error), int(max_value_ns))
        self._uppers = self._layout.uppers
        self._pending = [0] * self._layout.size
        self._counts = np.zeros(self._layout.size, dtype=np.int64)
        self._n = 0
        self._flushed_n = 0
        self._sum = 0
        self._min = _NO_MIN
        self._max = -1
        self._gen = 0  # odd while `_counts` is being changed (see `snapshot`)

    # -- recording ---------------------------------------------------------------------------

    def record(self, value_ns: int) -> None:
        """Add one sample (a non-negative integer number of nanoseconds)."""
        self._pending[bisect_left(self._uppers, value_ns)] += 1
        self._n += 1
        self._sum += value_ns
        if value_ns < self._min:
            if value_ns < 0:
                self._undo_negative(value_ns)
            self._min = value_ns
        if value_ns > self._max:
            self._max = value_ns

    def _undo_negative(self, value_ns: int) -> None:
        self._pending[0] -= 1
        self._n -= 1
        self._sum -= value_ns
        raise ValueError(f"Histogram.record got a negative value ({value_ns} ns); latencies must be >= 0")

    def record_many(self, values: Iterable[int] | np.ndarray) -> None:
        """Add many samples at once (vectorised); floats are rounded to the nearest ns."""
        arr = np.asarray(values if not isinstance(values, (range, map, filter)) else list(values))
        if arr.size == 0:
            return
        arr = arr.ravel()
        if arr.dtype.kind == "f":
            if not np.isfinite(arr).all():
                raise ValueError("Histogram.record_many got NaN or infinite values")
            arr = np.rint(arr)
        elif arr.dtype.kind not in "iub":
            raise TypeError(f"Histogram.record_many needs integers (ns), got dtype {arr.dtype}")
        arr = arr.astype(np.int64, copy=False)
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0:
            raise ValueError(f"Histogram.record_many got a negative value ({lo} ns); latencies must be >= 0")
        self._flush()
        idx = np.searchsorted(self._layout.uppers_np, arr, side="left")
        self._add_counts(np.bincount(idx, minlength=self._layout.size))
        self._n += int(arr.size)
        self._flushed_n += int(arr.size)
        # Split sum: exact even when sum(values) would overflow int64.
        self._sum += (int(np.sum(arr >> 32)) << 32) + int(np.sum(arr & 0xFFFFFFFF))
        self._min = min(self._min, lo)
        self._max = max(self._max, hi)

    def merge(self, other: Histogram) -> None:
        """Add every sample of ``other`` to this histogram (same layout required)."""
        if other._layout is not self._layout:
            raise ValueError(
                "Histogram.merge needs the same relative_error and max_value_ns on both sides: "
                f"({self._layout.relative_error}, {self._layout.max_value_ns}) vs "
                f"({other._layout.relative_error}, {other._layout.max_value_ns})"
            )
        self._flush()
        self._add_counts(other._bucket_counts())
        self._n += other._n
        self._flushed_n += other._n
        self._sum += other._sum
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)

    def copy(self) -> Histogram:
        """An independent histogram with the same samples."""
        h = Histogram(self._layout.relative_error, self._layout.max_value_ns)
        h.merge(self)
        return h

    def _add_counts(self, counts: np.ndarray) -> None:
        self._gen += 1  # odd: a `snapshot` from another thread reads again
        self._counts += counts
        self._gen += 1

    def _flush(self) -> None:
        if self._n != self._flushed_n:
            # not `_add_counts`: resetting `_pending` belongs inside the same odd window
            self._gen += 1
            self._counts += np.asarray(self._pending, dtype=np.int64)
            self._pending = [0] * self._layout.size
            self._flushed_n = self._n
            self._gen += 1

    def _bucket_counts(self) -> np.ndarray:
        self._flush()
        return self._counts

    # -- reading -----------------------------------------------------------------------------

    def snapshot(self) -> HistogramSnapshot:
        """The samples recorded so far, read without changing anything: safe from another
        thread than the recording one (a live monitor).

        Reading from elsewhere must not flush (the recording thread's samples could be lost)
        and must not see a flush half done (they would count twice): `_gen` is odd while
        the counts change, and a read that saw it change is taken again."""
        while True:
            gen = self._gen
            if gen & 1:
                time.sleep(0)  # let the recording thread finish its flush
                continue
            counts = self._counts.copy()
            pending = list(self._pending)
            total, top = self._sum, self._max
            if self._gen == gen:
                counts += np.asarray(pending, dtype=np.int64)
                layout = self._layout
                return HistogramSnapshot(
                    counts, total, top, layout.lowers_np, layout.relative_error, layout.max_value_ns
                )

    @property
    def relative_error(self) -> float:
        return self._layout.relative_error

    @property
    def max_value_ns(self) -> int:
        return self._layout.max_value_ns

    @property
    def count(self) -> int:
        return self._n

    @property
    def total(self) -> int:
        """Exact sum of all samples (ns)."""
        return self._sum

    @property
    def min(self) -> int:
        """Exact smallest sample; 0 when empty."""
        return self._min if self._n else 0

    @property
    def max(self) -> int:
        """Exact largest sample; 0 when empty."""
        return self._max if self._n else 0

    @property
    def mean(self) -> float:
        """Exact mean; nan when empty."""
        return self._sum / self._n if self._n else math.nan

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:  # an empty histogram is still a histogram, not "falsy data"
        return True

    def percentile(self, q: float) -> float:
        """Value (ns) at percentile ``q`` in [0, 100]; nan when empty."""
        return self.percentiles([q])[0]

    def percentiles(self, qs: Iterable[float]) -> list[float]:
        """Several percentiles with one pass over the buckets."""
        qs = list(qs)
        for q in qs:
            if not 0.0 <= q <= 100.0:
                raise ValueError(f"percentile q must be within [0, 100], got {q!r}")
        n = self._n
        if n == 0:
            return [math.nan] * len(qs)
        cum = np.cumsum(self._bucket_counts())
        out = []
        for q in qs:
            if q == 0.0:
                out.append(float(self._min))
                continue
            if q == 100.0:
                out.append(float(self._max))
                continue
            # Same arithmetic as numpy's method="lower": floor((n - 1) * (q / 100)).
            rank = math.floor((n - 1) * (q / 100.0))
            b = int(np.searchsorted(cum, rank, side="right"))
            rep = self._layout.reps_np[b]
            if math.isnan(rep):  # overflow bucket: the exact max is the honest answer
                out.append(float(self._max))
            else:
                out.append(float(min(max(rep, self._min), self._max)))
        return out

    def summary(self) -> dict[str, float]:
        """count, min, mean, p50, p90, p95, p99, p999, max; values in ns, nan when empty."""
        values = self.percentiles(q for _, q in _SUMMARY_QUANTILES)
        out: dict[str, float] = {
            "count": float(self._n),
            "min": float(self.min) if self._n else math.nan,
            "mean": self.mean,
        }
        out.update({k: v for (k, _), v in zip(_SUMMARY_QUANTILES, values)})
        out["max"] = float(self.max) if self._n else math.nan
        return {k: out[k] for k in SUMMARY_KEYS}

    # -- encoding ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Compact sparse encoding: ``buckets`` is a list of ``[lowest_value_ns_in_bucket, count]``."""
        counts = self._bucket_counts()
        nz = np.flatnonzero(counts)
        lowers = self._layout.lowers_np
        return {
            "relative_error": self._layout.relative_error,
            "max_value_ns": self._layout.max_value_ns,
            "count": self._n,
            "sum": self._sum,
            "min": self.min,
            "max": self.max,
            "buckets": [[int(lowers[i]), int(counts[i])] for i in nz],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Histogram:
        """Inverse of ``to_dict`` (unknown keys, e.g. a report's ``summary``, are ignored)."""
        try:
            h = cls(d.get("relative_error", 0.01), d.get("max_value_ns", 3_600 * 10**9))
            buckets = d.get("buckets", [])
            if buckets:
                lows = np.asarray([b[0] for b in buckets], dtype=np.int64)
                cnts = np.asarray([b[1] for b in buckets], dtype=np.int64)
                idx = np.searchsorted(h._layout.lowers_np, lows, side="right") - 1
                if (idx < 0).any() or (h._layout.lowers_np[idx] != lows).any() or (cnts < 0).any():
                    raise ValueError("bucket bounds do not match the histogram layout")
                np.add.at(h._counts, idx, cnts)
            n = int(d["count"])
            if n != int(h._counts.sum()):
                raise ValueError(f"count {n} != sum of bucket counts {int(h._counts.sum())}")
            h._n = h._flushed_n = n
            h._sum = int(d.get("sum", 0))
            if n:
                h._min, h._max = int(d["min"]), int(d["max"])
            return h
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"not a valid histogram encoding ({exc}); expected Histogram.to_dict() output") from exc

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return (
            self._layout is other._layout
            and self._n == other._n
            and self._sum == other._sum
            and self.min == other.min
            and self.max == other.max
            and bool(np.array_equal(self._bucket_counts(), other._bucket_counts()))
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __reduce__(self) -> tuple[Any, ...]:
        # Through the sparse encoding so an unpickled histogram shares the process's cached layout.
        return (Histogram.from_dict, (self.to_dict(),))

    def __repr__(self) -> str:
        if not self._n:
            return "Histogram(count=0)"
        p50, p99 = self.percentiles([50.0, 99.0])
        return f"Histogram(count={self._n}, min={self.min}, p50={p50:.0f}, p99={p99:.0f}, max={self.max})"


def measure_record_cost_ns(n: int = 200_000, rounds: int = 5) -> float:
    """Cost in ns of one ``Histogram.record`` call as a caller's loop pays it (loop overhead included).

    The ``n`` samples are log-normally spread over 1 us .. 100 ms so the bisect sees realistic
    inputs, generated before timing. They are recorded in ``rounds`` rounds into fresh histograms
    and the median round is returned, so one preempted round does not skew the figure.
    """
    if n < 1 or rounds < 1:
        raise ValueError(f"measure_record_cost_ns needs n >= 1 and rounds >= 1, got n={n}, rounds={rounds}")
    rng = np.random.default_rng(12345)
    per_round = max(1, n // rounds)
    values = np.clip(rng.lognormal(mean=math.log(200_000), sigma=1.5, size=per_round), 1_000, 10**8)
    samples = [int(v) for v in values]
    costs = []
    for _ in range(rounds):
        record = Histogram().record
        t0 = time.perf_counter_ns()
        for v in samples:
            record(v)
        costs.append((time.perf_counter_ns() - t0) / per_round)
    return float(np.median(costs))
