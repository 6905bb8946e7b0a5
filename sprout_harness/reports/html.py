"""Self-contained HTML pages: one run's report and a two-run comparison, with plotly.js charts.

Each page is one file that needs no network: plotly.js (from the installed ``plotly`` package,
see ``reports.assets``) is inlined, and every figure's data sits in one
``<script type="application/json" id="sprout-data">`` block that a tiny script renders. The same
block is what tests (and curious people) read back.

``reports.figures`` turns the results into plain data (figures and table rows); this module
renders it with the jinja2 templates in ``reports/templates`` (autoescaped: config, stack,
phase and error texts are the user's and must never become markup).
"""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from sprout_harness.metrics.results import RunResult
from sprout_harness.reports import figures as fig
from sprout_harness.reports.assets import plotly_js
from sprout_harness.reports.compare import Comparison, format_change
from sprout_harness.reports.console import PERCENTILES, format_ms, format_rate
from sprout_harness.reports.figures import compare_figures, percentile_curve, run_figures
from sprout_harness.reports.files import write_atomic

DATA_ELEMENT_ID = "sprout-data"
_STATUS_CLASS = {
    "ok": "ok",
    "failed": "bad",
    "error": "bad",
    "cancelled": "warn",
    "unsupported": "dim",
    "completed": "ok",
}

__all__ = [
    "DATA_ELEMENT_ID",
    "compare_figures",
    "percentile_curve",
    "render_compare_html",
    "render_html",
    "run_figures",
    "write_compare_html",
    "write_html",
]


@lru_cache(maxsize=1)
def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("sprout_harness.reports", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(ms=format_ms, rate=format_rate, change=format_change, num=lambda v: f"{v:,}")
    env.globals.update(status_class=_STATUS_CLASS, data_id=DATA_ELEMENT_ID)
    return env


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


def _page(template: str, title: str, figures: dict[str, Any], data: dict[str, Any], **context: Any) -> str:
    # plotly.js and the JSON block are trusted text (checked by plotly_js / escaped above), not markup to escape.
    payload = Markup(_json_for_script({**data, "figures": figures}))
    return (
        _env()
        .get_template(template)
        .render(title=title, figures=figures, plotly_js=Markup(plotly_js()), data_json=payload, **context)
    )


# -- the run report ---------------------------------------------------------------------------


def render_html(run: RunResult) -> str:
    """The run report page as a string (see ``write_html``)."""
    figures = run_figures(run)
    rows = fig.summary_rows(run)
    runs = fig.runs_rows(run)
    m = run.metadata
    title = f"sprout run {m.run_id}" + (f" — {m.config_name}" if m.config_name else "")
    data = {"kind": "sprout-run-report", "summary": rows, "run": run.to_dict()}
    return _page(
        "run.html.j2",
        title,
        figures,
        data,
        run_status=run.status,
        run_reason=run.reason,
        metadata=fig.metadata_rows(run),
        notes=m.notes,
        summary=rows,
        percentiles=[k for k, _ in PERCENTILES],
        thresholds=fig.threshold_rows(run),
        runs={"count": len(run.runs), "warmup": run.warmup_runs, "rows": runs} if runs else None,
        phases=fig.phase_rows(run, figures),
        errors=fig.error_rows(run),
        timelines=[f"timeline-{i}" for i in range(len(run.phases)) if f"timeline-{i}" in figures],
        short_phases=[p.name for i, p in enumerate(run.phases) if p.timeline and f"timeline-{i}" not in figures],
    )


def _write_text(path: str | os.PathLike[str], text: str) -> Path:
    return write_atomic(path, text.encode("utf-8"))


def write_html(run: RunResult, path: str | os.PathLike[str]) -> Path:
    """Write the run report: one self-contained HTML file (atomically); returns its path."""
    return _write_text(path, render_html(run))


# -- the comparison page ----------------------------------------------------------------------


def render_compare_html(comparison: Comparison, base: RunResult, new: RunResult) -> str:
    """The comparison page as a string (see ``write_compare_html``)."""
    c = comparison
    figures = compare_figures(c, base, new)
    title = f"sprout compare {c.base_label} -> {c.new_label}"
    data = {
        "kind": "sprout-compare",
        "threshold": c.threshold,
        "alpha": c.alpha,
        "regressed": c.regressed,
        "base_label": c.base_label,
        "new_label": c.new_label,
        "deltas": fig.delta_rows(c),
        "status_changes": list(c.status_changes),
        "missing_in_base": list(c.missing_in_base),
        "missing_in_new": list(c.missing_in_new),
    }
    return _page(
        "compare.html.j2",
        title,
        figures,
        data,
        c=fig.comparison_summary(c),
        deltas=fig.delta_table_rows(c),
        base=fig.side_rows(base, "base"),
        new=fig.side_rows(new, "new"),
        curves=[k for k in figures if k.startswith("cmp-curve-")],
    )


def write_compare_html(comparison: Comparison, base: RunResult, new: RunResult, path: str | os.PathLike[str]) -> Path:
    """Write the comparison page (one self-contained HTML file); ``comparison`` comes from ``compare_runs``."""
    return _write_text(path, render_compare_html(comparison, base, new))
