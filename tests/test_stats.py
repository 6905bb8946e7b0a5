"""The statistics behind `sprout compare` (sprout_harness/metrics/stats.py), against known
distributions and brute force: percentile intervals must cover the true population
percentile as often as they claim, the rank test must agree with enumerating every split,
hold its level under the null and find a clean shift, and the "few samples" gate must sit
exactly at MIN_TAIL samples beyond the percentile."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from sprout_harness.metrics import stats
from sprout_harness.metrics.histogram import Histogram

seeds = st.integers(min_value=0, max_value=2**32 - 1)

# Known populations (ns-sized values) and their exact quantile functions.
DISTRIBUTIONS = {
    "lognormal": (
        lambda rng, n: rng.lognormal(math.log(200_000), 0.5, n),
        lambda p: math.exp(math.log(200_000) + 0.5 * float(sps.norm.ppf(p))),
    ),
    "uniform": (lambda rng, n: rng.uniform(100_000, 1_000_000, n), lambda p: 100_000 + p * 900_000),
    "exponential": (lambda rng, n: rng.exponential(100_000, n), lambda p: -100_000 * math.log1p(-p)),
}


def hist_of(values: np.ndarray) -> Histogram:
    h = Histogram()
    h.record_many(values)
    return h


# -- tail_samples / estimable -----------------------------------------------------------------


@pytest.mark.parametrize(
    "n, q, tail, ok",
    [
        (1000, 99.0, 10, True),
        (999, 99.0, 9, False),  # the p99 boundary
        (10_000, 99.9, 10, True),
        (9_999, 99.9, 9, False),  # p99.9
        (20, 50.0, 10, True),
        (19, 50.0, 9, False),  # p50: the scarcer side is either half
        (1000, 1.0, 10, True),
        (999, 1.0, 9, False),  # a low percentile: samples below it
        (1, 99.0, 0, False),
        (0, 50.0, 0, False),
    ],
)
def test_tail_samples_and_estimable_boundaries(n: int, q: float, tail: int, ok: bool) -> None:
    assert stats.tail_samples(n, q) == tail
    assert stats.estimable(n, q) is ok
    assert stats.MIN_TAIL == 10


@given(
    n=st.integers(0, 1_000_000),
    q=st.sampled_from(["0.1", "1", "5", "10", "25", "50", "75", "90", "95", "99", "99.9", "99.99"]),
)
def test_tail_samples_is_the_exact_count_on_the_scarcer_side(n: int, q: str) -> None:
    p = Fraction(q) / 100
    exact = min(math.floor(n * p), math.floor(n * (1 - p)))
    assert stats.tail_samples(n, float(q)) == exact
    assert stats.estimable(n, float(q)) is (exact >= stats.MIN_TAIL)


# -- order-statistic ranks and percentile intervals -------------------------------------------


@given(n=st.integers(1, 3000), q=st.floats(0.5, 99.5), confidence=st.sampled_from([0.5, 0.9, 0.95, 0.99, 0.999]))
def test_order_statistic_ranks_cover_at_least_the_confidence_and_no_wider(n: int, q: float, confidence: float) -> None:
    """B = samples below the true percentile ~ Binomial(n, q/100); [X(l), X(u)] covers it
    when l <= B <= u - 1. Coverage must reach the confidence, and each rank must be the
    tightest that keeps its side's miss probability under (1 - confidence) / 2."""
    l, u = stats.order_statistic_ranks(n, q, confidence)
    p, a = q / 100.0, (1.0 - confidence) / 2.0
    cdf = lambda k: 0.0 if k < 0 else 1.0 if k >= n else float(sps.binom.cdf(k, n, p))  # noqa: E731
    assert l < u
    miss_low, miss_high = cdf(l - 1), 1.0 - cdf(u - 1)
    assert miss_low <= a + 1e-12 and miss_high <= a + 1e-12
    assert cdf(u - 1) - cdf(l - 1) >= confidence - 1e-12
    # One rank tighter on either side would miss too often.
    assert cdf(l) > a - 1e-12 or l >= n
    assert 1.0 - cdf(u - 2) > a - 1e-12 or u <= 1


