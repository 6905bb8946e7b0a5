"""Histogram accuracy against numpy's exact percentiles, merging, encoding, edge values."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sprout_harness.metrics.histogram import SUMMARY_KEYS, Histogram, measure_record_cost_ns

MAX = 3_600 * 10**9
values_st = st.lists(st.integers(min_value=0, max_value=MAX), min_size=1, max_size=300)
# Latency-shaped data: many values spread over orders of magnitude, some repeated.
lognormal_st = st.builds(
    lambda seed, n, sigma: np.clip(
        np.random.default_rng(seed).lognormal(mean=12.0, sigma=sigma, size=n), 0, MAX
    ).astype(np.int64),
    st.integers(0, 2**32),
    st.integers(1, 5000),
    st.floats(0.1, 4.0),
)
q_st = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


def _within(approx: float, exact: float, rel: float) -> bool:
    return abs(approx - exact) <= rel * exact + 1e-9 * max(exact, 1.0)


@given(values=values_st, qs=st.lists(q_st, min_size=1, max_size=10))
def test_percentiles_within_relative_error_of_numpy_lower(values: list[int], qs: list[float]) -> None:
    h = Histogram()
    for v in values:
        h.record(v)
    exact = np.asarray(values, dtype=np.int64)
    for q in qs:
        want = float(np.percentile(exact, q, method="lower"))
        got = h.percentile(q)
        assert _within(got, want, h.relative_error), (q, got, want)


@given(data=lognormal_st, q=q_st, rel=st.sampled_from([0.001, 0.01, 0.05]))
def test_record_many_matches_numpy_for_any_relative_error(data: np.ndarray, q: float, rel: float) -> None:
    h = Histogram(relative_error=rel)
    h.record_many(data)
    want = float(np.percentile(data, q, method="lower"))
    assert _within(h.percentile(q), want, rel)


@given(values=values_st)
def test_min_max_count_total_mean_exact(values: list[int]) -> None:
    h = Histogram()
    for v in values:
        h.record(v)
    assert (h.count, h.min, h.max, h.total) == (len(values), min(values), max(values), sum(values))
    assert h.mean == sum(values) / len(values)
    assert h.percentile(0) == min(values)
    assert h.percentile(100) == max(values)


@given(values=values_st)
def test_record_and_record_many_agree(values: list[int]) -> None:
    one, many = Histogram(), Histogram()
    for v in values:
        one.record(v)
    many.record_many(values)
    assert one == many


@given(a=values_st, b=values_st, c=st.lists(st.integers(0, MAX), max_size=50))
def test_merge_equals_recording_everything_in_one(a: list[int], b: list[int], c: list[int]) -> None:
    ha, hb, hc, whole = Histogram(), Histogram(), Histogram(), Histogram()
    for v in a:
        ha.record(v)
    hb.record_many(b)
    for v in c:
        hc.record(v)
    for v in a + b + c:
        whole.record(v)
    ha.merge(hb)
    ha.merge(hc)
    assert ha == whole
    assert ha.summary() == whole.summary()


@given(values=st.lists(st.integers(0, MAX), max_size=300))
def test_to_dict_from_dict_round_trip_through_json(values: list[int]) -> None:
    h = Histogram()
    h.record_many(values)
    for v in values[:20]:
        h.record(v)  # leaves unflushed counts: to_dict must include them
    d = orjson.loads(orjson.dumps(h.to_dict()))
    back = Histogram.from_dict(d)
    assert back == h
    assert back.to_dict() == h.to_dict()
    if values:
        assert back.percentiles([50, 99]) == h.percentiles([50, 99])


def test_to_dict_is_sparse() -> None:
    h = Histogram()
    h.record_many([5, 5, 5, 1_000_000, 1_000_001])
    d = h.to_dict()
    assert len(d["buckets"]) == 2 and d["buckets"][0] == [5, 3]  # only the occupied buckets
    lo, n = d["buckets"][1]  # 1_000_000 and 1_000_001 share a bucket starting at or below them
    assert n == 2 and 1_000_000 * (1 - 2 * h.relative_error) <= lo <= 1_000_000
    assert d["count"] == 5 and d["min"] == 5 and d["max"] == 1_000_001


def test_zero_and_small_values_are_exact() -> None:
    h = Histogram()
    for v in [0, 0, 1, 2, 3, 49]:
        h.record(v)
    assert h.percentile(0) == 0
    assert h.percentile(40) == 1.0  # sorted index floor(5*0.4)=2 -> 1
    assert h.percentile(60) == 2.0
    assert h.percentile(80) == 3.0
    assert h.percentile(100) == 49


def test_huge_values_and_overflow() -> None:
    h = Histogram(max_value_ns=10**6)
    h.record(10**6)
    assert _within(h.percentile(50), 10**6, 0.01)
    h.record(10**12)  # above max_value_ns: counted, reported as the exact max
    h.record(10**15)
    assert h.count == 3 and h.max == 10**15
    assert h.percentile(99) == 10**15
    assert Histogram.from_dict(h.to_dict()) == h
    big = Histogram()
    big.record_many(np.full(1000, MAX, dtype=np.int64))
    assert big.total == 1000 * MAX and big.percentile(50) == MAX


def test_empty_histogram() -> None:
    h = Histogram()
    assert h.count == 0 and h.min == 0 and h.max == 0 and h.total == 0
    assert math.isnan(h.mean) and math.isnan(h.percentile(50))
    s = h.summary()
    assert list(s) == list(SUMMARY_KEYS) and s["count"] == 0
    assert Histogram.from_dict(h.to_dict()) == h


def test_summary_keys_and_values() -> None:
    h = Histogram()
    h.record_many(np.arange(1, 10_001))
    s = h.summary()
    assert list(s) == list(SUMMARY_KEYS)
    assert s["count"] == 10_000 and s["min"] == 1 and s["max"] == 10_000 and s["mean"] == 5000.5
    for key, q in (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99), ("p999", 99.9)):
        assert _within(s[key], float(np.percentile(np.arange(1, 10_001), q, method="lower")), 0.01)


def test_invalid_input_is_refused_with_clear_errors() -> None:
    h = Histogram()
    with pytest.raises(ValueError, match="negative"):
        h.record(-1)
    assert h.count == 0  # the bad sample left no trace
    with pytest.raises(ValueError, match="negative"):
        h.record_many([1, -5])
    with pytest.raises(ValueError, match="within"):
        h.percentile(101)
    with pytest.raises(ValueError, match="same relative_error"):
        h.merge(Histogram(relative_error=0.02))
    with pytest.raises(ValueError, match="relative_error"):
        Histogram(relative_error=0)
    with pytest.raises(ValueError, match="valid histogram"):
        Histogram.from_dict({"count": 3, "buckets": [[1, 1]]})


def test_record_many_accepts_floats_and_generators() -> None:
    h = Histogram()
    h.record_many(np.array([1.4, 2.6]))
    h.record_many(range(3))
    assert (h.count, h.min, h.max, h.total) == (5, 0, 3, 1 + 3 + 0 + 1 + 2)


def test_measure_record_cost_ns_returns_a_positive_figure() -> None:
    cost = measure_record_cost_ns(1_000)
    assert math.isfinite(cost) and cost > 0


def test_pickle_round_trip_keeps_layout_shared() -> None:
    import pickle

    h = Histogram()
    h.record_many([1, 10, 10_000_000])
    h.record(5)
    back = pickle.loads(pickle.dumps(h))
    assert back == h
    back.merge(Histogram())  # same cached layout: merging works


def test_snapshot_reads_without_flushing() -> None:
    h = Histogram()
    for v in (5, 1000, 1000, 2_000_000):
        h.record(v)
    snap = h.snapshot()
    assert int(snap.counts.sum()) == 4 and snap.sum_ns == 2_002_005 and snap.max_ns == 2_000_000
    assert h._flushed_n == 0, "a snapshot must not fold the recording side's pending samples"
    got = {int(snap.lowers[i]): int(n) for i, n in enumerate(snap.counts) if n}
    assert got == {lo: n for lo, n in h.to_dict()["buckets"]}


def test_snapshots_from_another_thread_never_count_a_sample_twice() -> None:
    """The recording thread records and flushes (every percentile read flushes) while
    another thread takes snapshots: no snapshot holds more samples than were recorded."""
    import threading

    h = Histogram()
    done = threading.Event()
    bad: list[tuple[int, int]] = []
    taken = [0]

    def reader() -> None:
        while not done.is_set():
            snap = h.snapshot()
            n_after = h.count
            if int(snap.counts.sum()) > n_after:
                bad.append((int(snap.counts.sum()), n_after))
            taken[0] += 1

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(200_000):
            h.record(1000 + i % 5000)
            if i % 50 == 0:
                h.percentile(50)  # flushes
    finally:
        done.set()
        t.join()
    assert not bad, bad[:3]
    assert taken[0] > 0
    assert int(h.snapshot().counts.sum()) == 200_000
