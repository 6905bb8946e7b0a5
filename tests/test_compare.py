"""Run comparison: regression flag semantics in both directions, missing metrics, thresholds."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from rich.console import Console

from sprout_harness.metrics import PhaseRecorder, RunMetadata, RunResult, load_run
from sprout_harness.reports import compare, json_report

sys.path.insert(0, str(Path(__file__).parent))
from test_reports import make_run  # noqa: E402  (shared builder of realistic runs)


def render_text(cmp: compare.Comparison) -> str:
    buf = io.StringIO()
    compare.render(cmp, Console(file=buf, width=200, color_system=None))
    return buf.getvalue()


def test_same_data_does_not_regress() -> None:
    cmp = compare.compare_runs(make_run(seed=1), make_run(seed=1), 0.10)
    assert not cmp.regressed
    assert cmp.deltas and all(d.change == 0 for d in cmp.deltas)
    assert not cmp.missing_in_base and not cmp.missing_in_new
    assert "no regression beyond +10%" in render_text(cmp)


def test_slower_run_regresses_past_threshold(tmp_path: Path) -> None:
    base, new = make_run(seed=1), make_run(seed=1, scale=1.5)  # every figure 50% slower
    # Through the JSON files, the way `sprout compare` reads them.
    b = load_run(json_report.write(base, tmp_path / "base.json"))
    n = load_run(json_report.write(new, tmp_path / "new.json"))
    cmp = compare.compare_runs(b, n, compare.parse_threshold("10%"))
    assert cmp.regressed
    names = {d.name for d in cmp.regressions}
    assert {"create/create_one p50", "create/create_one p99", "live/lag.commit_to_notify p99",
            "live/connector.changes p50"} <= names
    for d in cmp.regressions:
        assert d.new_ns > d.base_ns * 1.10
    text = render_text(cmp)
    assert "REGRESSED" in text and "regressed:" in text
    # Same change, generous threshold: not a regression.
    assert not compare.compare_runs(b, n, compare.parse_threshold("60%")).regressed


def test_faster_run_is_improvement_not_regression() -> None:
    base, new = make_run(seed=1), make_run(seed=1, scale=0.5)
    cmp = compare.compare_runs(base, new, 0.10)
    assert not cmp.regressed
    assert len(cmp.improvements) == len(cmp.deltas) > 0
    # Reversed direction: the old figures are now "new" and 2x slower.
    assert compare.compare_runs(new, base, 0.10).regressed


def test_change_within_threshold_is_not_a_regression() -> None:
    base, new = make_run(seed=1), make_run(seed=1, scale=1.05)
    assert not compare.compare_runs(base, new, 0.10).regressed
    assert compare.compare_runs(base, new, 0.01).regressed


def _one_phase_run(run_id: str, **ops: int) -> RunResult:
    rec = PhaseRecorder("p")
    rec.start()
    for op, v in ops.items():
        rec.record(op, v)
    rec.stop()
    return RunResult(RunMetadata(run_id=run_id), [rec.result()])


def test_missing_metrics_are_listed_both_ways() -> None:
    base = _one_phase_run("b", a=1000, gone=1000)
    new = _one_phase_run("n", a=1000, added=1000)
    cmp = compare.compare_runs(base, new, 0.1)
    assert cmp.missing_in_new == ["p/gone"]
    assert cmp.missing_in_base == ["p/added"]
    assert not cmp.regressed
    text = render_text(cmp)
    assert "missing in base: p/added" in text and "missing in new: p/gone" in text


def test_zero_base_and_boundary() -> None:
    base = _one_phase_run("b", a=0)
    assert compare.compare_runs(base, _one_phase_run("n", a=0), 0.1).regressed is False
    assert compare.compare_runs(base, _one_phase_run("n", a=5), 0.1).regressed is True
    # Exactly at the threshold is not past it: limit 40 * 1.1 = 44 (small values are recorded exactly).
    b = _one_phase_run("b", a=40)
    assert compare.compare_runs(b, _one_phase_run("n", a=44), 0.1).regressed is False
    assert compare.compare_runs(b, _one_phase_run("n", a=45), 0.1).regressed is True


def test_phase_that_breaks_is_a_regression() -> None:
    base = make_run(seed=1)
    new = make_run(seed=1)
    new.phases[0].status = "failed"
    new.phases[0].reason = "check 'every write landed' failed"
    cmp = compare.compare_runs(base, new, 0.1)
    assert cmp.regressed and cmp.status_changes == ["create: ok -> failed (check 'every write landed' failed)"]
    assert "phase broke: create" in render_text(cmp)


@pytest.mark.parametrize("text,value", [("10%", 0.10), (" 5% ", 0.05), ("0.1", 0.1), ("0%", 0.0), (0.2, 0.2),
                                        ("2.5%", 0.025), ("150%", 1.5)])
def test_parse_threshold(text: str, value: float) -> None:
    assert compare.parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["10", "abc", "-5%", "nan%", ""])
def test_parse_threshold_refuses_bad_input(text: str) -> None:
    with pytest.raises(ValueError, match="threshold"):
        compare.parse_threshold(text)