@settings(max_examples=25)
@given(
    seed=seeds,
    n=st.integers(30, 4000),
    q=st.sampled_from([50.0, 90.0, 99.0]),
    confidence=st.sampled_from([0.9, 0.99]),
    dist=st.sampled_from(sorted(DISTRIBUTIONS)),
)
def test_quantile_interval_is_the_order_statistic_interval_widened_to_its_buckets(
    seed: int, n: int, q: float, confidence: float, dist: str
) -> None:
    rng = np.random.default_rng(seed)
    values = np.rint(DISTRIBUTIONS[dist][0](rng, n)).astype(np.int64)
    h = hist_of(values)
    iv = stats.quantile_interval(h, q, confidence)
    x = np.sort(values)
    l, u = stats.order_statistic_ranks(n, q, confidence)
    gamma = (1 + h.relative_error) / (1 - h.relative_error)  # widest a bucket gets, hi / lo
    assert (iv.q, iv.confidence, iv.n) == (q, confidence, n)
    if l >= 1:
        assert iv.lo <= x[l - 1] <= iv.lo * gamma
    else:
        assert iv.lo == 0.0 and not iv.bounded
    if u <= n:
        assert iv.hi / gamma <= x[u - 1] <= iv.hi
    else:
        assert iv.hi == math.inf and not iv.bounded
    assert iv.bounded is (l >= 1 and u <= n)
    assert h.min <= iv.lo or iv.lo == 0.0
    assert iv.hi <= h.max or iv.hi == math.inf


@settings(max_examples=3)
@example(seed=20261205)
@given(seed=seeds)
def test_quantile_interval_covers_the_true_percentile_99_percent_of_the_time(seed: int) -> None:
    """300 samples of 2000 from each known distribution: the 99% interval of p50, p90 and
    p99 must contain the population percentile in at least 96% of them (a 50% interval
    covers 66-82% here on lognormal and exponential data, swapped ranks almost never)."""
    rng = np.random.default_rng(seed)
    trials, n = 300, 2000
    for name, (draw, quantile) in DISTRIBUTIONS.items():
        hits = {q: 0 for q in (50.0, 90.0, 99.0)}
        for _ in range(trials):
            h = hist_of(draw(rng, n))
            for q in hits:
                iv = stats.quantile_interval(h, q, 0.99)
                assert iv.bounded, (name, q, iv)
                hits[q] += iv.lo <= quantile(q / 100.0) <= iv.hi
        for q, k in hits.items():
            assert k / trials >= 0.96, f"{name} p{q:g}: the 99% interval covered the truth in {k} of {trials}"


def test_quantile_interval_is_tight_enough_to_be_useful() -> None:
    """2000 lognormal samples: the 99% interval of p50 spans a few percent, not the sample."""
    rng = np.random.default_rng(3)
    h = hist_of(rng.lognormal(math.log(200_000), 0.5, 2000))
    iv = stats.quantile_interval(h, 50.0, 0.99)
    assert iv.bounded and 1.0 < iv.hi / iv.lo < 1.15
    assert iv.lo <= h.percentile(50.0) <= iv.hi


def test_too_few_samples_leave_a_side_unbounded() -> None:
    rng = np.random.default_rng(5)
    h = hist_of(rng.lognormal(math.log(200_000), 0.5, 50))
    p99 = stats.quantile_interval(h, 99.0, 0.99)
    assert p99.hi == math.inf and p99.lo > 0 and not p99.bounded  # 50 samples cannot bound p99 above
    assert stats.quantile_interval(h, 50.0, 0.99).bounded  # but do bound the median
    tiny = hist_of(np.array([100_000, 200_000, 300_000, 400_000, 500_000]))
    p50 = stats.quantile_interval(tiny, 50.0, 0.99)
    assert (p50.lo, p50.hi) == (0.0, math.inf) and not p50.bounded  # 5 samples: not at 99%
    empty = stats.quantile_interval(Histogram(), 50.0, 0.99)
    assert (empty.lo, empty.hi, empty.n, empty.bounded) == (0.0, math.inf, 0, False)


def test_a_percentile_that_is_zero_ns_is_bounded() -> None:
    """0 ns is a real lower bound when the order statistic is 0, not "unbounded below"."""
    iv = stats.quantile_interval(hist_of(np.zeros(2000, dtype=np.int64)), 50.0, 0.99)
    assert (iv.lo, iv.hi) == (0.0, 0.0) and iv.bounded


@pytest.mark.parametrize("q, confidence", [(0.0, 0.99), (100.0, 0.99), (50.0, 1.0), (50.0, 0.0)])
def test_quantile_interval_refuses_degenerate_requests(q: float, confidence: float) -> None:
    with pytest.raises(ValueError):
        stats.quantile_interval(hist_of(np.arange(1, 100)), q, confidence)


# -- the rank test ----------------------------------------------------------------------------


