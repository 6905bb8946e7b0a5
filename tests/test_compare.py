"""Run comparison (sprout_harness/reports/compare.py): one run a side is judged by
order-statistic intervals of each percentile, several runs a side by the exact rank test on
the runs' own figures; few-sample percentiles never gate; broken phases and missing metrics
are reported; reports of different configs or hosts are refused.

Slower runs are built by recording every sample of a real run's histograms `factor` times
larger through the Histogram API (and scaling the runs' own figures alike), never by
editing summaries."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from sprout_harness.metrics import PhaseRecorder, RunMetadata, RunResult, load_run
from sprout_harness.metrics.merge import merge_runs
from sprout_harness.reports import compare, json_report
from support.runs import make_run, slowed


def render_text(cmp: compare.Comparison) -> str:
    buf = io.StringIO()
    compare.render(cmp, Console(file=buf, width=220, color_system=None))
    return buf.getvalue()


def repeated(seeds: range) -> RunResult:
    """Runs of one config merged the way `sprout run --repeat` merges them."""
    return merge_runs([make_run(seed=s) for s in seeds])


def one_phase(run_id: str, values: dict[str, list[int]]) -> RunResult:
    rec = PhaseRecorder("p")
    rec.start()
    for op, vs in values.items():
        for v in vs:
            rec.record(op, v)
    rec.stop()
    return RunResult(RunMetadata(run_id=run_id, config_name="cfg"), [rec.result()])


# -- one run a side: intervals ----------------------------------------------------------------


def test_same_data_does_not_regress() -> None:
    cmp = compare.compare_runs(make_run(seed=1), make_run(seed=1), 0.10)
    assert not cmp.regressed and not cmp.improvements
    assert cmp.deltas and all(d.change == 0 and d.method == compare.INTERVAL for d in cmp.deltas)
    assert all(d.p_value is None for d in cmp.deltas)
    assert not cmp.missing_in_base and not cmp.missing_in_new
    assert (cmp.base_runs, cmp.new_runs) == (1, 1)
    assert any("one run on a side" in w and "--repeat 5" in w for w in cmp.warnings)
    text = render_text(cmp)
    assert "no significant regression beyond +10%" in text and "order-statistic intervals" in text


@settings(max_examples=10)
@given(a=st.integers(0, 10_000), b=st.integers(0, 10_000))
def test_two_runs_of_one_distribution_never_regress(a: int, b: int) -> None:
    cmp = compare.compare_runs(make_run(seed=a), make_run(seed=b), 0.10)
    assert not cmp.regressed and not cmp.improvements, [d for d in cmp.deltas if d.regressed or d.improved]


def test_uniformly_3x_slower_run_regresses(tmp_path: Path) -> None:
    base = make_run(seed=1)
    slow = slowed(make_run(seed=2), 3.0)
    # Through the JSON files, the way `sprout compare` reads them.
    b = load_run(json_report.write(base, tmp_path / "base.json"))
    n = load_run(json_report.write(slow, tmp_path / "new.json"))
    cmp = compare.compare_runs(b, n, compare.parse_threshold("10%"))
    assert cmp.regressed and not cmp.status_changes
    gated = {d.name for d in cmp.deltas if d.gated}
    # Every percentile with enough samples beyond it regressed, and nothing else did.
    assert (
        {d.name for d in cmp.regressions}
        == gated
        == {
            "create/create_one p50",
            "create/create_one p99",
            "create/create_batch p50",
            "live/lag.commit_to_notify p50",
            "live/connector.changes p50",
        }
    )
    for d in cmp.regressions:
        assert d.method == compare.INTERVAL
        assert d.new_range[0] > d.base_range[1] * 1.10  # the intervals are apart beyond the margin
        assert 1.5 < d.change < 2.6  # 3x, give or take two seeds' noise
    text = render_text(cmp)
    assert "REGRESSED" in text and "regressed: 5 metric(s)" in text
    # The same 3x change under a 250% margin is not a regression (it is within 200% +- noise).
    assert not compare.compare_runs(b, n, compare.parse_threshold("250%")).regressed


def test_faster_run_is_an_improvement_and_the_reverse_a_regression() -> None:
    base, fast = make_run(seed=1), slowed(make_run(seed=2), 0.5)
    cmp = compare.compare_runs(base, fast, 0.10)
    assert not cmp.regressed
    assert {d.name for d in cmp.improvements} == {d.name for d in cmp.deltas if d.gated} != set()
    back = compare.compare_runs(fast, base, 0.10)
    assert back.regressed and {d.name for d in back.regressions} == {d.name for d in cmp.improvements}


def test_interval_verdict_at_the_threshold_boundary() -> None:
    """2000 identical samples: the intervals are the exact value, so "past the threshold"
    is exact: 40 -> 44 is +10% (not past 10%), 40 -> 45 is past it."""
    base = one_phase("b", {"a": [40] * 2000})
    assert not compare.compare_runs(base, one_phase("n", {"a": [44] * 2000}), 0.10).regressed
    past = compare.compare_runs(base, one_phase("n", {"a": [45] * 2000}), 0.10)
    assert past.regressed and {d.name for d in past.regressions} == {"p/a p50", "p/a p99"}
    assert all(d.base_range == (40, 40) and d.new_range == (45, 45) for d in past.deltas)


def test_zero_base_is_estimable_and_a_change_from_zero_regresses() -> None:
    """A percentile that really is 0 ns has plenty of samples around it: it gates."""
    base = one_phase("b", {"a": [0] * 2000})
    same = compare.compare_runs(base, one_phase("n", {"a": [0] * 2000}), 0.10)
    assert not same.regressed and all(d.gated and d.change == 0 for d in same.deltas)
    up = compare.compare_runs(base, one_phase("n", {"a": [5] * 2000}), 0.10)
    assert up.regressed and all(d.gated and d.note == "" for d in up.deltas)


def test_few_sample_percentiles_are_shown_and_never_gate() -> None:
    """The 1-sample `verify_fetch`: 1000x slower, and still only marked, never gating;
    the same for p99 of 200 samples (2 beyond it)."""
    base = one_phase("b", {"get": [50_000] * 2000, "verify_fetch": [1_000_000], "batch": [2_000_000] * 200})
    new = one_phase("n", {"get": [50_000] * 2000, "verify_fetch": [1_000_000_000], "batch": [6_000_000] * 200})
    cmp = compare.compare_runs(base, new, 0.10)
    by = {d.name: d for d in cmp.deltas}
    for name in ("p/verify_fetch p50", "p/verify_fetch p99", "p/batch p99"):
        d = by[name]
        assert not d.gated and not d.regressed and d.change > 1.0
        assert d.note.startswith("few samples:")
    assert by["p/verify_fetch p50"].note == "few samples: 0 beyond 50%"
    assert by["p/batch p99"].note == "few samples: 2 beyond 99%"
    assert by["p/batch p50"].gated and by["p/batch p50"].regressed  # 100 beyond p50: it gates
    assert by["p/get p50"].gated and not by["p/get p50"].regressed
    assert {d.name for d in cmp.regressions} == {"p/batch p50"}
    text = render_text(cmp)
    assert "few samples" in text and "3 with too few samples to gate" in text


# -- several runs a side: the rank test -------------------------------------------------------


def test_several_runs_a_side_use_the_rank_test_and_report_p_values() -> None:
    base, new = repeated(range(1, 6)), repeated(range(11, 16))
    assert len(base.runs) == len(new.runs) == 5
    same = compare.compare_runs(base, new, 0.10)
    assert (same.base_runs, same.new_runs) == (5, 5) and not same.warnings
    assert all(d.method == compare.RANK and d.p_value is not None for d in same.deltas)
    assert not same.regressed and not same.improvements
    assert "Mann-Whitney" in same.method

    slow = slowed(new, 3.0)
    cmp = compare.compare_runs(base, slow, 0.10)
    gated = {d.name for d in cmp.deltas if d.gated}
    assert (
        {d.name for d in cmp.regressions}
        == gated
        == {
            "create/create_one p50",
            "create/create_one p99",
            "create/create_batch p50",
            "live/lag.commit_to_notify p50",
            "live/connector.changes p50",
        }
    )
    for d in cmp.regressions:
        assert d.method == compare.RANK and d.p_value == pytest.approx(1 / 252)  # complete separation
        metric, stat = d.name.rsplit(" ", 1)
        b_figs = [r.metrics[metric][stat] for r in base.runs]
        n_figs = [r.metrics[metric][stat] for r in slow.runs]
        assert d.base_range == (min(b_figs), max(b_figs)) and d.new_range == (min(n_figs), max(n_figs))
        assert d.base_ns == pytest.approx(sorted(b_figs)[2]) and d.new_ns == pytest.approx(sorted(n_figs)[2])
    # An ungated metric (1 sample a run) is 3x slower with the same p-value and does not gate.
    sub = next(d for d in cmp.deltas if d.name == "live/subscribe p50")
    assert not sub.gated and not sub.regressed and sub.p_value == pytest.approx(1 / 252)
    assert "p=0.00397" in render_text(cmp)


def test_rank_test_a_shift_within_the_margin_does_not_regress() -> None:
    base, new = repeated(range(1, 6)), slowed(repeated(range(11, 16)), 1.05)
    assert not compare.compare_runs(base, new, 0.10).regressed
    strict = compare.compare_runs(base, new, 0.0)
    assert "create/create_one p50" in {d.name for d in strict.regressions}


def test_too_few_runs_for_the_rank_test_fall_back_to_intervals() -> None:
    base, new = repeated(range(1, 3)), slowed(repeated(range(11, 13)), 3.0)
    cmp = compare.compare_runs(base, new, 0.10)  # 2 v 2: the smallest p-value is 1/6 > 0.01
    assert all(d.method == compare.INTERVAL for d in cmp.deltas)
    assert any("cannot reach alpha 0.01" in w for w in cmp.warnings)
    assert cmp.regressed
    # At alpha 0.2 two runs a side can reach it: the rank test decides.
    loose = compare.compare_runs(base, new, 0.10, alpha=0.2)
    assert all(d.method == compare.RANK for d in loose.deltas) and loose.regressed
    # Five runs against one: the single side has no run-to-run figures to rank.
    mixed = compare.compare_runs(repeated(range(1, 6)), slowed(make_run(seed=20), 3.0), 0.10)
    assert all(d.method == compare.INTERVAL for d in mixed.deltas) and mixed.regressed
    assert any("one run on a side" in w for w in mixed.warnings)


# -- phases, missing metrics ------------------------------------------------------------------


def test_missing_metrics_are_listed_both_ways() -> None:
    base = one_phase("b", {"a": [1000] * 50, "gone": [1000] * 50})
    new = one_phase("n", {"a": [1000] * 50, "added": [1000] * 50})
    cmp = compare.compare_runs(base, new, 0.1)
    assert cmp.missing_in_new == ["p/gone"]
    assert cmp.missing_in_base == ["p/added"]
    assert not cmp.regressed
    text = render_text(cmp)
    assert "missing in base: p/added" in text and "missing in new: p/gone" in text


def test_phase_that_breaks_is_a_regression() -> None:
    base = make_run(seed=1)
    new = make_run(seed=1)
    new.phases[0].status = "failed"
    new.phases[0].reason = "check 'every write landed' failed"
    cmp = compare.compare_runs(base, new, 0.1)
    assert not cmp.regressions  # no figure changed ...
    assert cmp.regressed and cmp.status_changes == ["create: ok -> failed (check 'every write landed' failed)"]
    assert "phase broke: create" in render_text(cmp)
    # A phase that was already broken in base is not a new regression.
    assert not compare.compare_runs(new, new, 0.1).regressed


# -- comparability ----------------------------------------------------------------------------


def test_check_comparable_refuses_different_configs_and_hosts_unless_allowed() -> None:
    base = make_run(seed=1)
    assert compare.check_comparable(base, make_run(seed=1)) == []

    other = make_run(seed=1, label="postgres-pool")
    with pytest.raises(compare.NotComparable, match=r"differ in config \('leveldb-local' vs 'postgres-pool'\)"):
        compare.check_comparable(base, other)
    with pytest.raises(compare.NotComparable, match=r"differ in seed \(1 vs 2\)"):
        compare.check_comparable(base, make_run(seed=2))
    warned = compare.check_comparable(base, other, allow_mismatch=True)
    assert len(warned) == 1 and "config" in warned[0]

    moved = make_run(seed=1)
    moved.metadata.host = {**moved.metadata.host, "cpu_model": "Some Other CPU"}
    with pytest.raises(compare.NotComparable, match=r"different hosts \(cpu_model: .*--allow-host-change"):
        compare.check_comparable(base, moved)
    with pytest.raises(compare.NotComparable):  # allowing a config mismatch does not allow a host change
        compare.check_comparable(base, moved, allow_mismatch=True)
    warned = compare.check_comparable(base, moved, allow_host_change=True)
    assert len(warned) == 1 and "cpu_model" in warned[0]


# -- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,value", [("10%", 0.10), (" 5% ", 0.05), ("0.1", 0.1), ("0%", 0.0), (0.2, 0.2), ("2.5%", 0.025), ("150%", 1.5)]
)
def test_parse_threshold(text: str, value: float) -> None:
    assert compare.parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["10", "abc", "-5%", "nan%", ""])
def test_parse_threshold_refuses_bad_input(text: str) -> None:
    with pytest.raises(ValueError, match="threshold"):
        compare.parse_threshold(text)


@pytest.mark.parametrize("text,value", [("0.01", 0.01), ("0.5", 0.5), (0.05, 0.05)])
def test_parse_alpha(text: str, value: float) -> None:
    assert compare.parse_alpha(text) == value


@pytest.mark.parametrize("text", ["0", "0.6", "-0.01", "nan", "1%", "x"])
def test_parse_alpha_refuses_bad_input(text: str) -> None:
    with pytest.raises(ValueError, match="significance level"):
        compare.parse_alpha(text)


def test_compare_runs_refuses_bad_threshold_or_alpha() -> None:
    run = make_run(seed=1)
    with pytest.raises(ValueError, match="threshold"):
        compare.compare_runs(run, run, -0.1)
    with pytest.raises(ValueError, match="alpha"):
        compare.compare_runs(run, run, 0.1, alpha=0.0)
