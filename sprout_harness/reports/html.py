"""Self-contained HTML pages: one run's report and a two-run comparison, with plotly.js charts.

Each page is one file that needs no network: plotly.js (from the installed ``plotly`` package,
see ``reports.assets``) is inlined, and every figure's data sits in one
``<script type="application/json" id="sprout-data">`` block that a tiny script renders. The same
block is what tests (and curious people) read back.

Percentile curves put the percentile on a "nines" axis, ``x = -log10(1 - q/100)`` (50% -> 0.3,
90% -> 1, 99% -> 2, 99.9% -> 3), so the tail gets as much room as the median.
"""

from __future__ import annotations

import html
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable

from sprout_harness.metrics import stats
from sprout_harness.metrics.histogram import Histogram
from sprout_harness.metrics.results import PhaseResult, RunResult
from sprout_harness.reports.assets import plotly_js
from sprout_harness.reports.compare import Comparison, MetricDelta, evidence
from sprout_harness.reports.console import PERCENTILES, format_ms, format_rate
from sprout_harness.reports.files import write_atomic

DATA_ELEMENT_ID = "sprout-data"
_NINES_MAX = 4.0                  # the curves stop at 99.99%
_CURVE_POINTS = 41
_TICKS = [(0.0, "0%"), (math.log10(2), "50%"), (1.0, "90%"), (2.0, "99%"), (3.0, "99.9%"), (4.0, "99.99%")]
_MAX_COMPARE_CURVES = 30          # one small chart per common metric, capped to keep the page light
_STATUS_CLASS = {"ok": "ok", "failed": "bad", "error": "bad", "cancelled": "warn", "unsupported": "dim",
                 "completed": "ok"}


# -- figures (plain dicts in plotly's JSON schema) --------------------------------------------

def _finite_or_none(x: float | None) -> float | None:
    return x if x is not None and isinstance(x, (int, float)) and math.isfinite(x) else None


def _ms(ns: float | None) -> float | None:
    v = _finite_or_none(ns)
    return None if v is None else round(v / 1e6, 6)


def percentile_curve(h: Histogram) -> dict[str, list[float | None]]:
    """``{"nines", "percentile", "ms"}`` point lists of the latency-vs-percentile curve of ``h``."""
    xs = [i * _NINES_MAX / (_CURVE_POINTS - 1) for i in range(_CURVE_POINTS)]
    qs = [min(100.0, 100.0 * (1.0 - 10.0 ** (-x))) for x in xs]
    values = h.percentiles(qs) if h.count else [math.nan] * len(qs)
    return {"nines": [round(x, 4) for x in xs], "percentile": [round(q, 4) for q in qs],
            "ms": [_ms(v) for v in values]}


def _curve_trace(name: str, h: Histogram, **style: Any) -> dict[str, Any]:
    c = percentile_curve(h)
    return {
        "type": "scatter", "mode": "lines", "name": f"{name} (n={h.count:,})", "x": c["nines"], "y": c["ms"],
        "customdata": c["percentile"],
        "hovertemplate": "p%{customdata:.3f}: %{y:.4f} ms<extra>" + html.escape(name) + "</extra>",
        **style,
    }


def _curve_layout(title: str) -> dict[str, Any]:
    return {
        "title": {"text": title, "font": {"size": 14}},
        "xaxis": {"title": {"text": "percentile"}, "tickvals": [t for t, _ in _TICKS],
                  "ticktext": [l for _, l in _TICKS], "range": [0, _NINES_MAX]},
        "yaxis": {"title": {"text": "ms"}, "type": "log", "rangemode": "tozero"},
        "height": 340, "margin": {"l": 60, "r": 20, "t": 40, "b": 50}, "legend": {"orientation": "h", "y": -0.25},
    }


def _phase_offset_s(run: RunResult, phase: PhaseResult) -> float | None:
    if not phase.started_at or not run.metadata.started_at:
        return None
    return max(0.0, phase.started_at - run.metadata.started_at)