def brute_force_p(base: list[float], new: list[float], margin: float) -> Fraction:
    """P(rank sum of a random m-subset >= the new side's), enumerating every split, midranks."""
    x = list(np.asarray(base, dtype=float))
    y = list(np.asarray(new, dtype=float) / (1.0 + margin))
    pooled = x + y
    order = sorted(pooled)
    midrank = {}
    for v in set(pooled):
        first = order.index(v) + 1
        last = len(order) - order[::-1].index(v)
        midrank[v] = Fraction(first + last, 2)
    ranks = [midrank[v] for v in pooled]
    observed = sum(ranks[len(x) :])
    splits = list(itertools.combinations(range(len(pooled)), len(y)))
    return Fraction(sum(1 for s in splits if sum(ranks[i] for i in s) >= observed), len(splits))


small_tied = st.lists(st.integers(1, 4).map(lambda k: float(k * 100)), min_size=1, max_size=6)


@given(base=small_tied, new=small_tied, margin=st.sampled_from([0.0, 0.1, 0.5, 1.0]))
@example(base=[100.0, 100.0, 200.0], new=[200.0, 200.0, 300.0], margin=0.0)
@example(base=[100.0] * 5, new=[110.0] * 5, margin=0.1)  # new / 1.1 ties base exactly: p = 1
def test_slower_beyond_agrees_with_enumerating_every_split(base: list[float], new: list[float], margin: float) -> None:
    got = stats.slower_beyond(base, new, margin)
    assert (got.n_base, got.n_new, got.margin) == (len(base), len(new), margin)
    assert got.p_value == pytest.approx(float(brute_force_p(base, new, margin)), rel=1e-9, abs=1e-12)
    assert got.min_p == stats.min_p_value(len(base), len(new))
    assert got.min_p - 1e-12 <= got.p_value <= 1.0


@settings(max_examples=4)
@given(seed=seeds, sizes=st.sampled_from([(5, 5), (4, 6), (3, 3), (8, 8)]), tied=st.booleans())
def test_slower_beyond_holds_its_level_under_the_null(seed: int, sizes: tuple[int, int], tied: bool) -> None:
    """iid base and new (continuous, or coarse with many ties): P(p <= a) <= a for every a,
    up to sampling error over 3000 trials; and not vacuously (p is not just always large)."""
    rng = np.random.default_rng(seed)
    nb, nn = sizes
    trials = 3000
    ps = np.empty(trials)
    for t in range(trials):
        draw = rng.integers(0, 4, nb + nn).astype(float) if tied else rng.lognormal(0.0, 0.3, nb + nn)
        ps[t] = stats.slower_beyond(draw[:nb], draw[nb:], 0.0).p_value
    for a in (0.01, 0.05, 0.1, 0.25, 0.5):
        rate = float(np.mean(ps <= a))
        tol = 4 * math.sqrt(a * (1 - a) / trials) + 1e-9
        assert rate <= a + tol, f"P(p <= {a}) = {rate} under the null"
    if not tied and nb + nn >= 8:  # continuous data: the attainable level just under 0.1 is close to it
        assert float(np.mean(ps <= 0.1)) >= 0.06


def test_slower_beyond_finds_a_clean_30_percent_shift_with_5_runs_a_side() -> None:
    base = [1000.0, 1010.0, 1020.0, 1030.0, 1040.0]
    slow = [v * 1.3 for v in base]
    got = stats.slower_beyond(base, slow, 0.10)
    assert got.p_value == pytest.approx(1 / 252) and got.p_value == pytest.approx(got.min_p)
    assert got.p_value <= stats.DEFAULT_ALPHA
    # The mirror question ("is base slower than new?") is not significant at all.
    assert stats.slower_beyond(slow, base, 0.10).p_value == 1.0


@pytest.mark.parametrize("shift", [1.0, 1.05, 1.09])
def test_slower_beyond_does_not_flag_a_shift_within_the_margin(shift: float) -> None:
    base = [1000.0, 1010.0, 1020.0, 1030.0, 1040.0]
    got = stats.slower_beyond(base, [v * shift for v in base], 0.10)
    assert got.p_value > 0.5
    # The same shift with no margin at all is (for 5% and up) a complete separation.
    if shift >= 1.05:
        assert stats.slower_beyond(base, [v * shift for v in base], 0.0).p_value == pytest.approx(1 / 252)


def test_slower_beyond_edge_cases() -> None:
    assert stats.slower_beyond([], [1.0, 2.0]).p_value == 1.0
    assert stats.slower_beyond([1.0], []).p_value == 1.0
    for bad in (-0.1, math.inf, math.nan):
        with pytest.raises(ValueError, match="margin"):
            stats.slower_beyond([1.0], [2.0], bad)
    with pytest.raises(ValueError, match="finite"):
        stats.slower_beyond([1.0, math.nan], [2.0])


