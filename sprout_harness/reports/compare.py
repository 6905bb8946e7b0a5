"""Compare two runs metric by metric: p50/p99 of every latency, lag and connector delay.

All compared figures are lower-is-better. A metric regressed when ``new > base * (1 + threshold)``
and improved when ``new < base * (1 - threshold)``. A phase that was ``ok`` in the base run and
``failed``/``error``/``cancelled`` in the new one is a regression too. Metrics present in only one
run are listed, never silently dropped, and do not by themselves count as a regression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table
from rich.text import Text

from sprout_harness.metrics.histogram import Histogram
from sprout_harness.metrics.results import PhaseResult, RunResult
from sprout_harness.reports.console import format_ms, print_table

STATS = (("p50", 50.0), ("p99", 99.0))
_BROKEN = ("failed", "error", "cancelled")


def parse_threshold(text: str | float) -> float:
    """``"10%"`` -> 0.10, ``"0.1"`` -> 0.10. Bare numbers >= 1 are refused as ambiguous."""
    if isinstance(text, (int, float)):
        value, s = float(text), str(text)
    else:
        s = text.strip()
        try:
            value = float(s[:-1]) / 100.0 if s.endswith("%") else float(s)
        except ValueError:
            raise ValueError(f"threshold {text!r} is not a number; write it like 10% or 0.10") from None
        if not s.endswith("%") and value >= 1.0:
            raise ValueError(f"threshold {text!r} is ambiguous; write {s}% for percent or a fraction like 0.10")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"threshold {text!r} must be a finite, non-negative amount like 10% or 0.10")
    return value


@dataclass(frozen=True)
class MetricDelta:
    """One compared figure (ns): ``change`` is new/base - 1 (inf when base is 0 and new is not)."""

    name: str
    base_ns: float
    new_ns: float
    change: float
    regressed: bool
    improved: bool


@dataclass
class Comparison:
    """Result of ``compare_runs``; ``regressed`` drives the exit code of ``sprout compare``."""

    threshold: float
    deltas: list[MetricDelta] = field(default_factory=list)
    missing_in_base: list[str] = field(default_factory=list)
    missing_in_new: list[str] = field(default_factory=list)
    status_changes: list[str] = field(default_factory=list)   # phases that broke in the new run
    base_label: str = "base"
    new_label: str = "new"

    @property
    def regressions(self) -> list[MetricDelta]:
        return [d for d in self.deltas if d.regressed]

    @property
    def improvements(self) -> list[MetricDelta]:
        return [d for d in self.deltas if d.improved]

    @property
    def regressed(self) -> bool:
        return bool(self.regressions or self.status_changes)


def _metrics(phase: PhaseResult) -> dict[str, Histogram]:
    out: dict[str, Histogram] = {}
    for op, h in phase.latencies.items():
        out[f"{phase.name}/{op}"] = h
    for n, h in phase.lags.items():
        out[f"{phase.name}/lag.{n}"] = h
    for n, h in phase.connector_delays.items():
        out[f"{phase.name}/connector.{n}"] = h
    return {k: h for k, h in out.items() if h.count}


def _run_metrics(run: RunResult) -> dict[str, Histogram]:
    out: dict[str, Histogram] = {}
    for p in run.phases:
        out.update(_metrics(p))
    return out


def compare_runs(base: RunResult, new: RunResult, threshold: float) -> Comparison:
    """Per-metric p50/p99 deltas of ``new`` against ``base``; see the module doc for the rules."""
    if not math.isfinite(threshold) or threshold < 0:
        raise ValueError(f"threshold must be a finite fraction >= 0 (0.10 for 10%), got {threshold!r}")
    cmp = Comparison(threshold=threshold, base_label=base.metadata.run_id, new_label=new.metadata.run_id)
    bm, nm = _run_metrics(base), _run_metrics(new)
    for name, bh in bm.items():
        nh = nm.get(name)
        if nh is None:
            cmp.missing_in_new.append(name)
            continue
        for (stat, q), b, n in zip(STATS, bh.percentiles(q for _, q in STATS), nh.percentiles(q for _, q in STATS)):
            if b > 0:
                change = n / b - 1.0
            else:
                change = 0.0 if n == 0 else math.inf
            cmp.deltas.append(MetricDelta(
                name=f"{name} {stat}", base_ns=b, new_ns=n, change=change,
                regressed=n > b * (1.0 + threshold), improved=n < b * (1.0 - threshold),
            ))
    cmp.missing_in_base = [name for name in nm if name not in bm]

    base_status = {p.name: p.status for p in base.phases}
    for p in new.phases:
        was = base_status.get(p.name)
        if was == "ok" and p.status in _BROKEN:
            cmp.status_changes.append(f"{p.name}: ok -> {p.status}" + (f" ({p.reason})" if p.reason else ""))
    return cmp


def _pct(change: float) -> str:
    return "n/a" if not math.isfinite(change) else f"{change * 100:+.1f}%"


def render(comparison: Comparison, console: Console | None = None) -> None:
    """Print the comparison table, the missing metrics and the verdict."""
    console = console or Console()
    c = comparison
    table = Table(title=f"{c.base_label} -> {c.new_label}: latency in ms, lower is better "
                        f"(threshold {c.threshold * 100:g}%)", title_justify="left")
    for col, j in (("metric", "left"), ("base", "right"), ("new", "right"), ("change", "right"), ("", "left")):
        table.add_column(col, justify=j)
    for d in c.deltas:
        verdict = (Text("REGRESSED", style="bold red") if d.regressed
                   else Text("improved", style="green") if d.improved else Text("same", style="dim"))
        table.add_row(d.name, format_ms(d.base_ns), format_ms(d.new_ns), _pct(d.change), verdict)
    print_table(console, table)
    for change in c.status_changes:
        console.print(Text(f"phase broke: {change}", style="bold red"))
    if c.missing_in_base:
        console.print("missing in base: " + ", ".join(c.missing_in_base))
    if c.missing_in_new:
        console.print("missing in new: " + ", ".join(c.missing_in_new))
    if c.regressed:
        console.print(Text(f"regressed: {len(c.regressions)} metric(s) beyond +{c.threshold * 100:g}%"
                           + (f", {len(c.status_changes)} phase(s) broke" if c.status_changes else ""),
                           style="bold red"))
    else:
        console.print(Text(f"no regression beyond +{c.threshold * 100:g}% "
                           f"({len(c.improvements)} improved, {len(c.deltas)} compared)", style="green"))