def _throughput_timeline(run: RunResult) -> dict[str, Any]:
    data: list[dict[str, Any]] = []
    for phase in run.phases:
        off = _phase_offset_s(run, phase)
        if off is None or not phase.timeline:
            continue
        wall_s = phase.wall_ns / 1e9
        # The last second of a phase is usually partial: its rate is ops over the part that ran.
        widths = [max(1e-3, min(1.0, wall_s - p.second)) if wall_s > p.second else 1.0 for p in phase.timeline]
        xs = [round(off + p.second + w / 2, 4) for p, w in zip(phase.timeline, widths)]
        data.append({"type": "bar", "name": f"{phase.name} ops/s", "x": xs, "width": widths,
                     "y": [round(p.ops / w, 1) for p, w in zip(phase.timeline, widths)],
                     "hovertemplate": "%{y:,} ops/s<extra>" + html.escape(phase.name) + "</extra>"})
        data.append({"type": "scatter", "mode": "lines+markers", "name": f"{phase.name} p99", "yaxis": "y2",
                     "x": xs, "y": [_ms(p.p99_ns) if p.ops else None for p in phase.timeline],
                     "line": {"dash": "dot"}})
    return {"data": data, "layout": {
        "title": {"text": "throughput (bars, ops/s) and p99 latency (dotted, ms) over the run", "font": {"size": 14}},
        "xaxis": {"title": {"text": "seconds since run start"}, "rangemode": "tozero"},
        "yaxis": {"title": {"text": "ops/s"}, "rangemode": "tozero"},
        "yaxis2": {"title": {"text": "p99 ms"}, "overlaying": "y", "side": "right", "rangemode": "tozero"},
        "barmode": "overlay", "height": 360, "margin": {"l": 60, "r": 60, "t": 40, "b": 50},
        "legend": {"orientation": "h", "y": -0.25}}}


def _lag_timeline(run: RunResult) -> dict[str, Any] | None:
    """Lag p50/p99 per phase, drawn over each phase's time span (reports keep lag per phase, not per second)."""
    series: dict[str, dict[str, list[Any]]] = {}
    for phase in run.phases:
        off = _phase_offset_s(run, phase)
        if off is None:
            continue
        end = off + phase.wall_ns / 1e9
        for name, h in phase.lags.items():
            if not h.count:
                continue
            p50, p99 = h.percentiles([50.0, 99.0])
            for stat, v in (("p50", p50), ("p99", p99)):
                s = series.setdefault(f"lag.{name} {stat}", {"x": [], "y": []})
                s["x"] += [round(off, 3), round(end, 3), None]
                s["y"] += [_ms(v), _ms(v), None]
    if not series:
        return None
    data = [{"type": "scatter", "mode": "lines", "name": k, "x": v["x"], "y": v["y"], "connectgaps": False,
             "line": {"width": 3, "dash": "solid" if k.endswith("p99") else "dot"}} for k, v in series.items()]
    return {"data": data, "layout": {
        "title": {"text": "subscription lag over the run (p50 dotted, p99 solid; one level per phase)",
                  "font": {"size": 14}},
        "xaxis": {"title": {"text": "seconds since run start"}}, "yaxis": {"title": {"text": "ms"}, "rangemode": "tozero"},
        "height": 320, "margin": {"l": 60, "r": 20, "t": 40, "b": 50}, "legend": {"orientation": "h", "y": -0.3}}}


def _errors_figure(run: RunResult) -> dict[str, Any] | None:
    rows = [(f"{p.name}: {cat}", e.count) for p in run.phases for cat, e in p.errors.items() if e.count]
    if not rows:
        return None
    return {"data": [{"type": "bar", "orientation": "h", "name": "errors", "y": [r[0] for r in rows],
                      "x": [r[1] for r in rows], "marker": {"color": "#c0392b"}}],
            "layout": {"title": {"text": "errors by phase and category", "font": {"size": 14}},
                       "xaxis": {"title": {"text": "count"}}, "height": 120 + 30 * len(rows),
                       "margin": {"l": 260, "r": 20, "t": 40, "b": 40}}}


