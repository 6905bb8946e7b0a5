"""github-action-benchmark output (``tool: customSmallerIsBetter``).

The file is a top-level JSON array of ``{name, unit, value, range?, extra?}``. Entries are
matched across runs by ``name``, so names are stable and unique: ``<label>/<phase>/<metric> <stat>``
(e.g. ``leveldb-local/create/create_batch p50``), with ``<label>`` the config name (else the
stack). Every value is lower-is-better and finite; empty histograms and phases that did not
finish ``ok`` produce no entries (a failed phase's figures would mislead a trend chart).

A repeated run (``sprout run --repeat N``) reports each figure as the median of its runs'
own figures, with github-action-benchmark's ``range`` holding half their min..max spread
(``"± 0.012"``, ms) and ``extra`` the run count.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from sprout_harness.metrics import stats
from sprout_harness.metrics.histogram import Histogram
from sprout_harness.metrics.results import PhaseResult, RunResult
from sprout_harness.reports.files import write_atomic

ALLOWED_UNITS = frozenset({"ms", "us", "s/op"})
STATS = (("p50", 50.0), ("p99", 99.0))


def _ms(ns: float) -> float:
    return round(ns / 1e6, 6)


def _extra(run: RunResult, h: Histogram | None = None) -> str:
    m = run.metadata
    parts = []
    if m.git_commit:
        parts.append(f"commit {m.git_commit[:12]}{' dirty' if m.git_dirty else ''}")
    if m.topology:
        parts.append(
            "topology " + " ".join(f"{k}={v}" for k, v in m.topology.items() if not isinstance(v, (dict, list)))
        )
    if m.connector:
        parts.append(f"connector {m.connector}")
    if m.storage:
        parts.append("storage " + " ".join(f"{k}={v}" for k, v in m.storage.items() if not isinstance(v, (dict, list))))
    if h is not None:
        parts.append(f"samples {h.count}")
    return "; ".join(parts)


def _phase_metrics(phase: PhaseResult) -> list[tuple[str, Histogram]]:
    prefix = len(phase.name) + 1
    return [(name[prefix:], h) for name, h in phase.metrics().items()]


def _spread_ms(values: list[float]) -> str:
    return f"± {_ms((max(values) - min(values)) / 2.0):g}"


def entries(run: RunResult) -> list[dict[str, Any]]:
    """One entry per (ok phase, metric, stat) plus the phase wall time; units ms, lower is better."""
    label = run.metadata.label
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}

    def add(name: str, value: float, extra: str, range_: str | None = None) -> None:
        if not math.isfinite(value):
            return
        n = seen.get(name, 0) + 1
        seen[name] = n
        entry: dict[str, Any] = {"name": name if n == 1 else f"{name} #{n}", "unit": "ms", "value": value}
        if range_:
            entry["range"] = range_
        if extra:
            entry["extra"] = extra
        out.append(entry)

    runs = run.runs if len(run.runs) > 1 else []
    runs_note = f"; median of {len(runs)} runs" if runs else ""
    for phase in run.phases:
        if phase.status != "ok":
            continue
        for metric, h in _phase_metrics(phase):
            values = h.percentiles(q for _, q in STATS)
            full = f"{phase.name}/{metric}"
            for (stat, _), v in zip(STATS, values):
                per_run = run.run_values(full, stat) if runs else []
                if runs and len(per_run) == len(runs):
                    add(
                        f"{label}/{full} {stat}",
                        _ms(stats.median(per_run)),
                        _extra(run, h) + runs_note,
                        _spread_ms(per_run),
                    )
                else:
                    add(f"{label}/{full} {stat}", _ms(v), _extra(run, h))
        walls = [r.wall_ns[phase.name] for r in runs if phase.name in r.wall_ns]
        if runs and len(walls) == len(runs):
            add(f"{label}/{phase.name} wall", _ms(stats.median(walls)), _extra(run) + runs_note, _spread_ms(walls))
        elif phase.wall_ns > 0:
            add(f"{label}/{phase.name} wall", _ms(phase.wall_ns), _extra(run))
    return out


def write(run: RunResult, path: str | os.PathLike[str]) -> Path:
    """Write ``entries(run)`` as JSON; refuses NaN/Infinity rather than writing invalid JSON."""
    data = entries(run)
    bad = [e["name"] for e in data if e["unit"] not in ALLOWED_UNITS]
    if bad:
        raise ValueError(f"gab entries with a unit that is not lower-is-better: {bad}")
    return write_atomic(path, (json.dumps(data, allow_nan=False, indent=2) + "\n").encode("utf-8"))
