"""Compare two runs metric by metric, statistically (method: docs/statistics.md).

Every latency, lag and connector delay is compared at p50 and p99 (all lower-is-better):

- **several runs a side** (``sprout run --repeat N``): the runs' own figures go through an
  exact one-sided rank test (``stats.slower_beyond``) of "new is slower than base by more
  than the threshold"; a metric regressed when that p-value is below ``alpha`` and the change
  of the medians is beyond the threshold. Improvements are the mirror test.
- **one run a side** (or too few runs for the rank test to reach ``alpha``): order-statistic
  intervals of the percentile from each side's histogram; regressed when new's lower bound
  exceeds base's upper bound times (1 + threshold). Run-to-run noise is not in these
  intervals, which the verdict says.
- a percentile with fewer than ``stats.MIN_TAIL`` samples beyond it (per run) is shown,
  marked ``few samples``, and never gates;
- a phase ``ok`` in base and ``failed``/``error``/``cancelled`` in new is a regression;
- metrics present in only one run are listed, never silently dropped.

``check_comparable`` refuses reports of different configs, stacks, topologies or datasets
(and hosts) before anything is compared: ``sprout compare`` exits 2 for those, as for a
comparison with nothing in common.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from sprout_harness.metrics import stats
from sprout_harness.metrics.histogram import Histogram
from sprout_harness.metrics.results import RunResult
from sprout_harness.reports.console import format_ms, print_table

STATS = (("p50", 50.0), ("p99", 99.0))
_BROKEN = ("failed", "error", "cancelled")
RANK, INTERVAL = "rank test", "intervals"


class NotComparable(ValueError):
    """The two reports cannot be compared (different config, host, or nothing in common)."""


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


def parse_alpha(text: str | float) -> float:
    """The significance level: a fraction in (0, 0.5], e.g. 0.01."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"significance level {text!r} is not a number; write it like 0.01") from None
    if not 0.0 < value <= 0.5 or not math.isfinite(value):
        raise ValueError(f"significance level {text!r} must be in (0, 0.5], e.g. 0.01")
    return value


@dataclass(frozen=True)
class MetricDelta:
    """One compared figure (ns). ``base_ns``/``new_ns`` are the median of the runs' figures
    (rank test) or the percentile of the merged histogram (intervals); ``change`` is
    new/base - 1; ``base_range``/``new_range`` the runs' min..max (rank test) or the
    percentile's confidence interval (intervals); ``p_value`` the rank test's (None for
    intervals). ``gated`` is False for a percentile with too few samples beyond it."""

    name: str
    base_ns: float
    new_ns: float
    change: float
    regressed: bool
    improved: bool
    method: str = INTERVAL
    p_value: float | None = None
    base_range: tuple[float, float] = (math.nan, math.nan)
    new_range: tuple[float, float] = (math.nan, math.nan)
    gated: bool = True
    note: str = ""


@dataclass
class Comparison:
    """Result of ``compare_runs``; ``regressed`` drives the exit code of ``sprout compare``."""

    threshold: float
    alpha: float = stats.DEFAULT_ALPHA
    deltas: list[MetricDelta] = field(default_factory=list)
    missing_in_base: list[str] = field(default_factory=list)
    missing_in_new: list[str] = field(default_factory=list)
    status_changes: list[str] = field(default_factory=list)  # phases that broke in the new run
    base_label: str = "base"
    new_label: str = "new"
    base_runs: int = 1
    new_runs: int = 1
    warnings: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[MetricDelta]:
        return [d for d in self.deltas if d.regressed]

    @property
    def improvements(self) -> list[MetricDelta]:
        return [d for d in self.deltas if d.improved]

    @property
    def regressed(self) -> bool:
        return bool(self.regressions or self.status_changes)

    @property
    def method(self) -> str:
        """How the figures were judged, in one line."""
        methods = {d.method for d in self.deltas}
        if methods == {RANK}:
            return (
                f"{self.base_runs} vs {self.new_runs} runs: exact one-sided Mann-Whitney U test on the runs' "
                f"figures, margin {self.threshold * 100:g}%, alpha {self.alpha:g}"
            )
        return (
            f"{self.base_runs} vs {self.new_runs} run(s): {(1 - self.alpha) * 100:g}% order-statistic "
            f"intervals of each percentile from the histograms, margin {self.threshold * 100:g}%"
            + ("; some metrics by rank test" if RANK in methods else "")
        )


# -- comparability ---------------------------------------------------------------------------

_HOST_KEYS = ("hostname", "machine", "cpu_model", "cpu_count", "cpu_affinity", "memory_bytes")


def _config_identity(run: RunResult) -> dict[str, Any]:
    """What must be equal for two runs to measure the same thing (repeat counts, thresholds
    and descriptions may differ)."""
    m = run.metadata
    cfg = m.config or {}
    return {
        "config": m.config_name,
        "stack": m.stack,
        "storage engine": (m.storage or {}).get("engine"),
        "policy": m.policy,
        "topology": m.topology,
        "datasets": m.dataset_sizes,
        "seed": m.seed,
        "workload": cfg.get("workload"),
        "phases": cfg.get("phases"),
    }


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 70 else text[:67] + "..."


