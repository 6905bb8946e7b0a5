"""What the HTML pages show, as plain data: plotly figures (dicts in plotly's JSON schema) and
the rows of every table, built from a ``RunResult`` or a ``Comparison``. No page markup here:
the templates of ``reports.html`` lay these out (names inside plotly hover templates are
escaped, as plotly draws those as markup).

Percentile curves put the percentile on a "nines" axis, ``x = -log10(1 - q/100)`` (50% -> 0.3,
90% -> 1, 99% -> 2, 99.9% -> 3), so the tail gets as much room as the median.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Iterable
from typing import Any

from sprout_harness.metrics import stats
from sprout_harness.metrics.histogram import Histogram
from sprout_harness.metrics.results import PhaseResult, RunResult
from sprout_harness.reports.compare import Comparison, MetricDelta, evidence
from sprout_harness.reports.console import PERCENTILES, metric_rows
from sprout_harness.reports.thresholds import observed, verdict

_NINES_MAX = 4.0  # the curves stop at 99.99%
_CURVE_POINTS = 41
_TICKS = [(0.0, "0%"), (math.log10(2), "50%"), (1.0, "90%"), (2.0, "99%"), (3.0, "99.9%"), (4.0, "99.99%")]
_MAX_COMPARE_CURVES = 30  # one small chart per common metric, capped to keep the page light


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
    return {"nines": [round(x, 4) for x in xs], "percentile": [round(q, 4) for q in qs], "ms": [_ms(v) for v in values]}


def _curve_trace(name: str, h: Histogram, **style: Any) -> dict[str, Any]:
    c = percentile_curve(h)
    return {
        "type": "scatter",
        "mode": "lines",
        "name": f"{name} (n={h.count:,})",
        "x": c["nines"],
        "y": c["ms"],
        "customdata": c["percentile"],
        "hovertemplate": "p%{customdata:.3f}: %{y:.4f} ms<extra>" + html.escape(name) + "</extra>",
        **style,
    }


def _title(text: str) -> dict[str, Any]:
    """A chart title on the left: plotly's toolbar sits on the right and would cover a centred one."""
    return {"text": text, "font": {"size": 14}, "x": 0.01, "xanchor": "left"}


def _log_axis(values: Iterable[float | None]) -> dict[str, Any]:
    """A log axis labelled at 1, 2, 5 x 10^k (10^k alone over more than three decades) across
    the values, written out in full: plotly's own labels on a narrow log range are bare
    digits ("2", "5") that read as the wrong value."""
    vs = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    axis: dict[str, Any] = {"title": {"text": "ms"}, "type": "log"}
    if not vs:
        return axis
    lo, hi = math.floor(math.log10(min(vs))), math.ceil(math.log10(max(vs)))
    steps = (1, 2, 5) if hi - lo <= 3 else (1,)  # over more decades 1-2-5 crowds the axis
    ticks = [m * 10.0**k for k in range(lo, hi + 1) for m in steps]
    ticks = [t for t in ticks if min(vs) / 2 <= t <= max(vs) * 2]
    axis["tickvals"] = ticks
    axis["ticktext"] = [f"{t:g}" for t in ticks]
    return axis


