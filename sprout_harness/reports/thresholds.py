"""Terminal presentation of a run's threshold outcomes: a table and a one-line verdict."""

from __future__ import annotations

from typing import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from sprout_harness.metrics.results import ThresholdOutcome
from sprout_harness.metrics.thresholds import format_value, worst
from sprout_harness.reports.console import format_ms, print_table

COLUMNS = ("rule", "stat", "bound", "worst observed", "metric / detail", "result")


def observed(outcome: ThresholdOutcome) -> tuple[str, str]:
    """(worst observed value, the metric it came from) as the tables show them."""
    w = worst(outcome.expression, outcome.values)
    if w is None:
        return "-", ""
    name, value = w
    if outcome.stat in ("count", "checks"):
        return format_value(outcome.stat, value), ("" if outcome.stat == "checks" else name)
    return f"{format_ms(value)} ms", name


def verdict(outcomes: Sequence[ThresholdOutcome]) -> str:
    """ "thresholds: all 4 held" or "thresholds: 1 of 4 crossed"."""
    crossed = sum(not o.ok for o in outcomes)
    if not crossed:
        return f"thresholds: all {len(outcomes)} held"
    return f"thresholds: {crossed} of {len(outcomes)} crossed"


def render(outcomes: Sequence[ThresholdOutcome], console: Console) -> None:
    """The outcomes table (rule, statistic, bound, worst observed value in ms, ok/CROSSED)
    and a verdict line; prints nothing when the config has no thresholds."""
    if not outcomes:
        return
    table = Table(title="thresholds", title_justify="left")
    for col in COLUMNS:
        table.add_column(
            col, justify="right" if col == "worst observed" else "left", no_wrap=col not in ("rule", "metric / detail")
        )
    for o in outcomes:
        value, metric = observed(o)
        result = Text("ok", style="green") if o.ok else Text("CROSSED", style="bold red")
        table.add_row(
            o.pattern, o.stat, o.expression, value, Text(o.detail if not o.ok else metric, style="dim"), result
        )
    print_table(console, table)
    style = "green" if all(o.ok for o in outcomes) else "bold red"
    console.print(Text(verdict(outcomes), style=style))
