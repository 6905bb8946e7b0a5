"""CSV files of a run, for spreadsheets and CI systems that plot columns.

``metrics.csv``: one row per figure per phase (latency per op, lag, connector delay): count,
ops/s where the console states it, and the percentiles in milliseconds. ``counters.csv``:
one row per phase counter. Both carry the run id and config label so files from several
runs concatenate.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from sprout_harness.metrics.results import RunResult

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0), ("p999", 99.9))
METRIC_COLUMNS = [
    "run_id",
    "config",
    "phase",
    "status",
    "kind",
    "metric",
    "count",
    "ops_per_s",
    *(f"{n}_ms" for n, _ in PERCENTILES),
    "max_ms",
    "mean_ms",
]
COUNTER_COLUMNS = ["run_id", "config", "phase", "status", "counter", "value"]


def _ms(ns: float) -> str:
    return "" if not math.isfinite(ns) else f"{ns / 1e6:.6g}"


def metric_rows(run: RunResult) -> list[dict[str, Any]]:
    """The rows of metrics.csv (see the module docstring)."""
    rows = []
    for p in run.phases:
        single = len(p.latencies) == 1
        groups = (("latency", p.latencies), ("lag", p.lags), ("connector", p.connector_delays))
        for kind, hists in groups:
            for name, h in hists.items():
                if not h.count:
                    continue
                rate = p.throughput.get(name) if kind == "latency" and single else None
                row: dict[str, Any] = {
                    "run_id": run.metadata.run_id,
                    "config": run.metadata.label,
                    "phase": p.name,
                    "status": p.status,
                    "kind": kind,
                    "metric": name,
                    "count": h.count,
                    "ops_per_s": "" if rate is None else f"{rate:.6g}",
                }
                for (n, _), v in zip(PERCENTILES, h.percentiles(q for _, q in PERCENTILES), strict=True):
                    row[f"{n}_ms"] = _ms(v)
                row["max_ms"] = _ms(float(h.max))
                row["mean_ms"] = _ms(h.mean)
                rows.append(row)
    return rows


def write(run: RunResult, directory: str | Path) -> list[Path]:
    """Write metrics.csv and counters.csv into ``directory`` (created); returns both paths."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    metrics, counters = d / "metrics.csv", d / "counters.csv"
    with metrics.open("w", newline="") as f:
        w = csv.DictWriter(f, METRIC_COLUMNS)
        w.writeheader()
        w.writerows(metric_rows(run))
    with counters.open("w", newline="") as f:
        w = csv.DictWriter(f, COUNTER_COLUMNS)
        w.writeheader()
        for p in run.phases:
            for name, value in p.counters.items():
                w.writerow(
                    {
                        "run_id": run.metadata.run_id,
                        "config": run.metadata.label,
                        "phase": p.name,
                        "status": p.status,
                        "counter": name,
                        "value": value,
                    }
                )
    return [metrics, counters]
