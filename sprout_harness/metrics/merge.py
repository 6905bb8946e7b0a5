"""Merge the results of repeated runs of one config into one `RunResult`.

The histograms of a phase are merged exactly (same layout), counters and error counts
summed; each run's own figures are kept in `RunResult.runs`, which is what `sprout compare`
tests. A phase's status is the worst any run gave it; its wall time and per-op throughput
the median over the runs; its timeline and `extra` the first run's.
"""

from __future__ import annotations

import statistics
from typing import Sequence

from sprout_harness.metrics.histogram import Histogram
from sprout_harness.metrics.results import (
    Check,
    ErrorStat,
    PhaseResult,
    RunFigures,
    RunResult,
    new_run_id,
    overall_status,
)

_RUNS_NOTE = "merged: "
_WORST = ("error", "cancelled", "failed", "ok", "unsupported")  # worst first


def _merge_hists(target: dict[str, Histogram], source: dict[str, Histogram]) -> None:
    for name, h in source.items():
        if name in target:
            target[name].merge(h)
        else:
            target[name] = h.copy()


def _merge_phase(runs: Sequence[tuple[int, PhaseResult]]) -> PhaseResult:
    first = runs[0][1]
    out = PhaseResult(
        name=first.name,
        started_at=first.started_at,
        ended_at=runs[-1][1].ended_at,
        timeline=list(first.timeline),
        extra=dict(first.extra),
    )
    statuses = [p.status for _, p in runs]
    out.status = min(statuses, key=_WORST.index)  # type: ignore[assignment]
    reasons = [f"run {i + 1}: {p.reason}" for i, p in runs if p.reason and p.status == out.status]
    out.reason = "; ".join(reasons[:3]) or None
    checks: dict[str, Check] = {}
    for i, p in runs:
        _merge_hists(out.latencies, p.latencies)
        _merge_hists(out.lags, p.lags)
        _merge_hists(out.connector_delays, p.connector_delays)
        for k, v in p.counters.items():
            out.counters[k] = out.counters.get(k, 0) + v
        for k, e in p.errors.items():
            agg = out.errors.setdefault(k, ErrorStat())
            agg.count += e.count
            agg.samples = (agg.samples + list(e.samples))[-5:]
        for c in p.checks:
            seen = checks.get(c.name)
            if seen is None or (seen.ok and not c.ok):
                checks[c.name] = c if c.ok else Check(c.name, False, f"run {i + 1}: {c.detail}")
        out.peak_rss_bytes = max(out.peak_rss_bytes, p.peak_rss_bytes)
    out.checks = list(checks.values())
    out.wall_ns = int(statistics.median(p.wall_ns for _, p in runs))
    ops = {op for _, p in runs for op in p.throughput}
    out.throughput = {op: float(statistics.median(p.throughput.get(op, 0.0) for _, p in runs)) for op in ops}
    out.extra["runs"] = len(runs)
    return out


def merge_runs(results: Sequence[RunResult], warmup_runs: int = 0) -> RunResult:
    """One result of `results` (runs of one config, in order; each may itself hold several
    runs): merged phases, every run's own figures, metadata from the first with the span of
    all of them."""
    if not results:
        raise ValueError("merge_runs needs at least one run")
    first, last = results[0], results[-1]
    meta = first.metadata
    merged_meta = type(meta).from_dict(meta.to_dict())
    merged_meta.run_id = new_run_id()
    merged_meta.started_at, merged_meta.ended_at = meta.started_at, last.metadata.ended_at
    for r in results[1:]:
        merged_meta.notes += [n for n in r.metadata.notes if n not in merged_meta.notes]
    merged_meta.notes = [n for n in merged_meta.notes if not n.startswith(_RUNS_NOTE)]
    count = sum(len(r.run_figures()) for r in results)
    merged_meta.notes.append(
        f"{_RUNS_NOTE}{count} runs, each in a fresh process"
        + (f", after {warmup_runs} discarded warm-up run(s)" if warmup_runs else "")
    )
    by_name: dict[str, list[tuple[int, PhaseResult]]] = {}
    for i, r in enumerate(results):
        for p in r.phases:
            by_name.setdefault(p.name, []).append((i, p))
    phases = [_merge_phase(runs) for runs in by_name.values()]
    figures = [RunFigures.from_dict(f.to_dict()) for r in results for f in r.run_figures()]
    for i, fig in enumerate(figures):
        fig.index = i
    out = RunResult(
        metadata=merged_meta, phases=phases, warmup_runs=warmup_runs + sum(r.warmup_runs for r in results), runs=figures
    )
    status, reason = overall_status(phases)
    broken = [(i, r) for i, r in enumerate(results) if r.status != "ok"]
    if broken and status == "ok":  # a run that failed outside its phases (set-up, a crash)
        i, r = broken[0]
        status, reason = r.status, f"run {i + 1}: {r.reason}"
    out.status, out.reason = status, reason
    return out
