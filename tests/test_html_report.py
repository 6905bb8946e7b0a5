"""HTML report and comparison pages written from real runs of the loam stack (LevelDB)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from sprout_harness.metrics import ErrorStat, RunResult
from sprout_harness.reports import json_report
from sprout_harness.reports.compare import compare_runs
from sprout_harness.reports.figures import percentile_curve
from sprout_harness.reports.html import write_compare_html, write_html
from sprout_harness.topology.runner import run_sync
from support.monitor import PHASES, REPO, SPROUT, parse, slower, tiny_config


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> tuple[RunResult, Path]:
    out = tmp_path_factory.mktemp("runs") / "base.json"
    # writers runs 2.3 s: a phase over several seconds gets a timeline chart of its own
    result = run_sync(tiny_config(extra=["phases.3.params.duration_s=2.3"]), json_path=out)
    assert result.status == "ok", result.reason
    return result, out


def test_run_report_is_self_contained_and_holds_the_data(base_run, tmp_path):
    run, _ = base_run
    path = write_html(run, tmp_path / "report.html")
    page, data, text = parse(path)

    assert page.refs == [], f"the report must not load anything: {page.refs}"
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)\s*=\s*[\"']?(https?:)?//", text, re.I)
    assert len(text) > 1_000_000 and "Plotly" in text  # plotly.js itself is inlined

    assert data["kind"] == "sprout-run-report"
    assert RunResult.from_dict(data["run"]).to_dict() == run.to_dict()
    # Summary table: one row per phase metric, with the run's counts and percentiles.
    rows = {(r["phase"], r["metric"]): r for r in data["summary"]}
    for phase in run.phases:
        for op, h in phase.latencies.items():
            r = rows[(phase.name, op)]
            assert r["count"] == h.count and r["p99"] == pytest.approx(h.percentile(99.0))
            # ops/s as the console states it: on a phase's only op, else on "(all ops)"
            if len(phase.latencies) == 1:
                assert r["ops_per_s"] == pytest.approx(phase.throughput[op])
            else:
                assert r["ops_per_s"] is None
                assert rows[(phase.name, "(all ops)")]["ops_per_s"] == pytest.approx(phase.ops / (phase.wall_ns / 1e9))
        assert f"dist-latency-{run.phases.index(phase)}" in data["figures"]
    # Percentile curves come from the histograms.
    i = PHASES.index("writers@durable")
    fig = data["figures"][f"dist-latency-{i}"]
    trace = next(t for t in fig["data"] if t["name"].startswith("update "))
    h = run.phase("writers@durable").latencies["update"]
    assert trace["y"] == percentile_curve(h)["ms"]
    assert trace["y"][0] == pytest.approx(h.min / 1e6) and max(trace["y"]) <= h.max / 1e6
    # Timelines: each phase of two or more per-second buckets on its own time axis; the
    # others are named in the note instead of drawn as one bar.
    for i, phase in enumerate(run.phases):
        assert (f"timeline-{i}" in data["figures"]) == (len(phase.timeline) >= 2), (phase.name, len(phase.timeline))
    writers = run.phase("writers@durable")
    assert len(writers.timeline) >= 3, writers.timeline
    tl = data["figures"][f"timeline-{PHASES.index('writers@durable')}"]
    bars = next(t for t in tl["data"] if t["type"] == "bar")
    assert len(bars["y"]) == len(writers.timeline)
    assert sum(y * w for y, w in zip(bars["y"], bars["width"])) == pytest.approx(
        sum(p.ops for p in writers.timeline), rel=1e-3
    )
    assert tl["layout"]["xaxis"]["range"] == [0, pytest.approx(writers.wall_ns / 1e9)]
    short = [p.name for p in run.phases if len(p.timeline) == 1]
    assert short and "ran within one second: " + ", ".join(short) in text
    # Lag per phase: one category per phase that has lags, p50 and p99 of each.
    lag_fig = data["figures"]["lag-by-phase"]
    assert {t["name"] for t in lag_fig["data"]} >= {f"lag.{n} p99" for n in run.phase("live-limit@durable").lags}
    notify_p99 = next(t for t in lag_fig["data"] if t["name"] == "lag.notify p99")
    h = run.phase("churn@durable").lags["notify"]
    assert dict(zip(notify_p99["x"], notify_p99["y"]))["churn@durable"] == pytest.approx(
        h.percentile(99.0) / 1e6, rel=1e-4
    )
    assert f"dist-lag-{PHASES.index('live-limit@durable')}" in data["figures"]
    # Every figure has an element to be drawn in; the metadata and error sections are there.
    assert set(data["figures"]) <= page.ids
    assert {"summary", "run-status"} <= page.ids and ("errors" in page.ids or "errors-none" in page.ids)
    assert run.metadata.run_id in text and "leveldb" in text


def test_error_breakdown_and_escaping(base_run, tmp_path):
    run, _ = base_run
    run = RunResult.from_dict(run.to_dict())
    run.metadata.config_name = "</script><script>alert(1)</script>"
    run.phase("fetch@durable").errors["Timeout"] = ErrorStat(count=3, samples=["get: timed out <after 5 s>"])
    path = write_html(run, tmp_path / "errors.html")
    page, data, text = parse(path)
    assert "<script>alert(1)" not in text
    assert data["run"]["metadata"]["config_name"] == "</script><script>alert(1)</script>"
    assert "errors" in page.ids and "errors-chart" in data["figures"]
    bars = data["figures"]["errors-chart"]["data"][0]
    assert dict(zip(bars["y"], bars["x"]))["fetch@durable: Timeout"] == 3
    assert "get: timed out &lt;after 5 s&gt;" in text


def test_config_stack_and_phase_names_are_escaped_on_both_pages(base_run, tmp_path):
    evil = "<script>alert(1)</script>"
    run = RunResult.from_dict(base_run[0].to_dict())
    run.metadata.config_name, run.metadata.stack = "cfg" + evil, "stack" + evil
    run.phases[0].name = "phase" + evil
    run.phases[0].reason = "why" + evil
    new = slower(run, "fetch@durable", "get", 3)
    pages = [
        write_html(run, tmp_path / "run.html"),
        write_compare_html(compare_runs(run, new, 0.10), run, new, tmp_path / "cmp.html"),
    ]
    for path in pages:
        page, data, text = parse(path)
        assert "<script>alert" not in text and page.inline_scripts == 2, path.name  # plotly.js and the renderer
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text, path.name
    _, data, text = parse(pages[0])
    assert data["summary"][0]["phase"] == "phase" + evil  # the data block keeps the text as it is
    assert "phase&lt;script&gt;" in text and "cfg&lt;script&gt;" in text and "stack&lt;script&gt;" in text


def test_compare_page_highlights_regressions_with_the_console_rule(base_run, tmp_path):
    base, _ = base_run
    new = slower(base, "fetch@durable", "get", 3)
    comparison = compare_runs(base, new, 0.10)
    path = write_compare_html(comparison, base, new, tmp_path / "diff.html")
    page, data, text = parse(path)

    assert page.refs == []
    assert data["kind"] == "sprout-compare" and data["regressed"] is True and data["threshold"] == 0.10
    regressed = {d["name"] for d in data["deltas"] if d["regressed"]}
    # One run a side: p50 of the 200 gets regressed; their p99 has 2 samples beyond it and cannot gate.
    assert regressed == {d.name for d in comparison.regressions} == {"fetch@durable/get p50"}
    ungated = {d["name"] for d in data["deltas"] if not d["gated"]}
    assert ungated == {d.name for d in comparison.deltas if not d.gated} and "fetch@durable/get p99" in ungated
    assert (
        data["status_changes"] == comparison.status_changes
        and "churn@durable: ok -> failed" in data["status_changes"][0]
    )
    # Table rows carry the verdict as a class; unchanged metrics are "same", few-sample ones "ungated".
    by_metric = {r["data-metric"]: r["class"] for r in page.rows if "data-metric" in r}
    assert by_metric["fetch@durable/get p50"] == "regressed" and by_metric["fetch@durable/get p99"] == "ungated"
    assert {m for m, c in by_metric.items() if c == "ungated"} == ungated
    assert {c for m, c in by_metric.items() if m not in regressed | ungated} == {"same"}
    assert "verdict" in page.ids and "REGRESSED" in text and "status-changes" in page.ids
    # Side-by-side charts: base and new bars for every compared metric, regressed ones in red.
    p99 = data["figures"]["cmp-p99"]["data"]
    names = p99[1]["y"]
    assert p99[0]["y"] == names and len(names) == len([d for d in comparison.deltas if d.name.endswith(" p99")])
    k = names.index("fetch@durable/get")
    assert p99[1]["marker"]["color"][k] == "#2e86c1"  # 3x, but too few samples to call it regressed
    assert p99[1]["x"][k] == pytest.approx(3 * p99[0]["x"][k], rel=0.03)
    p50 = data["figures"]["cmp-p50"]["data"]
    k = p50[1]["y"].index("fetch@durable/get")
    assert p50[1]["marker"]["color"][k] == "#c0392b"
    assert p50[1]["x"][k] == pytest.approx(3 * p50[0]["x"][k], rel=0.03)
    first_curve = data["figures"]["cmp-curve-0"]
    assert first_curve["layout"]["title"]["text"] == "REGRESSED: fetch@durable/get"
    assert set(data["figures"]) <= page.ids

    # The same runs with a looser threshold: nothing regressed beyond it except the broken phase.
    loose = compare_runs(base, new, 3.5)
    page2, data2, _ = parse(write_compare_html(loose, base, new, tmp_path / "loose.html"))
    assert not any(d["regressed"] for d in data2["deltas"]) and data2["regressed"] is True  # churn broke


def test_cli_report_and_compare_write_html(base_run, tmp_path):
    base, base_json = base_run
    new_json = json_report.write(slower(base, "fetch@durable", "get", 3), tmp_path / "new.json")
    report = tmp_path / "out" / "report.html"
    done = subprocess.run(
        [*SPROUT, "report", str(base_json), "--html", str(report)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "writers@durable" in done.stdout and f"html report: {report}" in done.stderr
    _, data, _ = parse(report)
    assert data["run"]["metadata"]["run_id"] == base.metadata.run_id

    diff = tmp_path / "diff.html"
    done = subprocess.run(
        [*SPROUT, "compare", str(base_json), str(new_json), "--html", str(diff)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr  # regressed
    _, data, _ = parse(diff)
    assert data["regressed"] and {d["name"] for d in data["deltas"] if d["regressed"]} == {"fetch@durable/get p50"}

    done = subprocess.run(
        [*SPROUT, "report", str(tmp_path / "missing.json"), "--html", str(tmp_path / "x.html")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "does not exist" in done.stderr and not (tmp_path / "x.html").exists()
