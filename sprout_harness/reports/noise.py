"""`sprout noise` output: each figure's run-to-run noise and the gate it supports."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from sprout_harness.metrics.noise import FALSE_ALARM_TARGET, POWER, NoiseRow, Suggestion, detectable_slowdown
from sprout_harness.reports.console import format_ms, print_table


def render(rows: list[NoiseRow], s: Suggestion, runs: int, alpha: float, console: Console) -> None:
    at = s.at_threshold
    table = Table(
        title=f"run-to-run noise over {runs} runs (ms; spread = max / min - 1; sigma of the log "
        f"values, upper 90% bound)",
        title_justify="left",
    )
    thresholds = [at] if s.threshold == at else [at, s.threshold]
    for col in (
        "metric",
        "stat",
        "median",
        "min..max",
        "spread",
        "sigma",
        *(f"caught at {t * 100:g}%" for t in thresholds),
    ):
        table.add_column(col, justify="left" if col in ("metric", "stat") else "right", no_wrap=col != "metric")
    for r in sorted(rows, key=lambda r: (not r.gated, -r.sigma_hi)):
        cells: list[str | Text] = [
            r.metric,
            r.stat,
            format_ms(r.median_ns),
            f"{format_ms(r.min_ns)}..{format_ms(r.max_ns)}",
            f"{r.spread * 100:.1f}%",
            f"{r.sigma_hi * 100:.1f}%",
        ]
        if r.gated:
            for t in thresholds:
                d = detectable_slowdown(r.sigma_hi, t, s.repeat, alpha)
                cells.append(f">= {d * 100:.0f}%" if d < 10 else "never")
        else:
            cells += [Text("few samples", style="yellow")] + [Text("-", style="dim")] * (len(thresholds) - 1)
        table.add_row(*cells)
    print_table(console, table)
    console.print(
        f"model: each gated figure log-normal with the sigma shown; gate = sprout compare of two "
        f"--repeat {s.repeat} reports at alpha {alpha:g}; 'caught' = flagged with probability "
        f">= {POWER:.0%}; drift between the two sides is not modelled"
    )
    if not s.gated:
        console.print(Text("no figure has enough samples to gate; raise the phases' operation counts", style="yellow"))
        return
    console.print(
        f"at --threshold {at * 100:g}%: a false alarm in {s.false_alarms_at:.1%} of comparisons "
        f"of unchanged code ({s.gated} gated figures)"
    )
    console.print(
        Text(
            f"suggested: sprout run CONFIG --repeat {s.repeat}, sprout compare --threshold "
            f"{s.threshold * 100:g}% --alpha {alpha:g} (false alarms in {s.false_alarms:.1%} of "
            f"comparisons, target <= {FALSE_ALARM_TARGET:.0%})",
            style="bold",
        )
    )