def _curve_layout(title: str, traces: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    return {
        "title": _title(title),
        "xaxis": {
            "title": {"text": "percentile"},
            "tickvals": [t for t, _ in _TICKS],
            "ticktext": [l for _, l in _TICKS],
            "range": [0, _NINES_MAX],
        },
        "yaxis": _log_axis(y for t in traces for y in t["y"]),
        "height": 340,
        "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
        "legend": {"orientation": "h", "y": -0.25, "yanchor": "top"},
    }


def _phase_timeline(phase: PhaseResult) -> dict[str, Any]:
    """One phase's ops/s per second (bars) and p99 (dotted), on the phase's own time axis: on
    one axis for the whole run, the longest phase would squash the others into a sliver."""
    wall_s = phase.wall_ns / 1e9
    # The last second of a phase is usually partial: its rate is ops over the part that ran.
    widths = [max(1e-3, min(1.0, wall_s - p.second)) if wall_s > p.second else 1.0 for p in phase.timeline]
    xs = [round(p.second + w / 2, 4) for p, w in zip(phase.timeline, widths)]
    name = html.escape(phase.name)
    return {
        "data": [
            {
                "type": "bar",
                "name": "ops/s",
                "x": xs,
                "width": widths,
                "y": [round(p.ops / w, 1) for p, w in zip(phase.timeline, widths)],
                "hovertemplate": "%{y:,} ops/s<extra>" + name + "</extra>",
            },
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "p99 ms",
                "yaxis": "y2",
                "x": xs,
                "y": [_ms(p.p99_ns) if p.ops else None for p in phase.timeline],
                "line": {"dash": "dot"},
                "hovertemplate": "p99 %{y:.4f} ms<extra>" + name + "</extra>",
            },
        ],
        "layout": {
            "title": _title(phase.name),
            "xaxis": {"title": {"text": "seconds since the phase started"}, "range": [0, max(wall_s, 1e-3)]},
            "yaxis": {"title": {"text": "ops/s"}, "rangemode": "tozero"},
            "yaxis2": {"title": {"text": "p99 ms"}, "overlaying": "y", "side": "right", "rangemode": "tozero"},
            "barmode": "overlay",
            "height": 280,
            "margin": {"l": 60, "r": 60, "t": 40, "b": 50},
            "legend": {"orientation": "h", "y": -0.3, "yanchor": "top"},
        },
    }


def _lag_by_phase(run: RunResult) -> dict[str, Any] | None:
    """Lag p50 and p99 per phase (reports keep lag per phase, not per second): one category
    per phase, so a short phase gets as much room as a long one."""
    series: dict[str, dict[str, list[Any]]] = {}
    for phase in run.phases:
        for name, h in phase.lags.items():
            if not h.count:
                continue
            p50, p99 = h.percentiles([50.0, 99.0])
            for stat, v in (("p50", p50), ("p99", p99)):
                s = series.setdefault(f"lag.{name} {stat}", {"x": [], "y": []})
                s["x"].append(phase.name)
                s["y"].append(_ms(v))
    if not series:
        return None
    data = [
        {
            "type": "scatter",
            "mode": "markers",
            "name": k,
            "x": v["x"],
            "y": v["y"],
            "marker": {"size": 11, "symbol": "diamond" if k.endswith("p99") else "circle"},
        }
        for k, v in series.items()
    ]
    return {
        "data": data,
        "layout": {
            "title": _title("subscription lag per phase (commit -> notification; circles p50, diamonds p99)"),
            "xaxis": {"type": "category", "automargin": True},
            "yaxis": _log_axis(y for v in series.values() for y in v["y"]),
            "height": 340,
            "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
            "legend": {"orientation": "h", "y": -0.25, "yanchor": "top"},
        },
    }


def _errors_figure(run: RunResult) -> dict[str, Any] | None:
    rows = [(f"{p.name}: {cat}", e.count) for p in run.phases for cat, e in p.errors.items() if e.count]
    if not rows:
        return None
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "name": "errors",
                "y": [r[0] for r in rows],
                "x": [r[1] for r in rows],
                "marker": {"color": "#c0392b"},
            }
        ],
        "layout": {
            "title": _title("errors by phase and category"),
            "xaxis": {"title": {"text": "count"}},
            "height": 120 + 30 * len(rows),
            "margin": {"l": 260, "r": 20, "t": 40, "b": 40},
        },
    }


def _latency_groups(phase: PhaseResult) -> Iterable[tuple[str, str, dict[str, Histogram]]]:
    yield "latency", "operation latency", phase.latencies
    yield "lag", "subscription lag (commit -> notification)", {f"lag.{k}": h for k, h in phase.lags.items()}
    yield "connector", "connector delay", {f"connector.{k}": h for k, h in phase.connector_delays.items()}