def check_comparable(
    base: RunResult, new: RunResult, *, allow_mismatch: bool = False, allow_host_change: bool = False
) -> list[str]:
    """Raise ``NotComparable`` naming the first difference that makes the comparison
    meaningless; with the matching ``allow_`` flag, return it as a warning instead."""
    warnings: list[str] = []
    bi, ni = _config_identity(base), _config_identity(new)
    for key in bi:
        if bi[key] != ni[key]:
            msg = f"base and new differ in {key} ({_short(bi[key])} vs {_short(ni[key])})"
            if not allow_mismatch:
                raise NotComparable(f"{msg}; compare runs of one config, or pass --allow-mismatch")
            warnings.append(msg)
            break
    bh, nh = base.metadata.host or {}, new.metadata.host or {}
    for key in _HOST_KEYS:
        if bh.get(key) != nh.get(key):
            msg = f"base and new ran on different hosts ({key}: {_short(bh.get(key))} vs {_short(nh.get(key))})"
            if not allow_host_change:
                raise NotComparable(f"{msg}; compare runs of one machine, or pass --allow-host-change")
            warnings.append(msg)
            break
    return warnings


# -- the comparison --------------------------------------------------------------------------


def _runs_of(run: RunResult, metric: str, stat: str) -> tuple[list[float], int]:
    """The runs' own figures of one metric and the smallest per-run sample count."""
    values, counts = [], []
    for r in run.run_figures():
        figs = r.metrics.get(metric)
        if figs is not None and stat in figs:
            values.append(figs[stat])
            counts.append(int(figs.get("count", 0)))
    return values, min(counts) if counts else 0


def _rank_delta(
    name: str, q: float, bv: list[float], nv: list[float], n_min: int, threshold: float, alpha: float
) -> MetricDelta:
    b, n = stats.median(bv), stats.median(nv)
    change = stats.relative_change(b, n)
    gated = stats.estimable(n_min, q)
    slower = stats.slower_beyond(bv, nv, threshold)
    faster = stats.slower_beyond(nv, bv, threshold)
    p = slower.p_value if change >= 0 else faster.p_value
    regressed = gated and change > threshold and slower.p_value < alpha
    improved = gated and change < -threshold and faster.p_value < alpha
    note = "" if gated else f"few samples: {stats.tail_samples(n_min, q)} beyond {q:g}% in a run"
    return MetricDelta(
        name, b, n, change, regressed, improved, RANK, p, (min(bv), max(bv)), (min(nv), max(nv)), gated, note
    )


def _interval_delta(name: str, q: float, bh: Histogram, nh: Histogram, threshold: float, alpha: float) -> MetricDelta:
    b, n = bh.percentile(q), nh.percentile(q)
    change = stats.relative_change(b, n)
    bi = stats.quantile_interval(bh, q, 1.0 - alpha)
    ni = stats.quantile_interval(nh, q, 1.0 - alpha)
    gated = stats.estimable(min(bh.count, nh.count), q) and bi.bounded and ni.bounded
    regressed = gated and ni.lo > bi.hi * (1.0 + threshold)
    improved = gated and ni.hi * (1.0 + threshold) < bi.lo
    note = "" if gated else f"few samples: {stats.tail_samples(min(bh.count, nh.count), q)} beyond {q:g}%"
    return MetricDelta(
        name, b, n, change, regressed, improved, INTERVAL, None, (bi.lo, bi.hi), (ni.lo, ni.hi), gated, note
    )


LOAD_GAP = 0.2
"""How much more of the CPU other processes may take on one side's runs than on the other's
before a regression between them is put down to the machine rather than the code."""


def load_difference(base: RunResult, new: RunResult) -> str | None:
    """Why the two sides ran on machines of different load, or None: every run of one side had
    other processes take more of the CPU than every run of the other, by more than `LOAD_GAP`
    between the medians (each run records `other_cpu_share`)."""
    b = [f.other_cpu_share for f in base.run_figures() if f.other_cpu_share is not None]
    n = [f.other_cpu_share for f in new.run_figures() if f.other_cpu_share is not None]
    if not b or not n:
        return None
    mb, mn = statistics.median(b), statistics.median(n)
    apart = min(n) > max(b) or min(b) > max(n)
    if not apart or abs(mn - mb) <= LOAD_GAP:
        return None
    busier = "new" if mn > mb else "base"
    return (
        f"other processes took {mn:.0%} of the CPU while new ran and {mb:.0%} while base ran: a slowdown "
        f"seen only then can be the machine, not the code (the {busier} side ran busier in every run)"
    )


