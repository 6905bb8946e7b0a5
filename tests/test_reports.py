"""Console table, JSON report round trip, github-action-benchmark file, progress bar."""

from __future__ import annotations

import io
import json
import math
import os
import re
import time
from pathlib import Path

import pytest
from rich.console import Console

from sprout_harness.metrics import (
    PhaseRecorder,
    RunMetadata,
    RunResult,
    load_run,
    overall_status,
)
from sprout_harness.reports import console as console_report
from sprout_harness.reports import gab, json_report
from sprout_harness.reports.console import PhaseProgress, format_ms, format_rate
from support.runs import make_run


def _raise_on_constant(name: str) -> None:
    raise ValueError(f"non-finite constant {name} in JSON")


def render_text(run: RunResult, verbose: bool = False) -> str:
    buf = io.StringIO()
    console_report.render(run, Console(file=buf, width=220, color_system=None), verbose=verbose)
    return buf.getvalue()


def test_console_shows_the_figures_statuses_and_checks() -> None:
    run = make_run()
    out = render_text(run, verbose=True)
    create = run.phase("create")
    h = create.latencies["create_one"]
    row = next(line for line in out.splitlines() if "create_one" in line)
    for q in (50, 90, 95, 99, 99.9):
        assert format_ms(h.percentile(q)) in row
    assert format_ms(h.max) in row
    assert f"{h.count:,}" in row
    # two ops in the phase: their share of its wall time is unknown, so the rate is stated
    # once, for all of them, on the "(all ops)" row
    assert row.split("│")[3].strip() == "-"
    all_ops = next(line for line in out.splitlines() if "(all ops)" in line)
    assert f"{create.ops / (create.wall_ns / 1e9):,.0f}" in all_ops
    commit_row = next(line for line in out.splitlines() if "subscribe" in line)  # the live phase's only op
    assert format_rate(run.phase("live").throughput["subscribe"]) in commit_row
    lag = run.phase("live").lags["commit_to_notify"]
    lag_row = next(line for line in out.splitlines() if "lag.commit_to_notify" in line)
    assert format_ms(lag.percentile(50)) in lag_row and format_ms(lag.percentile(99)) in lag_row
    assert "connector.changes" in out
    assert "(all ops)" in out
    assert "PASS every write landed: 22001 of 22001" in out
    assert "error StackError: 1" in out and "transient: connection reset" in out  # verbose shows samples
    assert "unsupported" in out and "stack has no text index" in out
    assert "entities_created=22,001" in out
    assert "run status: ok" in out
    assert "config leveldb-local" in out


def test_console_table_is_whole_in_a_log_of_80_columns() -> None:
    """Not a terminal (a CI log, a pipe): the table takes the width it needs rather than
    cutting the figures to "0.0…"; on a terminal rich fits it to the window as usual."""
    run = make_run()
    buf = io.StringIO()
    console = Console(file=buf, width=80, color_system=None)
    console_report.render(run, console)
    out = buf.getvalue()
    assert console.width == 80  # restored
    h = run.phase("create").latencies["create_one"]
    row = next(line for line in out.splitlines() if "create_one" in line)
    assert "…" not in row and format_ms(h.percentile(99.9)) in row and format_ms(h.max) in row
    assert "p99.9" in out
    tty = io.StringIO()
    console_report.render(run, Console(file=tty, width=80, color_system=None, force_terminal=True))
    text = tty.getvalue()
    assert max(len(line) for line in text.splitlines() if "┃" in line or "│" in line) <= 80
    # a terminal of 80 columns gives up percentile columns, never cuts a figure
    assert "…" not in text and "p90" not in text and "p99.9" in text
    row = next(line for line in text.splitlines() if "create_one" in line)
    for q in (50, 99):
        assert format_ms(h.percentile(q)) in row
    assert format_ms(h.max) in row and f"{h.count:,}" in row
    wide = io.StringIO()
    console_report.render(run, Console(file=wide, width=120, color_system=None, force_terminal=True))
    assert "p99.9" in wide.getvalue() and "p90" in wide.getvalue()  # room for all of them
    cmp_buf = io.StringIO()
    from sprout_harness.reports import compare as cmp_report

    cmp_report.render(cmp_report.compare_runs(run, run, 0.1), Console(file=cmp_buf, width=40, color_system=None))
    assert "…" not in cmp_buf.getvalue()