def _latency_groups(phase: PhaseResult) -> Iterable[tuple[str, str, dict[str, Histogram]]]:
    yield "latency", "operation latency", phase.latencies
    yield "lag", "subscription lag (commit -> notification)", {f"lag.{k}": h for k, h in phase.lags.items()}
    yield "connector", "connector delay", {f"connector.{k}": h for k, h in phase.connector_delays.items()}


# -- HTML pieces ------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right;vertical-align:top}
th{background:#f4f4f4} td.l,th.l{text-align:left}
.ok{color:#1e8449;font-weight:600} .bad{color:#c0392b;font-weight:700} .warn{color:#b9770e;font-weight:600}
.dim{color:#888} tr.regressed td{background:#fdecea} tr.improved td{background:#eafaf1}
.verdict{font-size:16px;padding:8px 12px;border-radius:4px;display:inline-block;margin:8px 0}
.verdict.bad{background:#fdecea} .verdict.ok{background:#eafaf1}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:12px}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:24px}
.chart{min-height:300px;border:1px solid #eee} .meta td{text-align:left}
code,pre{font-size:12px} pre{white-space:pre-wrap;background:#f8f8f8;padding:6px;margin:2px 0}
.note{color:#666;font-size:12px}
"""

_RENDER_JS = """
(function () {
  var payload = JSON.parse(document.getElementById('%s').textContent);
  var ids = Object.keys(payload.figures), done = 0;
  ids.forEach(function (id) {
    var el = document.getElementById(id);
    if (!el) { return; }
    var fig = payload.figures[id];
    Plotly.newPlot(el, fig.data, fig.layout, {displaylogo: false, responsive: true}).then(function () {
      done += 1; document.body.setAttribute('data-charts-rendered', String(done));
    });
  });
})();
""" % DATA_ELEMENT_ID


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _status(status: str) -> str:
    return f'<span class="{_STATUS_CLASS.get(status, "")}">{_e(status)}</span>'


def _json_for_script(data: Any) -> str:
    text = json.dumps(_clean(data), allow_nan=False, separators=(",", ":"), default=str)
    # Inside <script> only "</" (and "<!--") can end the block early; escaping "<" is always safe in JSON.
    return text.replace("<", "\\u003c")


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _page(title: str, body: str, figures: dict[str, Any], data: dict[str, Any]) -> str:
    payload = {**data, "figures": figures}
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_e(title)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_CSS}</style>"
        f"<script>{plotly_js()}</script>"
        "</head><body>\n"
        f"{body}\n"
        f'<script type="application/json" id="{DATA_ELEMENT_ID}">{_json_for_script(payload)}</script>\n'
        f"<script>{_RENDER_JS}</script>\n"
        "</body></html>\n"
    )


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts else "-"


def _metadata_table(run: RunResult) -> str:
    m = run.metadata
    wall = (m.ended_at - m.started_at) if m.ended_at and m.started_at else None
    rows = [
        ("run id", m.run_id), ("status", None), ("config", m.config_name), ("suite", m.suite), ("stack", m.stack),
        ("storage", ", ".join(f"{k}={v}" for k, v in m.storage.items() if not isinstance(v, (dict, list)))),
        ("policy", m.policy), ("connector", m.connector),
        ("topology", ", ".join(f"{k}={v}" for k, v in m.topology.items() if not isinstance(v, (dict, list)))),
        ("datasets", ", ".join(f"{k}={v:,}" for k, v in m.dataset_sizes.items())),
        ("seed", m.seed),
        ("commit", (m.git_commit or "-") + (" (dirty)" if m.git_dirty else "")),
        ("started", _when(m.started_at)), ("ended", _when(m.ended_at)),
        ("wall", f"{wall:.3f} s" if wall is not None else "-"),
        ("host", ", ".join(f"{k}={v}" for k, v in m.host.items() if not isinstance(v, (dict, list)))),
        ("python", ", ".join(f"{k}={v}" for k, v in m.python.items() if not isinstance(v, (dict, list)))),
        ("sprout", m.sprout_version),
    ]
    out = ['<table class="meta">']
    for k, v in rows:
        cell = _status(run.status) + (f" <span class=\"dim\">({_e(run.reason)})</span>" if run.reason else "") \
            if k == "status" else _e(v if v not in (None, "") else "-")
        out.append(f'<tr><th class="l">{_e(k)}</th><td class="l">{cell}</td></tr>')
    out.append("</table>")
    if m.notes:
        out.append('<ul class="note">' + "".join(f"<li>{_e(n)}</li>" for n in m.notes) + "</ul>")
    return "".join(out)


def _summary_rows(run: RunResult) -> list[dict[str, Any]]:
    """One row per (phase, metric): what the console table shows, as numbers (ns, ops/s)."""
    rows: list[dict[str, Any]] = []
    for phase in run.phases:
        metrics: list[tuple[str, Histogram, float | None]] = [
            (op, h, phase.throughput.get(op)) for op, h in phase.latencies.items()]
        if len(phase.latencies) > 1:
            metrics.append(("(all ops)", phase.all_latencies(),
                            phase.ops / (phase.wall_ns / 1e9) if phase.wall_ns else None))
        metrics += [(f"lag.{n}", h, None) for n, h in phase.lags.items()]
        metrics += [(f"connector.{n}", h, None) for n, h in phase.connector_delays.items()]
        if not metrics:
            rows.append({"phase": phase.name, "metric": None, "status": phase.status, "count": 0})
        for name, h, rate in metrics:
            pct = h.percentiles(q for _, q in PERCENTILES) if h.count else [math.nan] * len(PERCENTILES)
            rows.append({"phase": phase.name, "metric": name, "status": phase.status, "count": h.count,
                         "ops_per_s": rate, **{k: v for (k, _), v in zip(PERCENTILES, pct)},
                         "max": float(h.max) if h.count else math.nan})
    return rows


def _summary_table(rows: list[dict[str, Any]]) -> str:
    head = ["phase", "metric", "status", "count", "ops/s"] + [k for k, _ in PERCENTILES] + ["max"]
    out = ['<table id="summary"><tr>' + "".join(
        f'<th class="{"l" if i < 3 else ""}">{_e(h)}</th>' for i, h in enumerate(head)) + "</tr>"]
    for r in rows:
        if r["metric"] is None:
            cells = [r["phase"], "-", None, "0", "-"] + ["-"] * (len(PERCENTILES) + 1)
        else:
            cells = [r["phase"], r["metric"], None, f"{r['count']:,}", format_rate(r["ops_per_s"])] + [
                format_ms(r[k]) for k, _ in PERCENTILES] + [format_ms(r["max"])]
        tds = []
        for i, c in enumerate(cells):
            tds.append(f'<td class="l">{_status(r["status"])}</td>' if i == 2
                       else f'<td class="{"l" if i < 2 else ""}">{_e(c)}</td>')
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _runs_rows(run: RunResult) -> list[dict[str, Any]]:
    """A repeated run's run-to-run figures: per metric and stat the runs' values (ns)."""
    if len(run.runs) < 2:
        return []
    rows = []
    for name in run.metrics():
        for stat in ("p50", "p99"):
            values = run.run_values(name, stat)
            if len(values) >= 2:
                rows.append({"metric": name, "stat": stat, "values": values, "median": stats.median(values),
                             "spread": stats.spread(values)})
    return rows


def _runs_table(run: RunResult, rows: list[dict[str, Any]]) -> str:
    out = [f'<p class="note">{len(run.runs)} runs, each in a fresh process'
           + (f", after {run.warmup_runs} discarded warm-up run(s)" if run.warmup_runs else "")
           + "; the summary above merges their samples; here each run's own figure</p>",
           '<table id="runs"><tr><th class="l">metric</th><th class="l">stat</th><th>median</th><th>min</th>'
           "<th>max</th><th>spread</th></tr>"]
    for r in rows:
        out.append(f'<tr><td class="l">{_e(r["metric"])}</td><td class="l">{r["stat"]}</td>'
                   f'<td>{format_ms(r["median"])}</td><td>{format_ms(min(r["values"]))}</td>'
                   f'<td>{format_ms(max(r["values"]))}</td><td>{r["spread"] * 100:.1f}%</td></tr>')
    out.append("</table>")
    return "".join(out)


def _runs_figure(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each run's p50 as a percentage of the runs' median, per metric: the spread at a glance."""
    p50 = [r for r in rows if r["stat"] == "p50"]
    xs, ys = [], []
    for r in p50:
        for v in r["values"]:
            xs.append(r["metric"])
            ys.append(round((v / r["median"] - 1.0) * 100.0, 3) if r["median"] > 0 else 0.0)
    return {"data": [{"type": "scatter", "mode": "markers", "x": ys, "y": xs, "name": "runs",
                      "marker": {"size": 8, "opacity": 0.7}}],
            "layout": {"title": {"text": "each run's p50 against the runs' median (%)", "font": {"size": 14}},
                       "xaxis": {"title": {"text": "% from median"}, "zeroline": True},
                       "yaxis": {"autorange": "reversed", "automargin": True},
                       "height": 160 + 24 * len(p50), "margin": {"l": 20, "r": 20, "t": 40, "b": 50},
                       "showlegend": False}}


def _phase_details(phase: PhaseResult) -> str:
    out = [f"<h3>{_e(phase.name)} — {_status(phase.status)}"
           + (f' <span class="dim">({_e(phase.reason)})</span>' if phase.reason else "")
           + f' <span class="dim">wall {phase.wall_ns / 1e9:.3f} s</span></h3>']
    if phase.checks:
        out.append("<ul>" + "".join(
            f'<li class="{"ok" if c.ok else "bad"}">{"PASS" if c.ok else "FAIL"} {_e(c.name)}'
            + (f": {_e(c.detail)}" if c.detail else "") + "</li>" for c in phase.checks) + "</ul>")
    if phase.counters:
        out.append('<p class="note">counters: ' + ", ".join(f"{_e(k)}={v:,}" for k, v in phase.counters.items()) + "</p>")
    return "".join(out)


def _errors_table(run: RunResult) -> str:
    rows = [(p.name, cat, e) for p in run.phases for cat, e in p.errors.items()]
    if not rows:
        return '<p id="errors-none" class="ok">no errors</p>'
    out = ['<table id="errors"><tr><th class="l">phase</th><th class="l">category</th><th>count</th>'
           '<th class="l">recent samples</th></tr>']
    for phase, cat, e in rows:
        samples = "".join(f"<pre>{_e(s)}</pre>" for s in e.samples) or "-"
        out.append(f'<tr><td class="l">{_e(phase)}</td><td class="l">{_e(cat)}</td><td>{e.count:,}</td>'
                   f'<td class="l">{samples}</td></tr>')
    out.append("</table>")
    return "".join(out)


def _thresholds_section(run: RunResult) -> str:
    """The config's thresholds judged on this run, as a small table; "" when it has none."""
    if not run.thresholds:
        return ""
    from sprout_harness.reports.thresholds import observed, verdict

    out = ["<h2>Thresholds</h2>", '<table id="thresholds"><tr><th class="l">rule</th><th class="l">stat</th>'
           '<th class="l">bound</th><th>worst observed</th><th class="l">metric / detail</th>'
           '<th class="l">result</th></tr>']
    for t in run.thresholds:
        value, metric = observed(t)
        result = '<span class="ok">ok</span>' if t.ok else '<span class="bad">CROSSED</span>'
        out.append(f'<tr><td class="l">{_e(t.pattern)}</td><td class="l">{_e(t.stat)}</td>'
                   f'<td class="l">{_e(t.expression)}</td><td>{_e(value)}</td>'
                   f'<td class="l">{_e(metric if t.ok else t.detail)}</td><td class="l">{result}</td></tr>')
    out.append(f'</table><p class="{"ok" if not run.thresholds_failed else "bad"}">{_e(verdict(run.thresholds))}</p>')
    return "".join(out)


# -- the run report ---------------------------------------------------------------------------

def run_figures(run: RunResult) -> dict[str, Any]:
    """Every figure of the run report, keyed by the id of the element it is drawn in."""
    figures: dict[str, Any] = {"timeline-throughput": _throughput_timeline(run)}
    lag = _lag_timeline(run)
    if lag is not None:
        figures["timeline-lag"] = lag
    errors = _errors_figure(run)
    if errors is not None:
        figures["errors-chart"] = errors
    runs = _runs_rows(run)
    if runs:
        figures["runs-spread"] = _runs_figure(runs)
    for i, phase in enumerate(run.phases):
        for key, title, hists in _latency_groups(phase):
            hists = {k: h for k, h in hists.items() if h.count}
            if hists:
                figures[f"dist-{key}-{i}"] = {
                    "data": [_curve_trace(name, h) for name, h in hists.items()],
                    "layout": _curve_layout(f"{phase.name}: {title}")}
    return figures


def render_html(run: RunResult) -> str:
    """The run report page as a string (see ``write_html``)."""
    figures = run_figures(run)
    rows = _summary_rows(run)
    m = run.metadata
    title = f"sprout run {m.run_id}" + (f" — {m.config_name}" if m.config_name else "")
    body = [f"<h1>{_e(title)}</h1>",
            f'<p>run status <span id="run-status">{_status(run.status)}</span></p>',
            "<h2>Metadata</h2>", _metadata_table(run),
            "<h2>Summary</h2>",
            '<p class="note">latency in ms, lower is better; ops/s higher is better</p>',
            _summary_table(rows), _thresholds_section(run)]
    runs = _runs_rows(run)
    if runs:
        body += ["<h2>Run to run</h2>", _runs_table(run, runs), '<div id="runs-spread" class="chart"></div>']
    body += ["<h2>Timelines</h2>", '<div id="timeline-throughput" class="chart"></div>']
    if "timeline-lag" in figures:
        body.append('<div id="timeline-lag" class="chart"></div>')
    body.append("<h2>Latency distributions</h2>")
    for i, phase in enumerate(run.phases):
        body.append(_phase_details(phase))
        charts = [k for k in (f"dist-latency-{i}", f"dist-lag-{i}", f"dist-connector-{i}") if k in figures]
        if charts:
            body.append('<div class="grid">' + "".join(f'<div id="{k}" class="chart"></div>' for k in charts) + "</div>")
    body.append("<h2>Errors</h2>")
    if "errors-chart" in figures:
        body.append('<div id="errors-chart" class="chart"></div>')
    body.append(_errors_table(run))
    body.append('<p class="note">generated by sprout; charts drawn with plotly.js, embedded (works offline)</p>')
    data = {"kind": "sprout-run-report", "summary": rows, "run": run.to_dict()}
    return _page(title, "\n".join(body), figures, data)


def _write_text(path: str | os.PathLike[str], text: str) -> Path:
    return write_atomic(path, text.encode("utf-8"))


def write_html(run: RunResult, path: str | os.PathLike[str]) -> Path:
    """Write the run report: one self-contained HTML file (atomically); returns its path."""
    return _write_text(path, render_html(run))


# -- the comparison page ----------------------------------------------------------------------

def _pct(change: float) -> str:
    return "n/a" if not math.isfinite(change) else f"{change * 100:+.1f}%"


def _delta_rows(c: Comparison) -> list[dict[str, Any]]:
    return [{"name": d.name, "base_ns": d.base_ns, "new_ns": d.new_ns, "change": d.change,
             "regressed": d.regressed, "improved": d.improved, "gated": d.gated, "method": d.method,
             "p_value": d.p_value, "evidence": evidence(d)} for d in c.deltas]


def _delta_table(c: Comparison) -> str:
    out = ['<table id="deltas"><tr><th class="l">metric</th><th>base ms</th><th>new ms</th><th>change</th>'
           '<th>evidence</th><th class="l">verdict</th></tr>']
    for d in c.deltas:
        cls = "regressed" if d.regressed else "improved" if d.improved else "same" if d.gated else "ungated"
        verdict = ('<span class="bad">REGRESSED</span>' if d.regressed
                   else '<span class="ok">improved</span>' if d.improved
                   else '<span class="dim">same</span>' if d.gated
                   else f'<span class="dim" title="{_e(d.note)}">few samples</span>')
        out.append(f'<tr class="{cls}" data-metric="{_e(d.name)}"><td class="l">{_e(d.name)}</td>'
                   f"<td>{format_ms(d.base_ns)}</td><td>{format_ms(d.new_ns)}</td><td>{_pct(d.change)}</td>"
                   f'<td>{_e(evidence(d))}</td><td class="l">{verdict}</td></tr>')
    out.append("</table>")
    return "".join(out)


def _bars(c: Comparison, stat: str) -> dict[str, Any] | None:
    ds: list[MetricDelta] = [d for d in c.deltas if d.name.endswith(" " + stat)]
    if not ds:
        return None
    names = [d.name[: -len(stat) - 1] for d in ds]
    colors = ["#c0392b" if d.regressed else "#1e8449" if d.improved else "#2e86c1" for d in ds]
    return {"data": [
        {"type": "bar", "orientation": "h", "name": f"base ({c.base_label})", "y": names,
         "x": [_ms(d.base_ns) for d in ds], "marker": {"color": "#aab7b8"}},
        {"type": "bar", "orientation": "h", "name": f"new ({c.new_label})", "y": names,
         "x": [_ms(d.new_ns) for d in ds], "marker": {"color": colors}},
    ], "layout": {"title": {"text": f"{stat} latency, base vs new (ms, lower is better; red = regressed)",
                            "font": {"size": 14}},
                  "barmode": "group", "xaxis": {"title": {"text": "ms"}, "type": "log"},
                  "yaxis": {"autorange": "reversed", "automargin": True},
                  "height": 160 + 36 * len(ds), "margin": {"l": 20, "r": 20, "t": 40, "b": 40},
                  "legend": {"orientation": "h"}}}


def _throughput_bars(base: RunResult, new: RunResult, c: Comparison) -> dict[str, Any] | None:
    def rates(run: RunResult) -> dict[str, float]:
        return {f"{p.name}/{op}": v for p in run.phases for op, v in p.throughput.items() if math.isfinite(v)}

    b, n = rates(base), rates(new)
    names = [k for k in b if k in n]
    if not names:
        return None
    return {"data": [
        {"type": "bar", "orientation": "h", "name": f"base ({c.base_label})", "y": names, "x": [b[k] for k in names],
         "marker": {"color": "#aab7b8"}},
        {"type": "bar", "orientation": "h", "name": f"new ({c.new_label})", "y": names, "x": [n[k] for k in names],
         "marker": {"color": "#2e86c1"}},
    ], "layout": {"title": {"text": "throughput, base vs new (ops/s, higher is better)", "font": {"size": 14}},
                  "barmode": "group", "yaxis": {"autorange": "reversed", "automargin": True},
                  "height": 160 + 36 * len(names), "margin": {"l": 20, "r": 20, "t": 40, "b": 40},
                  "legend": {"orientation": "h"}}}


def _side_by_side(run: RunResult, role: str) -> str:
    m = run.metadata
    out = [f"<div><h3>{_e(role)}: {_e(m.run_id)}</h3>",
           f'<p>status {_status(run.status)}'
           + (f' <span class="dim">({_e(run.reason)})</span>' if run.reason else "") + "</p>",
           f'<p class="note">config {_e(m.config_name or "-")}, stack {_e(m.stack or "-")}, '
           f'commit {_e((m.git_commit or "-")[:12])}{" (dirty)" if m.git_dirty else ""}, started {_e(_when(m.started_at))}</p>',
           '<table><tr><th class="l">phase</th><th class="l">status</th><th>ops</th><th>wall s</th><th>errors</th></tr>']
    for p in run.phases:
        out.append(f'<tr><td class="l">{_e(p.name)}</td><td class="l">{_status(p.status)}</td><td>{p.ops:,}</td>'
                   f"<td>{p.wall_ns / 1e9:.3f}</td><td>{p.error_count:,}</td></tr>")
    out.append("</table></div>")
    return "".join(out)


def compare_figures(comparison: Comparison, base: RunResult, new: RunResult) -> dict[str, Any]:
    """Every figure of the comparison page, keyed by element id."""
    figures: dict[str, Any] = {}
    for stat in ("p99", "p50"):
        f = _bars(comparison, stat)
        if f is not None:
            figures[f"cmp-{stat}"] = f
    t = _throughput_bars(base, new, comparison)
    if t is not None:
        figures["cmp-throughput"] = t
    bm, nm = base.metrics(), new.metrics()
    regressed = {d.name.rsplit(" ", 1)[0] for d in comparison.regressions}
    common = [k for k in bm if k in nm]
    common.sort(key=lambda k: k not in regressed)  # regressed metrics first, then run order
    for i, name in enumerate(common[:_MAX_COMPARE_CURVES]):
        layout = _curve_layout(("REGRESSED: " if name in regressed else "") + name)
        figures[f"cmp-curve-{i}"] = {"data": [
            _curve_trace(f"base {comparison.base_label}", bm[name], line={"dash": "dot", "color": "#7f8c8d"}),
            _curve_trace(f"new {comparison.new_label}", nm[name],
                         line={"color": "#c0392b" if name in regressed else "#2e86c1"}),
        ], "layout": layout}
    return figures


def render_compare_html(comparison: Comparison, base: RunResult, new: RunResult) -> str:
    """The comparison page as a string (see ``write_compare_html``)."""
    c = comparison
    figures = compare_figures(c, base, new)
    title = f"sprout compare {c.base_label} -> {c.new_label}"
    if c.regressed:
        verdict = (f'<div id="verdict" class="verdict bad">REGRESSED: {len(c.regressions)} metric(s) significantly '
                   f"beyond +{c.threshold * 100:g}%"
                   + (f", {len(c.status_changes)} phase(s) broke" if c.status_changes else "") + "</div>")
    else:
        verdict = (f'<div id="verdict" class="verdict ok">no significant regression beyond +{c.threshold * 100:g}% '
                   f"({len(c.improvements)} improved, {len(c.deltas)} compared)</div>")
    body = [f"<h1>{_e(title)}</h1>", verdict,
            '<p class="note">p50/p99 of every latency, lag and connector delay; lower is better; judged as '
            f"<code>sprout compare</code> judges them: {_e(c.method)} (docs/statistics.md)</p>"]
    body += [f'<p class="note">note: {_e(w)}</p>' for w in c.warnings]
    if c.status_changes:
        body.append('<ul id="status-changes">' + "".join(f'<li class="bad">phase broke: {_e(s)}</li>'
                                                        for s in c.status_changes) + "</ul>")
    body.append('<div class="cols">' + _side_by_side(base, "base") + _side_by_side(new, "new") + "</div>")
    body.append("<h2>Metrics</h2>" + _delta_table(c))
    for label, names in (("missing in base", c.missing_in_base), ("missing in new", c.missing_in_new)):
        if names:
            body.append(f'<p class="note">{_e(label)}: {_e(", ".join(names))}</p>')
    body.append("<h2>Charts</h2>")
    for key in ("cmp-p99", "cmp-p50", "cmp-throughput"):
        if key in figures:
            body.append(f'<div id="{key}" class="chart"></div>')
    curves = [k for k in figures if k.startswith("cmp-curve-")]
    if curves:
        body.append("<h3>Latency distributions (base dotted, new solid)</h3>")
        body.append('<div class="grid">' + "".join(f'<div id="{k}" class="chart"></div>' for k in curves) + "</div>")
    data = {"kind": "sprout-compare", "threshold": c.threshold, "alpha": c.alpha, "regressed": c.regressed,
            "base_label": c.base_label, "new_label": c.new_label, "deltas": _delta_rows(c),
            "status_changes": list(c.status_changes), "missing_in_base": list(c.missing_in_base),
            "missing_in_new": list(c.missing_in_new)}
    return _page(title, "\n".join(body), figures, data)


def write_compare_html(comparison: Comparison, base: RunResult, new: RunResult,
                       path: str | os.PathLike[str]) -> Path:
    """Write the comparison page (one self-contained HTML file); ``comparison`` comes from ``compare_runs``."""
    return _write_text(path, render_compare_html(comparison, base, new))
