"""The full JSON report of a run (schema: docs/report-schema.md); read back with ``metrics.load_run``."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import orjson

from sprout_harness.metrics.histogram import Histogram
from sprout_harness.metrics.results import RunResult
from sprout_harness.reports.files import write_atomic

_HIST_GROUPS = ("latencies", "lags", "connector_delays")


def _summary(h: Histogram) -> dict[str, float | int | None]:
    """Convenience figures in ns for readers of the file (jq, dashboards); nulls when empty."""
    out: dict[str, float | int | None] = {}
    for k, v in h.summary().items():
        out[k] = None if not math.isfinite(v) else (int(v) if k == "count" else v)
    return out


def report_dict(run: RunResult) -> dict[str, Any]:
    """``run.to_dict()`` plus a read-only ``summary`` next to each histogram and per-phase totals."""
    d = run.to_dict()
    for phase, pd in zip(run.phases, d["phases"]):
        for group in _HIST_GROUPS:
            for name, h in getattr(phase, group).items():
                pd[group][name]["summary"] = _summary(h)
        pd["all_latencies_summary"] = _summary(phase.all_latencies())
    return d


def _default(obj: Any) -> Any:
    # Configs may carry Paths, sets or enums; a report must still be written.
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    return str(obj)


def to_json_bytes(run: RunResult) -> bytes:
    """The full report as indented UTF-8 JSON (no NaN/Infinity: empty figures are null)."""
    return (
        orjson.dumps(report_dict(run), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=_default)
        + b"\n"
    )


def write(run: RunResult, path: str | os.PathLike[str]) -> Path:
    """Write the report atomically (a crash never leaves half a file) and return its path."""
    return write_atomic(path, to_json_bytes(run))
