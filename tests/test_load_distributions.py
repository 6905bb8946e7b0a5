"""YCSB distributions, workloads and CRUD mixes: statistics with generous bounds, fixed seeds, determinism."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from sprout_harness.load.distributions import (
    SCRAMBLED_ZETAN,
    AcknowledgedCounterGenerator,
    CounterGenerator,
    DiscreteGenerator,
    LatestGenerator,
    ScrambledZipfianGenerator,
    UniformGenerator,
    ZipfianGenerator,
    fnvhash64,
    rng_for,
    zeta,
)
from sprout_harness.workloads.phases.mixes.crud_mixes import PRESETS, CrudMix, CrudWorkload, KeyPool, crud_mix
from sprout_harness.workloads.phases.mixes.ycsb_workloads import WORKLOADS, YcsbWorkload, workload_spec

N = 50_000


def test_fnvhash64_matches_ycsb_key_names():
    # YCSB's load phase (insertorder=hashed) names key 0 "user6284781860667377211"
    assert fnvhash64(0) == 6284781860667377211
    # independent FNV-1a 64 over the 8 little-endian bytes, then Java's signed abs
    for v in (1, 2, 255, 256, 10**9, 2**40 + 7):
        h = 0xCBF29CE484222325
        for b in v.to_bytes(8, "little"):
            h = ((h ^ b) * 0x100000001B3) % 2**64
        assert fnvhash64(v) == abs(h - 2**64 if h >= 2**63 else h)


def test_zeta_incremental_equals_direct():
    assert zeta(2, 0.99) == pytest.approx(1 + 2**-0.99)
    assert zeta(5000, 0.99, 1000, zeta(1000, 0.99)) == pytest.approx(zeta(5000, 0.99), rel=1e-12)


def test_uniform_chi_square():
    g = UniformGenerator(0, 99, rng_for(1, "u"))
    counts = Counter(g.next_value() for _ in range(N))
    assert set(counts) == set(range(100))
    expected = N / 100
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 160  # df = 99: the 0.1% critical value is ~148


def test_zipfian_popularity_follows_the_law():
    n = 1000
    g = ZipfianGenerator(0, n - 1, rng_for(2, "z"))
    counts = Counter(g.next_value() for _ in range(N))
    assert set(counts) <= set(range(n))  # every draw within [0, n - 1]
    zn = zeta(n, 0.99)
    # ranks 0 and 1 are exact in Gray's algorithm: P(k) = 1 / ((k+1)^theta * zeta(n))
    for k in (0, 1):
        assert counts[k] / N == pytest.approx(1 / ((k + 1) ** 0.99 * zn), rel=0.1)
    assert counts[0] > counts[1] > counts[9] > counts[99] and counts[0] > 5 * counts[20]
    top10 = sum(counts[k] for k in range(10)) / N
    assert top10 == pytest.approx(zeta(10, 0.99) / zn, rel=0.15)


def test_scrambled_zipfian_spreads_the_hot_keys():
    g = ScrambledZipfianGenerator(0, 9999, rng_for(3, "s"))
    counts = Counter(g.next_value() for _ in range(N))
    assert all(0 <= k <= 9999 for k in counts)
    ((hot, c),) = counts.most_common(1)
    assert c / N == pytest.approx(1 / SCRAMBLED_ZETAN, rel=0.15)  # the rank-0 item, hashed
    assert hot == fnvhash64(0) % 10000
    top = [k for k, _ in counts.most_common(10)]
    assert max(top) - min(top) > 1000, "hot keys should be scattered, not clustered"


def test_latest_prefers_recent_keys_and_follows_inserts():
    counter = CounterGenerator(0)
    for _ in range(1000):
        counter.next_value()
    g = LatestGenerator(counter, rng_for(4, "l"))
    draws = [g.next_value() for _ in range(N)]
    assert all(0 <= d <= 999 for d in draws)
    counts = Counter(draws)
    assert counts.most_common(1)[0][0] == 999
    # the newest 10 keys get the zipfian share of ranks 0-9
    assert sum(1 for d in draws if d >= 990) / N == pytest.approx(zeta(10, 0.99) / zeta(1000, 0.99), rel=0.15)
    for _ in range(500):
        counter.next_value()
    assert Counter(g.next_value() for _ in range(5000)).most_common(1)[0][0] == 1499


def test_acknowledged_counter_advances_over_contiguous_acks():
    c = AcknowledgedCounterGenerator(10)
    a, b, d = c.next_value(), c.next_value(), c.next_value()
    assert (a, b, d, c.last_value) == (10, 11, 12, 9)
    c.acknowledge(11)
    assert c.last_value == 9
    c.acknowledge(10)
    assert c.last_value == 11
    c.acknowledge(12)
    assert c.last_value == 12


def test_discrete_weights():
    g = DiscreteGenerator([("read", 0.95), ("update", 0.05)], rng_for(5, "d"))
    counts = Counter(g.next_value() for _ in range(N))
    assert counts["update"] / N == pytest.approx(0.05, abs=0.01)
    with pytest.raises(ValueError, match="positive weight"):
        DiscreteGenerator([("x", 0)], random.Random(0))


@pytest.mark.parametrize(
    "make",
    [
        lambda r: UniformGenerator(0, 10**6, r),
        lambda r: ZipfianGenerator(0, 10**4, r),
        lambda r: ScrambledZipfianGenerator(0, 10**6, r),
    ],
)
def test_generators_are_deterministic_per_seed(make):
    def seq(seed):
        g = make(rng_for(seed, "x"))
        return [g.next_value() for _ in range(200)]

    assert seq(7) == seq(7)
    assert seq(7) != seq(8)


# --- YCSB workloads ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_ycsb_mix_and_determinism(name):
    spec = workload_spec(name)
    w = YcsbWorkload(spec, seed=11)
    ops = [w.next_operation() for _ in range(4000)]
    counts = Counter(o.op for o in ops)
    for kind, p in spec.proportions.items():
        assert counts[kind] / len(ops) == pytest.approx(p, abs=0.03)
    assert set(counts) == set(spec.proportions)
    again = YcsbWorkload(spec, seed=11)
    assert [again.next_operation() for _ in range(4000)] == ops
    other = YcsbWorkload(spec, seed=12)
    assert [other.next_operation() for _ in range(50)] != ops[:50]
    for o in ops:
        assert o.key == w.key_name(o.keynum) and o.key.startswith("user")
        if o.op in ("update", "readmodifywrite"):
            ((f, v),) = o.fields.items()
            assert f.startswith("field") and len(v) == spec.field_length
        if o.op == "insert":
            assert len(o.fields) == spec.field_count
        if o.op == "scan":
            assert 1 <= o.scan_length <= 100
        if o.op != "insert":  # reads only target keys that exist
            assert o.keynum <= w.insert_sequence.last_value


def test_ycsb_definitions():
    assert {k: (s.proportions, s.request_distribution) for k, s in WORKLOADS.items()} == {
        "a": ({"read": 0.5, "update": 0.5}, "zipfian"),
        "b": ({"read": 0.95, "update": 0.05}, "zipfian"),
        "c": ({"read": 1.0}, "zipfian"),
        "d": ({"read": 0.95, "insert": 0.05}, "latest"),
        "e": ({"scan": 0.95, "insert": 0.05}, "zipfian"),
        "f": ({"read": 0.5, "readmodifywrite": 0.5}, "zipfian"),
    }
    e = workload_spec("ycsb-e")
    assert (e.min_scan_length, e.max_scan_length, e.scan_length_distribution) == (1, 100, "uniform")
    assert workload_spec("A", record_count=10).record_count == 10
    with pytest.raises(ValueError, match="unknown YCSB workload 'g'"):
        workload_spec("g")


def test_ycsb_load_phase_and_latest_reads_follow_inserts():
    w = YcsbWorkload(workload_spec("d", record_count=100), seed=3)
    recs = list(w.records())
    assert len(recs) == 100 and recs[0][0] == "user6284781860667377211"
    assert len({k for k, _ in recs}) == 100
    ops = [w.next_operation() for _ in range(3000)]
    inserted = [o.keynum for o in ops if o.op == "insert"]
    assert inserted == list(range(100, 100 + len(inserted)))
    late_reads = [o.keynum for o in ops[-500:] if o.op == "read"]
    # reads favour the newest keys: the last 21 of ~250 keys get far more than a uniform 8%
    newest = 100 + len(inserted) - 1
    assert sum(1 for k in late_reads if k >= newest - 20) / len(late_reads) > 0.25


def test_ycsb_on_ack_mode_hides_unacknowledged_inserts():
    w = YcsbWorkload(workload_spec("d", record_count=50), seed=1, acknowledge_mode="on-ack")
    pending = []
    for _ in range(2000):
        o = w.next_operation()
        if o.op == "insert":
            pending.append(o)
        else:
            assert o.keynum < 50  # nothing acknowledged yet
    for o in pending:
        w.acknowledge(o)
    assert w.insert_sequence.last_value == 49 + len(pending)


# --- CRUD mixes ------------------------------------------------------------------------


def test_presets():
    wh, rh, bal = (PRESETS[k].fractions() for k in ("write-heavy", "read-heavy", "balanced"))
    assert wh["read"] == pytest.approx(0.10) and rh["read"] == pytest.approx(0.90)
    assert set(bal.values()) == {0.25}
    assert crud_mix({"read": 3, "create": 1}).fractions()["read"] == 0.75
    with pytest.raises(ValueError, match="unknown crud preset"):
        crud_mix("nope")
    with pytest.raises(ValueError, match="unknown operations"):
        crud_mix({"upsert": 1})
    with pytest.raises(ValueError, match="at least one weight"):
        CrudMix(0, 0, 0, 0)


def test_key_pool():
    p = KeyPool(["a", "b", "c"])
    p.discard("a")
    assert len(p) == 2 and "a" not in p and {p.at(0), p.at(1)} == {"b", "c"}
    p.discard("zzz")
    p.add("b")
    assert len(p) == 2


@pytest.mark.parametrize("dist", ["uniform", "zipfian"])
def test_crud_workload(dist):
    def run(seed):
        pool = KeyPool([f"k{i}" for i in range(200)])
        w = CrudWorkload("balanced", pool, seed=seed, key_distribution=dist)
        ops, n = [], 0
        for _ in range(4000):
            o = w.next_operation()
            ops.append(o)
            if o.op == "create":  # the system under test assigns the id
                n += 1
                pool.add(f"new{n}")
            elif o.op in ("read", "update"):
                assert o.key in pool
        return ops

    ops = run(5)
    counts = Counter(o.op for o in ops)
    assert all(c / len(ops) == pytest.approx(0.25, abs=0.03) for c in counts.values())
    deleted = [o.key for o in ops if o.op == "delete"]
    assert len(deleted) == len(set(deleted)), "a key was deleted twice"
    assert all(o.props and "n" in o.props for o in ops if o.op in ("create", "update"))
    assert run(5) == ops and run(6) != ops


def test_crud_workload_empty_pool_creates():
    w = CrudWorkload({"delete": 1}, KeyPool(), seed=0)
    assert w.next_operation().op == "create"


def test_zipfian_never_draws_past_its_last_item():
    class Top(random.Random):
        def random(self) -> float:
            return 1.0 - 2**-53  # the largest draw: Gray's formula gives n here

    assert ZipfianGenerator(0, 9, Top()).next_value() == 9