def test_console_shows_failed_run() -> None:
    rec = PhaseRecorder("create")
    rec.start()
    rec.record("create_one", 1_000)
    rec.check("every write landed", False, "998 of 1000")
    phases = [rec.result()]
    status, reason = overall_status(phases)
    out = render_text(RunResult(RunMetadata(run_id="r"), phases, status, reason))
    assert "FAIL every write landed: 998 of 1000" in out
    assert "run status: failed" in out


def test_format_ms() -> None:
    assert format_ms(114_000) == "0.114"
    assert format_ms(1_234_567) == "1.23"
    assert format_ms(12_345_678) == "12.3"
    assert format_ms(1_234_567_890) == "1,235"
    assert format_ms(12_345) == "0.0123"
    assert format_ms(math.nan) == "-"


def test_json_report_round_trips_through_load_run(tmp_path: Path) -> None:
    run = make_run()
    path = json_report.write(run, tmp_path / "out" / "report.json")
    data = json.loads(path.read_text(), parse_constant=_raise_on_constant)
    assert data["schema_version"] == 2
    s = data["phases"][0]["latencies"]["create_one"]["summary"]
    assert set(s) == {"count", "min", "mean", "p50", "p90", "p95", "p99", "p999", "max"}
    assert s["count"] == run.phase("create").latencies["create_one"].count
    back = load_run(path)
    assert back == run
    assert json_report.to_json_bytes(back) == json_report.to_json_bytes(run)
    assert not list((tmp_path / "out").glob(".*"))  # no temp file left behind


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_every_report_file_gets_the_mode_open_would_give(tmp_path: Path, umask: int) -> None:
    from sprout_harness.reports import html

    run = make_run()
    old = os.umask(umask)
    try:
        written = [
            json_report.write(run, tmp_path / "r.json"),
            gab.write(run, tmp_path / "g.json"),
            html.write_html(run, tmp_path / "r.html"),
        ]
        (tmp_path / "plain").write_text("x")
    finally:
        os.umask(old)
    want = (tmp_path / "plain").stat().st_mode & 0o777
    assert want == 0o666 & ~umask
    assert {p.name: p.stat().st_mode & 0o777 for p in written} == {p.name: want for p in written}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.json", "plain", "r.html", "r.json"]


def test_json_report_has_no_nan_for_empty_histograms(tmp_path: Path) -> None:
    rec = PhaseRecorder("empty")
    rec.latency("never")
    run = RunResult(RunMetadata(run_id="r", config={"path": Path("/tmp/x"), "tags": {"b", "a"}}), [rec.result()])
    raw = json_report.to_json_bytes(run).decode()
    data = json.loads(raw, parse_constant=_raise_on_constant)
    assert data["phases"][0]["latencies"]["never"]["summary"]["p50"] is None
    assert data["metadata"]["config"] == {"path": "/tmp/x", "tags": ["a", "b"]}


def test_load_run_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run(tmp_path / "nope.json")
    gab_file = gab.write(make_run(), tmp_path / "gab.json")
    with pytest.raises(ValueError, match="github-action-benchmark"):
        load_run(gab_file)
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"schema_version": 99, "metadata": {"run_id": "x"}}))
    with pytest.raises(ValueError, match="schema_version 99"):
        load_run(old)


