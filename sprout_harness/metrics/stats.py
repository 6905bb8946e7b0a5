"""The statistics behind `sprout compare` and `sprout noise` (method and references:
docs/statistics.md). Pure functions over numbers and histograms; nothing here prints.

- Several runs a side: an exact one-sided rank test (Mann-Whitney U, as a permutation test
  on midranks so ties are handled) of "new, divided by (1 + margin), is still slower than
  base" on the runs' own figures: significant only when the slowdown is beyond the margin.
- One run a side: a distribution-free confidence interval for a percentile from the
  histogram's counts (order statistics, binomial ranks), conservative by the bucket width.
- A percentile with fewer than `MIN_TAIL` samples beyond it is not estimable: it is shown,
  marked, and never gates.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as sps

from sprout_harness.metrics.histogram import Histogram

DEFAULT_ALPHA = 0.01
MIN_TAIL = 10  # samples needed on the scarcer side of a percentile for it to gate


def tail_samples(n: int, q: float) -> int:
    """Samples on the scarcer side of percentile ``q`` (0..100) among ``n``: p99 of 1000 -> 10."""
    p = q / 100.0
    return int(min(math.floor(n * p + 1e-9), math.floor(n * (1.0 - p) + 1e-9)))


def estimable(n: int, q: float, min_tail: int = MIN_TAIL) -> bool:
    """Whether percentile ``q`` of ``n`` samples has ``min_tail`` samples beyond it (may gate)."""
    return tail_samples(n, q) >= min_tail


# -- one run a side: a percentile's interval from its histogram --------------------------------


@dataclass(frozen=True)
class QuantileInterval:
    """A ``confidence`` interval (ns) for the ``q``-th percentile of the distribution a
    histogram sampled. ``lo``/``hi`` are 0 / inf when the sample is too small to bound that
    side (``bounded`` is False then); ``lo`` may also be a real 0 ns bound (``has_lo``)."""

    q: float
    lo: float
    hi: float
    confidence: float
    n: int
    has_lo: bool = False  # ``lo`` is an order statistic (not the "no bound below" 0)

    @property
    def bounded(self) -> bool:
        return self.n > 0 and self.has_lo and math.isfinite(self.hi)


def order_statistic_ranks(n: int, q: float, confidence: float) -> tuple[int, int]:
    """1-based ranks ``(l, u)`` with P(X(l) <= xi_q <= X(u)) >= ``confidence`` for any
    continuous distribution: the number of samples below the true percentile is
    Binomial(n, q/100), so ``l`` / ``u`` cut ``(1 - confidence) / 2`` off each side.
    ``l`` < 1 or ``u`` > n means that side is unbounded."""
    a = (1.0 - confidence) / 2.0
    p = q / 100.0
    lo = int(sps.binom.ppf(a, n, p))
    hi = int(sps.binom.ppf(1.0 - a, n, p)) + 1
    # ppf returns the smallest k with cdf(k) >= a; X(k) <= xi fails when fewer than k samples
    # fall below xi, which has probability cdf(k - 1) < a.
    return lo, hi


def quantile_interval(h: Histogram, q: float, confidence: float = 1.0 - DEFAULT_ALPHA) -> QuantileInterval:
    """The order-statistic interval of percentile ``q`` from ``h``'s bucket counts: the lower
    bound is the smallest value of the bucket holding the ``l``-th sample, the upper bound the
    largest value of the bucket holding the ``u``-th one (so the bucket width only widens it)."""
    if not 0.0 < q < 100.0:
        raise ValueError(f"quantile_interval needs 0 < q < 100, got {q!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    n = h.count
    if n == 0:
        return QuantileInterval(q, 0.0, math.inf, confidence, 0)
    snap = h.snapshot()
    cum = np.cumsum(snap.counts)
    l_rank, u_rank = order_statistic_ranks(n, q, confidence)
    lo = 0.0
    if l_rank >= 1:
        b = int(np.searchsorted(cum, l_rank, side="left"))
        lo = float(max(snap.lowers[b], h.min))
    hi = math.inf
    if u_rank <= n:
        b = int(np.searchsorted(cum, u_rank, side="left"))
        top = snap.lowers[b + 1] - 1 if b + 1 < len(snap.lowers) else h.max
        hi = float(min(top, h.max))
    return QuantileInterval(q, lo, hi, confidence, n, has_lo=l_rank >= 1)


# -- several runs a side: a rank test on the runs' figures --------------------------------------


@dataclass(frozen=True)
class RankTest:
    """One-sided rank test of "new / (1 + margin) is stochastically larger than base":
    ``p_value``, the sizes, and ``min_p``, the smallest p-value these sizes can give."""

    p_value: float
    n_base: int
    n_new: int
    margin: float

    @property
    def min_p(self) -> float:
        return min_p_value(self.n_base, self.n_new)


def min_p_value(n_base: int, n_new: int) -> float:
    """Smallest one-sided p-value of an exact rank test with these sizes: 1 / C(n + m, n)."""
    if n_base < 1 or n_new < 1:
        return 1.0
    return 1.0 / math.comb(n_base + n_new, n_base)


def runs_needed(alpha: float) -> int:
    """Fewest runs a side (equal sizes) with which the rank test can reach ``alpha``."""
    k = 1
    while min_p_value(k, k) > alpha:
        k += 1
    return k


def slower_beyond(base: Sequence[float], new: Sequence[float], margin: float = 0.0) -> RankTest:
    """Is ``new`` slower than ``base`` by more than ``margin`` (a fraction)? The exact
    permutation distribution of the Mann-Whitney rank sum (midranks, so ties count half) of
    ``new / (1 + margin)`` against ``base``. A small p-value says the slowdown exceeds the
    margin."""
    if margin < 0 or not math.isfinite(margin):
        raise ValueError(f"margin must be a finite fraction >= 0, got {margin!r}")
    x = np.asarray(base, dtype=float)
    y = np.asarray(new, dtype=float) / (1.0 + margin)
    n, m = len(x), len(y)
    if n == 0 or m == 0:
        return RankTest(1.0, n, m, margin)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("rank test needs finite figures")
    doubled = np.rint(2.0 * sps.rankdata(np.concatenate([x, y]))).astype(np.int64)  # midranks x2: integers
    observed = int(doubled[n:].sum())
    # ways[k, s]: subsets of k of the items whose doubled ranks sum to s (the exact null
    # distribution of the new side's rank sum under exchangeability), built item by item.
    top = int(doubled.sum())
    ways = np.zeros((m + 1, top + 1), dtype=np.float64)
    ways[0, 0] = 1.0
    for r in doubled:
        ways[1:, r:] += ways[:-1, : top + 1 - r].copy()
    dist = ways[m]
    p = float(dist[observed:].sum() / dist.sum())
    return RankTest(min(1.0, p), n, m, margin)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if len(values) else math.nan


def relative_change(base: float, new: float) -> float:
    """new / base - 1 (0 when both are 0, inf when only base is)."""
    if base > 0:
        return new / base - 1.0
    return 0.0 if new == 0 else math.inf


# -- noise: what a machine can tell apart -----------------------------------------------------


def spread(values: Sequence[float]) -> float:
    """Run-to-run spread of one figure: max / min - 1 over the runs (0 for one run)."""
    if len(values) < 2:
        return 0.0
    lo, hi = min(values), max(values)
    if lo <= 0:
        return 0.0 if hi <= 0 else math.inf
    return hi / lo - 1.0


def false_alarm_free_threshold(values: Sequence[float]) -> float:
    """The smallest margin at which the rank test cannot flag two samples of these same
    runs against each other: a threshold at or above the spread means no split of them is
    ever "slower beyond the margin" with complete separation."""
    return spread(values)


def detectable_change(spread_: float, threshold: float) -> float:
    """The smallest slowdown that separates completely from runs of this ``spread_`` at this
    margin, so that the rank test with enough runs flags it: (1 + threshold)(1 + spread) - 1."""
    return (1.0 + threshold) * (1.0 + spread_) - 1.0
