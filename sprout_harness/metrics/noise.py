"""What a machine can tell apart: the run-to-run noise of every figure of a repeated run,
and the gate settings it supports (`sprout noise`; method in docs/statistics.md).

Each gated figure's runs are modelled as log-normal around their median with the spread
they showed (sigma of the log values, taken at its upper 90 % confidence bound: a handful
of runs understates noise). The gate (`sprout compare`: k runs a side, a one-sided rank
test at ``alpha`` with the threshold as margin) is then simulated on that model to find
the smallest threshold (in 5 % steps) at which one comparison of two unchanged runs raises
a false alarm on any figure with probability <= ``FALSE_ALARM_TARGET``, and, per figure,
the smallest slowdown that the gate catches with probability >= ``POWER``. Drift between
the two sides (the machine getting busier) is not in the model; tools/gate_check.py
measures the whole gate on real runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from sprout_harness.metrics import stats
from sprout_harness.metrics.results import RunResult

STATS = (("p50", 50.0), ("p99", 99.0))
THRESHOLD_STEP = 0.05
MAX_THRESHOLD = 3.0
FALSE_ALARM_TARGET = 0.01
POWER = 0.9
SIGMA_CONFIDENCE = 0.9
SIMULATIONS = 4000
SEED = 20261205


@dataclass(frozen=True)
class NoiseRow:
    """One figure's noise over the runs: ``spread`` = max / min - 1, ``sigma`` the standard
    deviation of the log values and ``sigma_hi`` its upper confidence bound; ``gated`` False
    when the percentile has too few samples beyond it to gate."""

    metric: str
    stat: str
    runs: int
    median_ns: float
    min_ns: float
    max_ns: float
    spread: float
    sigma: float
    sigma_hi: float
    gated: bool


def sigma_upper(sigma: float, runs: int, confidence: float = SIGMA_CONFIDENCE) -> float:
    """Upper ``confidence`` bound of a normal standard deviation estimated from ``runs``
    values: sigma * sqrt((n - 1) / chi2.ppf(1 - confidence, n - 1))."""
    if runs < 2:
        return math.inf
    return sigma * math.sqrt((runs - 1) / float(sps.chi2.ppf(1.0 - confidence, runs - 1)))


def noise_rows(result: RunResult) -> list[NoiseRow]:
    """Every metric's p50/p99 over the runs of ``result`` (needs two runs or more)."""
    rows = []
    for metric in result.metrics():
        for stat, q in STATS:
            figs = [r.metrics[metric] for r in result.runs if metric in r.metrics]
            values = [f[stat] for f in figs]
            if len(values) < 2 or min(values) <= 0:
                continue
            sigma = float(np.std(np.log(values), ddof=1))
            rows.append(
                NoiseRow(
                    metric,
                    stat,
                    len(values),
                    stats.median(values),
                    min(values),
                    max(values),
                    stats.spread(values),
                    sigma,
                    sigma_upper(sigma, len(values)),
                    stats.estimable(int(min(f["count"] for f in figs)), q),
                )
            )
    return rows


def u_critical(k_base: int, k_new: int, alpha: float) -> int:
    """The largest U (pairs where new, shifted by the margin, is not above base) at which
    the exact one-sided rank test is significant at ``alpha``; -1 when none is."""
    # ways[u]: arrangements of the two samples with U = u (no ties), built item by item.
    ways = np.zeros(k_base * k_new + 1)
    table = {(0, 0): np.eye(1, k_base * k_new + 1).ravel()}
    for i in range(k_base + 1):
        for j in range(k_new + 1):
            if (i, j) == (0, 0):
                continue
            w = np.zeros(k_base * k_new + 1)
            if i:  # the largest item is a base one: it is above all j new ones
                w += np.roll(table[(i - 1, j)], j)
            if j:  # the largest item is a new one: it is above no base one
                w += table[(i, j - 1)]
            table[(i, j)] = w
    ways = table[(k_base, k_new)]
    cdf = np.cumsum(ways) / ways.sum()
    ok = np.nonzero(cdf <= alpha + 1e-12)[0]
    return int(ok[-1]) if len(ok) else -1


def _flag_rate(sigma: float, ratio: float, k: int, u_crit: int, rng: np.random.Generator) -> float:
    """P(the gate flags) when new = base * ``ratio`` / (1 + margin) in distribution, k a side."""
    x = rng.lognormal(0.0, sigma, (SIMULATIONS, k))
    y = rng.lognormal(0.0, sigma, (SIMULATIONS, k)) * ratio
    u = (y[:, :, None] <= x[:, None, :]).sum(axis=(1, 2))
    return float((u <= u_crit).mean())


def false_alarm_rate(sigmas: list[float], threshold: float, k: int, alpha: float) -> float:
    """P(one comparison of two unchanged k-run reports flags any of these figures)."""
    u_crit = u_critical(k, k, alpha)
    if u_crit < 0:
        return 0.0
    rng = np.random.default_rng(SEED)
    quiet = 1.0
    for s in sigmas:
        quiet *= 1.0 - _flag_rate(s, 1.0 / (1.0 + threshold), k, u_crit, rng)
    return 1.0 - quiet


def detectable_slowdown(sigma: float, threshold: float, k: int, alpha: float) -> float:
    """Smallest slowdown (fraction, 1 % steps) the gate flags with probability >= ``POWER``."""
    u_crit = u_critical(k, k, alpha)
    if u_crit < 0:
        return math.inf
    rng = np.random.default_rng(SEED)
    s = threshold
    while s <= 10.0:
        if _flag_rate(sigma, (1.0 + s) / (1.0 + threshold), k, u_crit, rng) >= POWER:
            return s
        s += 0.01
    return math.inf


@dataclass(frozen=True)
class Suggestion:
    """``threshold``: the smallest (5 % steps) whose simulated false-alarm rate per
    comparison is <= ``FALSE_ALARM_TARGET`` with ``repeat`` runs a side; ``false_alarms_at``
    that rate at the threshold asked about (``at_threshold``)."""

    threshold: float
    false_alarms: float
    at_threshold: float
    false_alarms_at: float
    gated: int
    repeat: int


def suggest(rows: list[NoiseRow], threshold: float, alpha: float, repeat: int) -> Suggestion:
    sigmas = [r.sigma_hi for r in rows if r.gated]
    t = THRESHOLD_STEP
    rate = false_alarm_rate(sigmas, t, repeat, alpha)
    while rate > FALSE_ALARM_TARGET and t < MAX_THRESHOLD:
        t = round(t + THRESHOLD_STEP, 10)
        rate = false_alarm_rate(sigmas, t, repeat, alpha)
    return Suggestion(
        threshold=t,
        false_alarms=rate,
        at_threshold=threshold,
        false_alarms_at=false_alarm_rate(sigmas, threshold, repeat, alpha),
        gated=len(sigmas),
        repeat=repeat,
    )