def test_gab_file_is_valid_custom_smaller_is_better(tmp_path: Path) -> None:
    run = make_run()
    path = gab.write(run, tmp_path / "gab.json")
    data = json.loads(path.read_text(), parse_constant=_raise_on_constant)
    assert isinstance(data, list) and data
    names = [e["name"] for e in data]
    assert len(names) == len(set(names))
    for e in data:
        assert set(e) <= {"name", "unit", "value", "range", "extra"}
        assert e["unit"] in gab.ALLOWED_UNITS
        assert isinstance(e["value"], (int, float)) and not isinstance(e["value"], bool)
        assert math.isfinite(e["value"]) and e["value"] >= 0
        assert isinstance(e.get("extra", ""), str)
    by_name = {e["name"]: e for e in data}
    h = run.phase("create").latencies["create_one"]
    assert by_name["leveldb-local/create/create_one p50"]["value"] == pytest.approx(h.percentile(50) / 1e6, abs=1e-6)
    assert by_name["leveldb-local/create/create_one p99"]["value"] == pytest.approx(h.percentile(99) / 1e6, abs=1e-6)
    assert "leveldb-local/live/lag.commit_to_notify p99" in by_name
    assert "leveldb-local/live/connector.changes p50" in by_name
    assert "leveldb-local/create wall" in by_name
    assert "durable=1" in by_name["leveldb-local/create/create_one p50"]["extra"]
    assert not any("/fulltext" in n for n in names)  # unsupported phase: no entries


def test_gab_skips_empty_and_non_ok_phases_and_dedupes_names() -> None:
    a = PhaseRecorder("create")
    a.start()
    a.latency("empty_op")
    a.record("op", 1000)
    a.stop()
    b = PhaseRecorder("create")  # same phase name twice (a repeated phase)
    b.start()
    b.record("op", 2000)
    b.stop()
    bad = PhaseRecorder("broken")
    bad.start()
    bad.record("op", 5)
    bad.check("landed", False)
    run = RunResult(RunMetadata(run_id="r", stack="loam"), [a.result(), b.result(), bad.result()])
    names = [e["name"] for e in gab.entries(run)]
    assert "loam/create/op p50" in names and "loam/create/op p50 #2" in names
    assert not any("empty_op" in n or "broken" in n for n in names)
    assert len(names) == len(set(names))


def test_phase_progress_draws_and_quiet_is_silent() -> None:
    buf = io.StringIO()
    con = Console(file=buf, width=120, force_terminal=True)
    with PhaseProgress(con, "create", total=10) as p:
        p.advance(4)
        p.advance(6)
    assert p.completed == 10
    quiet_buf = io.StringIO()
    with PhaseProgress(Console(file=quiet_buf), "create", quiet=True) as q:
        q.advance(3)
        q.set_total(5)
    assert q.completed == 3 and quiet_buf.getvalue() == ""
    with PhaseProgress(con, "unknown total") as u:
        u.advance(2)
    assert "create" in buf.getvalue()


def test_phase_progress_in_a_log_is_one_line_per_phase() -> None:
    """Not a terminal: no live bar (it leaves blank lines in a pipe), one line when done."""
    buf = io.StringIO()
    con = Console(file=buf, width=80)
    with PhaseProgress(con, "seed", total=300) as p:
        p.advance(100)
        p.advance(200)
    with PhaseProgress(con, "fetch@durable") as u:
        u.advance(7)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2 and all(line.strip() for line in lines)
    assert lines[0].startswith("seed: 300/300 in ") and lines[1].startswith("fetch@durable: 7 in ")


def test_phase_progress_on_a_terminal_shows_the_time_left() -> None:
    buf = io.StringIO()
    con = Console(file=buf, width=120, force_terminal=True, color_system=None)
    with PhaseProgress(con, "seed", total=300) as p:
        p.advance(100)
        time.sleep(0.05)  # two samples apart in time: rich estimates a speed from them
        p.advance(50)
        assert p._progress is not None
        p._progress.refresh()  # draw now, not at the next tick
    last = buf.getvalue().split("150/300")[-1]
    assert re.match(r" \d+:\d\d:\d\d \d+:\d\d:\d\d", last), last[:40]  # elapsed, then time left