def compare_runs(base: RunResult, new: RunResult, threshold: float, alpha: float = stats.DEFAULT_ALPHA) -> Comparison:
    """Per-metric p50/p99 verdicts of ``new`` against ``base``; see the module doc."""
    if not math.isfinite(threshold) or threshold < 0:
        raise ValueError(f"threshold must be a finite fraction >= 0 (0.10 for 10%), got {threshold!r}")
    if not 0.0 < alpha <= 0.5:
        raise ValueError(f"alpha must be in (0, 0.5], got {alpha!r}")
    nb, nn = len(base.run_figures()), len(new.run_figures())
    cmp = Comparison(
        threshold=threshold,
        alpha=alpha,
        base_label=base.metadata.run_id,
        new_label=new.metadata.run_id,
        base_runs=nb,
        new_runs=nn,
    )
    rank_ok = nb >= 2 and nn >= 2 and stats.min_p_value(nb, nn) <= alpha
    if nb == 1 or nn == 1:
        cmp.warnings.append(
            "one run on a side: the intervals hold the samples' noise, not the run-to-run "
            f"noise; gate on repeated runs (sprout run --repeat {stats.runs_needed(alpha)})"
        )
    elif not rank_ok:
        cmp.warnings.append(
            f"{nb} and {nn} runs cannot reach alpha {alpha:g} with a rank test (it needs "
            f"{stats.runs_needed(alpha)} a side); judged by intervals of the merged histograms"
        )
    bm, nm = base.metrics(), new.metrics()
    for metric, bh in bm.items():
        nh = nm.get(metric)
        if nh is None:
            cmp.missing_in_new.append(metric)
            continue
        for stat, q in STATS:
            name = f"{metric} {stat}"
            bv, b_min = _runs_of(base, metric, stat)
            nv, n_min = _runs_of(new, metric, stat)
            if rank_ok and len(bv) == nb and len(nv) == nn:
                cmp.deltas.append(_rank_delta(name, q, bv, nv, min(b_min, n_min), threshold, alpha))
            else:
                cmp.deltas.append(_interval_delta(name, q, bh, nh, threshold, alpha))
    cmp.missing_in_base = [name for name in nm if name not in bm]

    base_status = {p.name: p.status for p in base.phases}
    for p in new.phases:
        was = base_status.get(p.name)
        if was == "ok" and p.status in _BROKEN:
            cmp.status_changes.append(f"{p.name}: ok -> {p.status}" + (f" ({p.reason})" if p.reason else ""))
    return cmp


# -- presentation ----------------------------------------------------------------------------


def format_change(change: float) -> str:
    """A relative change as a signed percentage ("n/a" when there is none)."""
    return "n/a" if not math.isfinite(change) else f"{change * 100:+.1f}%"


def evidence(d: MetricDelta) -> str:
    """The row's statistical evidence: the p-value, or both intervals (ms)."""
    if d.method == RANK and d.p_value is not None:
        return f"p={d.p_value:.3g}"

    def iv(r: tuple[float, float]) -> str:
        hi = "inf" if not math.isfinite(r[1]) else format_ms(r[1])
        return f"{format_ms(r[0])}..{hi}"

    return f"{iv(d.base_range)} vs {iv(d.new_range)}"


def verdict_text(d: MetricDelta) -> Text:
    if d.regressed:
        return Text("REGRESSED", style="bold red")
    if d.improved:
        return Text("improved", style="green")
    if not d.gated:
        return Text("few samples", style="yellow")
    return Text("same", style="dim")


def render(comparison: Comparison, console: Console | None = None) -> None:
    """Print the comparison table, the missing metrics and the verdict."""
    console = console or Console()
    c = comparison
    table = Table(
        title=f"{c.base_label} -> {c.new_label}: latency in ms, lower is better (threshold {c.threshold * 100:g}%)",
        title_justify="left",
        caption=c.method,
        caption_justify="left",
    )
    for col in ("metric", "base", "new", "change", "evidence", ""):
        table.add_column(col, justify="left" if col in ("metric", "") else "right")
    for d in c.deltas:
        table.add_row(
            d.name, format_ms(d.base_ns), format_ms(d.new_ns), format_change(d.change), evidence(d), verdict_text(d)
        )
    print_table(console, table)
    for w in c.warnings:
        console.print(Text(f"note: {w}", style="yellow"))
    for change in c.status_changes:
        console.print(Text(f"phase broke: {change}", style="bold red"))
    if c.missing_in_base:
        console.print("missing in base: " + ", ".join(c.missing_in_base))
    if c.missing_in_new:
        console.print("missing in new: " + ", ".join(c.missing_in_new))
    ungated = sum(1 for d in c.deltas if not d.gated)
    tail = f"{len(c.deltas)} compared" + (f", {ungated} with too few samples to gate" if ungated else "")
    if c.regressed:
        console.print(
            Text(
                f"regressed: {len(c.regressions)} metric(s) significantly beyond +{c.threshold * 100:g}%"
                + (f", {len(c.status_changes)} phase(s) broke" if c.status_changes else "")
                + f" ({tail})",
                style="bold red",
            )
        )
    else:
        console.print(
            Text(
                f"no significant regression beyond +{c.threshold * 100:g}% ({len(c.improvements)} improved, {tail})",
                style="green",
            )
        )
