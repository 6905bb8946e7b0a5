"""Helpers shared by the scenario tests: render one run in every report format, assert a
run passed every check, and that a phase's figures reach every report."""

from __future__ import annotations

import html
import importlib.util
import io
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from sprout_harness.metrics.results import RunResult
from sprout_harness.reports import console, gab, json_report

ROOT = Path(__file__).resolve().parents[2]


def all_reports(result: RunResult, tmp_path: Path) -> dict[str, Any]:
    """{"console": text, "json": dict, "gab": [entries] (as written), "html": text or None}."""
    buf = io.StringIO()
    console.render(result, Console(file=buf, width=300, color_system=None), verbose=True)
    out: dict[str, Any] = {"console": buf.getvalue(), "label": result.metadata.label}
    out["json"] = json.loads(json_report.write(result, tmp_path / "report.json").read_text())
    out["gab"] = json.loads(gab.write(result, tmp_path / "gab.json").read_text())
    out["html"] = None
    if importlib.util.find_spec("sprout_harness.reports.html") is not None:
        from sprout_harness.reports.html import write_html

        out["html"] = write_html(result, tmp_path / "report.html").read_text()
    return out


def assert_ok(result: RunResult) -> None:
    assert result.status == "ok", (result.reason, [(p.name, p.status, p.reason) for p in result.phases])
    for p in result.phases:
        assert p.checks and all(c.ok for c in p.checks), (p.name, [c for c in p.checks if not c.ok])


def assert_phase_figures(reports: dict[str, Any], phase: str, ops: list[str], counters: list[str]) -> None:
    """Every op's latency and every counter of `phase` appears in every report format."""
    text, data, entries, page = reports["console"], reports["json"], reports["gab"], reports["html"]
    pd = next(p for p in data["phases"] if p["name"] == phase)
    label = reports["label"]
    names = {e["name"] for e in entries}
    for op in ops:
        assert pd["latencies"][op]["summary"]["count"] > 0, (phase, op)
        assert op in text, (phase, op)
        assert f"{label}/{phase}/{op} p50" in names and f"{label}/{phase}/{op} p99" in names, (
            phase,
            op,
            sorted(names)[:8],
        )
        if page is not None:
            assert op in page, (phase, op)
    for c in counters:
        assert c in pd["counters"], (phase, c)
        assert f"{c}=" in text, (phase, c)
        if page is not None:
            assert f"{c}=" in page, (phase, c)
    for c in pd["checks"]:
        assert c["name"] in text
        if page is not None:
            assert c["name"].split(":")[0] in html.unescape(page)


def assert_lag_in_every_report(result: RunResult, tmp_path: Path, phase: str, lag: str, counter: str) -> None:
    """The phase's lag `lag` and counter `counter` appear in the console, JSON, gab and HTML reports."""
    reports = all_reports(result, tmp_path)
    pd = next(p for p in reports["json"]["phases"] if p["name"] == phase)
    assert pd["lags"][lag]["summary"]["count"] > 0 and counter in pd["counters"], (phase, lag, counter)
    names = [e["name"] for e in reports["gab"]]
    assert any(f"/{phase}/lag.{lag} p99" in n for n in names), names[:10]
    assert f"lag.{lag}" in reports["console"] and counter in reports["console"]
    if reports["html"] is not None:
        assert counter in reports["html"] and phase in reports["html"]