# -- the rows of the run report's tables -----------------------------------------------------


def when(ts: float) -> str:
    """A wall-clock time as the pages print it ("-" when unknown)."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts else "-"


def _pairs(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items() if not isinstance(v, (dict, list)))


def metadata_rows(run: RunResult) -> list[tuple[str, str | None]]:
    """(label, text) rows of the metadata table; "status" has None (the page draws the run's status)."""
    m = run.metadata
    wall = (m.ended_at - m.started_at) if m.ended_at and m.started_at else None
    rows: list[tuple[str, Any]] = [
        ("run id", m.run_id),
        ("status", None),
        ("config", m.config_name),
        ("suite", m.suite),
        ("stack", m.stack),
        ("storage", _pairs(m.storage)),
        ("policy", m.policy),
        ("connector", m.connector),
        ("topology", _pairs(m.topology)),
        ("datasets", ", ".join(f"{k}={v:,}" for k, v in m.dataset_sizes.items())),
        ("seed", m.seed),
        ("commit", (m.git_commit or "-") + (" (dirty)" if m.git_dirty else "")),
        ("started", when(m.started_at)),
        ("ended", when(m.ended_at)),
        ("wall", f"{wall:.3f} s" if wall is not None else "-"),
        ("host", _pairs(m.host)),
        ("python", _pairs(m.python)),
        ("sprout", m.sprout_version),
    ]
    return [(k, None if k == "status" else str(v if v not in (None, "") else "-")) for k, v in rows]


def summary_rows(run: RunResult) -> list[dict[str, Any]]:
    """One row per (phase, metric): what the console table shows, as numbers (ns, ops/s)."""
    rows: list[dict[str, Any]] = []
    for phase in run.phases:
        metrics = list(metric_rows(phase))  # the console's rows, ops/s stated where it is honest
        if not metrics:
            rows.append({"phase": phase.name, "metric": None, "status": phase.status, "count": 0})
        for name, h, rate in metrics:
            pct = h.percentiles(q for _, q in PERCENTILES) if h.count else [math.nan] * len(PERCENTILES)
            rows.append(
                {
                    "phase": phase.name,
                    "metric": name,
                    "status": phase.status,
                    "count": h.count,
                    "ops_per_s": rate,
                    **{k: v for (k, _), v in zip(PERCENTILES, pct)},
                    "max": float(h.max) if h.count else math.nan,
                }
            )
    return rows


def runs_rows(run: RunResult) -> list[dict[str, Any]]:
    """A repeated run's run-to-run figures: per metric and stat the runs' values (ns)."""
    if len(run.runs) < 2:
        return []
    rows = []
    for name in run.metrics():
        for stat in ("p50", "p99"):
            values = run.run_values(name, stat)
            if len(values) >= 2:
                rows.append(
                    {
                        "metric": name,
                        "stat": stat,
                        "values": values,
                        "median": stats.median(values),
                        "spread": stats.spread(values),
                    }
                )
    return rows


def _runs_figure(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each run's p50 as a percentage of the runs' median, per metric: the spread at a glance."""
    p50 = [r for r in rows if r["stat"] == "p50"]
    xs, ys = [], []
    for r in p50:
        for v in r["values"]:
            xs.append(r["metric"])
            ys.append(round((v / r["median"] - 1.0) * 100.0, 3) if r["median"] > 0 else 0.0)
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "markers",
                "x": ys,
                "y": xs,
                "name": "runs",
                "marker": {"size": 8, "opacity": 0.7},
            }
        ],
        "layout": {
            "title": _title("each run's p50 against the runs' median (%)"),
            "xaxis": {"title": {"text": "% from median"}, "zeroline": True},
            "yaxis": {"autorange": "reversed", "automargin": True},
            "height": 160 + 24 * len(p50),
            "margin": {"l": 20, "r": 20, "t": 40, "b": 50},
            "showlegend": False,
        },
    }


def phase_rows(run: RunResult, figures: dict[str, Any]) -> list[dict[str, Any]]:
    """Per phase: status, wall time, checks, counters and the ids of its distribution charts."""
    return [
        {
            "name": p.name,
            "status": p.status,
            "reason": p.reason,
            "wall_s": p.wall_ns / 1e9,
            "checks": [{"ok": c.ok, "name": c.name, "detail": c.detail} for c in p.checks],
            "counters": dict(p.counters),
            "charts": [k for k in (f"dist-latency-{i}", f"dist-lag-{i}", f"dist-connector-{i}") if k in figures],
        }
        for i, p in enumerate(run.phases)
    ]


def error_rows(run: RunResult) -> list[dict[str, Any]]:
    """Per phase and error category: the count and the recent samples."""
    return [
        {"phase": p.name, "category": cat, "count": e.count, "samples": list(e.samples)}
        for p in run.phases
        for cat, e in p.errors.items()
    ]


def threshold_rows(run: RunResult) -> dict[str, Any] | None:
    """The config's thresholds judged on this run: rows and the verdict; None when it has none."""
    if not run.thresholds:
        return None
    rows = []
    for t in run.thresholds:
        value, metric = observed(t)
        rows.append(
            {
                "pattern": t.pattern,
                "stat": t.stat,
                "expression": t.expression,
                "observed": value,
                "detail": metric if t.ok else t.detail,
                "ok": t.ok,
            }
        )
    return {"rows": rows, "verdict": verdict(run.thresholds), "ok": not run.thresholds_failed}


# -- the run report ---------------------------------------------------------------------------


def run_figures(run: RunResult) -> dict[str, Any]:
    """Every figure of the run report, keyed by the id of the element it is drawn in."""
    figures: dict[str, Any] = {}
    for i, phase in enumerate(run.phases):
        if len(phase.timeline) >= 2:  # one per-second bucket is one bar: the summary says it all
            figures[f"timeline-{i}"] = _phase_timeline(phase)
    lag = _lag_by_phase(run)
    if lag is not None:
        figures["lag-by-phase"] = lag
    errors = _errors_figure(run)
    if errors is not None:
        figures["errors-chart"] = errors
    runs = runs_rows(run)
    if runs:
        figures["runs-spread"] = _runs_figure(runs)
    for i, phase in enumerate(run.phases):
        for key, title, hists in _latency_groups(phase):
            hists = {k: h for k, h in hists.items() if h.count}
            if hists:
                traces = [_curve_trace(name, h) for name, h in hists.items()]
                figures[f"dist-{key}-{i}"] = {
                    "data": traces,
                    "layout": _curve_layout(title, traces),
                }  # the heading names the phase
    return figures


# -- the comparison page ---------------------------------------------------------------------


def delta_rows(c: Comparison) -> list[dict[str, Any]]:
    return [
        {
            "name": d.name,
            "base_ns": d.base_ns,
            "new_ns": d.new_ns,
            "change": d.change,
            "regressed": d.regressed,
            "improved": d.improved,
            "gated": d.gated,
            "method": d.method,
            "p_value": d.p_value,
            "evidence": evidence(d),
        }
        for d in c.deltas
    ]


def comparison_summary(c: Comparison) -> dict[str, Any]:
    """The verdict and what goes with it: counts, margin, method, notes, broken phases, missing metrics."""
    return {
        "regressed": c.regressed,
        "regressions": len(c.regressions),
        "broke": len(c.status_changes),
        "improved": len(c.improvements),
        "compared": len(c.deltas),
        "threshold_pct": f"{c.threshold * 100:g}",
        "method": c.method,
        "warnings": list(c.warnings),
        "status_changes": list(c.status_changes),
        "missing": [("missing in base", list(c.missing_in_base)), ("missing in new", list(c.missing_in_new))],
    }


def delta_table_rows(c: Comparison) -> list[dict[str, Any]]:
    """The comparison table: per metric its figures and its verdict (regressed, improved, same,
    ungated: too few samples to judge)."""
    return [
        {
            "name": d.name,
            "base_ns": d.base_ns,
            "new_ns": d.new_ns,
            "change": d.change,
            "evidence": evidence(d),
            "note": d.note,
            "verdict": "regressed" if d.regressed else "improved" if d.improved else "same" if d.gated else "ungated",
        }
        for d in c.deltas
    ]


def side_rows(run: RunResult, role: str) -> dict[str, Any]:
    """One side of the comparison: the run's identity and its phases."""
    m = run.metadata
    return {
        "role": role,
        "run_id": m.run_id,
        "status": run.status,
        "reason": run.reason,
        "config": m.config_name or "-",
        "stack": m.stack or "-",
        "commit": (m.git_commit or "-")[:12],
        "dirty": m.git_dirty,
        "started": when(m.started_at),
        "phases": [
            {"name": p.name, "status": p.status, "ops": p.ops, "wall_s": p.wall_ns / 1e9, "errors": p.error_count}
            for p in run.phases
        ],
    }


def _paired_bars(
    c: Comparison,
    names: list[str],
    base_x: list[Any],
    new_x: list[Any],
    new_color: Any,
    title: str,
    xaxis: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Base and new side by side, one horizontal bar pair per name."""

    def side(label: str, x: list[Any], color: Any) -> dict[str, Any]:
        return {"type": "bar", "orientation": "h", "name": label, "y": names, "x": x, "marker": {"color": color}}

    return {
        "data": [side(f"base ({c.base_label})", base_x, "#aab7b8"), side(f"new ({c.new_label})", new_x, new_color)],
        "layout": {
            "title": _title(title),
            "barmode": "group",
            **({"xaxis": xaxis} if xaxis else {}),
            "yaxis": {"autorange": "reversed", "automargin": True},
            "height": 160 + 36 * len(names),
            "margin": {"l": 20, "r": 20, "t": 40, "b": 40},
            "legend": {"orientation": "h"},
        },
    }


def _bars(c: Comparison, stat: str) -> dict[str, Any] | None:
    ds: list[MetricDelta] = [d for d in c.deltas if d.name.endswith(" " + stat)]
    if not ds:
        return None
    colors = ["#c0392b" if d.regressed else "#1e8449" if d.improved else "#2e86c1" for d in ds]
    return _paired_bars(
        c,
        [d.name[: -len(stat) - 1] for d in ds],
        [_ms(d.base_ns) for d in ds],
        [_ms(d.new_ns) for d in ds],
        colors,
        f"{stat} latency, base vs new (ms, lower is better; red = regressed)",
        {"title": {"text": "ms"}, "type": "log"},
    )


def _throughput_bars(base: RunResult, new: RunResult, c: Comparison) -> dict[str, Any] | None:
    def rates(run: RunResult) -> dict[str, float]:
        return {f"{p.name}/{op}": v for p in run.phases for op, v in p.throughput.items() if math.isfinite(v)}

    b, n = rates(base), rates(new)
    names = [k for k in b if k in n]
    if not names:
        return None
    return _paired_bars(
        c,
        names,
        [b[k] for k in names],
        [n[k] for k in names],
        "#2e86c1",
        "throughput, base vs new (ops/s, higher is better)",
    )


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
        traces = [
            _curve_trace(f"base {comparison.base_label}", bm[name], line={"dash": "dot", "color": "#7f8c8d"}),
            _curve_trace(
                f"new {comparison.new_label}", nm[name], line={"color": "#c0392b" if name in regressed else "#2e86c1"}
            ),
        ]
        figures[f"cmp-curve-{i}"] = {
            "data": traces,
            "layout": _curve_layout(("REGRESSED: " if name in regressed else "") + name, traces),
        }
    return figures