def test_min_p_value_and_runs_needed() -> None:
    assert stats.min_p_value(5, 5) == 1 / 252
    assert stats.min_p_value(1, 1) == 0.5 and stats.min_p_value(0, 5) == 1.0
    assert stats.runs_needed(0.01) == 5
    assert stats.runs_needed(0.05) == 3  # 1 / C(6, 3) = 0.05 exactly
    assert stats.runs_needed(0.5) == 1


@given(alpha=st.floats(1e-6, 0.5))
def test_runs_needed_is_the_fewest_that_can_reach_alpha(alpha: float) -> None:
    k = stats.runs_needed(alpha)
    assert stats.min_p_value(k, k) <= alpha
    assert k == 1 or stats.min_p_value(k - 1, k - 1) > alpha


# -- noise helpers ----------------------------------------------------------------------------


def test_spread_and_detectable_change() -> None:
    assert stats.spread([100.0]) == 0.0
    assert stats.spread([100.0, 110.0, 105.0]) == pytest.approx(0.10)
    assert stats.spread([0.0, 0.0]) == 0.0 and stats.spread([0.0, 1.0]) == math.inf
    assert stats.detectable_change(0.10, 0.10) == pytest.approx(0.21)
    # A shift just past detectable_change separates completely from runs of that spread.
    runs = [100.0, 104.0, 110.0, 102.0, 107.0]
    need = stats.detectable_change(stats.spread(runs), 0.10)
    slow = [v * (1 + need) * 1.001 for v in runs]
    assert stats.slower_beyond(runs, slow, 0.10).p_value == pytest.approx(1 / 252)
    slow_less = [v * (1 + need) * 0.98 for v in runs]
    assert stats.slower_beyond(runs, slow_less, 0.10).p_value > 1 / 252


# -- the noise model behind `sprout noise` ------------------------------------------------------

from sprout_harness.metrics import noise  # noqa: E402


@pytest.mark.parametrize("k,alpha", [(5, 0.01), (5, 0.05), (6, 0.01), (10, 0.01), (4, 0.05)])
def test_u_critical_matches_the_exact_mann_whitney_test(k: int, alpha: float) -> None:
    from scipy.stats import mannwhitneyu

    u = noise.u_critical(k, k, alpha)
    base = np.arange(k, dtype=float)

    def p_at(pairs_below: int) -> float:  # new values placed so exactly `pairs_below` (new <= base) pairs exist
        new = np.arange(k, dtype=float) + k
        left = pairs_below
        for i in range(k):
            take = min(left, k)
            new[i] = (k - take) - 0.5 if take else new[i]
            left -= take
        return float(mannwhitneyu(new, base, alternative="greater", method="exact").pvalue)

    assert p_at(u) <= alpha < p_at(u + 1)


def test_u_critical_is_minus_one_when_alpha_is_out_of_reach() -> None:
    assert noise.u_critical(3, 3, 0.01) == -1 and noise.u_critical(5, 5, 0.003) == -1


def test_false_alarm_rate_falls_with_the_threshold_and_is_bounded_by_alpha() -> None:
    sigmas = [0.02, 0.1, 0.3]
    rates = [noise.false_alarm_rate(sigmas, t, 5, 0.01) for t in (0.0, 0.05, 0.1, 0.3)]
    assert rates == sorted(rates, reverse=True) and rates[-1] < rates[0]
    assert noise.false_alarm_rate([1e-9], 0.05, 5, 0.01) == 0.0
    # however noisy a figure, it alone is flagged at most as often as the test's size (2/252)
    assert noise.false_alarm_rate([5.0], 0.0, 5, 0.01) <= 2 / 252 + 0.005


def test_detectable_slowdown_grows_with_noise_and_threshold() -> None:
    quiet, noisy = (noise.detectable_slowdown(s, 0.1, 5, 0.01) for s in (0.01, 0.1))
    assert 0.1 < quiet < noisy
    assert noise.detectable_slowdown(0.01, 0.2, 5, 0.01) > quiet
    assert noise.detectable_slowdown(0.01, 0.1, 3, 0.01) == math.inf  # 3 runs cannot reach 0.01


def test_sigma_upper_bound_is_wider_with_fewer_runs() -> None:
    assert noise.sigma_upper(0.1, 3) > noise.sigma_upper(0.1, 10) > 0.1
    assert noise.sigma_upper(0.1, 1) == math.inf
