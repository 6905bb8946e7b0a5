"""Terminal presentation: the final results table and a per-phase progress bar."""

from __future__ import annotations

import math
import time
from types import TracebackType
from typing import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from sprout_harness.metrics import stats
from sprout_harness.metrics.histogram import Histogram
from sprout_harness.metrics.results import PhaseResult, RunResult

STATUS_STYLE = {"ok": "green", "failed": "bold red", "error": "bold red", "cancelled": "yellow", "unsupported": "dim"}
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0), ("p99.9", 99.9))


def format_ms(ns: float) -> str:
    """A nanosecond figure as milliseconds with about 3 significant digits; "-" when there is none."""
    if ns is None or not math.isfinite(ns):
        return "-"
    ms = ns / 1e6
    if ms >= 100:
        return f"{ms:,.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    if ms >= 0.1:
        return f"{ms:.3f}"
    return f"{ms:.4f}"


def format_rate(ops_per_s: float | None) -> str:
    """Operations per second, thousands-separated; "-" when unknown."""
    if ops_per_s is None or not math.isfinite(ops_per_s):
        return "-"
    return f"{ops_per_s:,.0f}" if ops_per_s >= 100 else f"{ops_per_s:.1f}"


def histogram_row(h: Histogram, shown: tuple[str, ...] | None = None) -> list[str]:
    """The percentile cells (ms) of one histogram, all of PERCENTILES or the `shown` ones, and max."""
    picked = [(n, q) for n, q in PERCENTILES if shown is None or n in shown]
    values = h.percentiles(q for _, q in picked) if h.count else [math.nan] * len(picked)
    return [format_ms(v) for v in values] + [format_ms(float(h.max) if h.count else math.nan)]


def metric_rows(phase: PhaseResult) -> Iterator[tuple[str, Histogram, float | None]]:
    """(metric, histogram, ops/s) per row. ops/s is a phase's operations over its wall time:
    stated on the phase's only op, or on "(all ops)" when it has several (each op's share of
    the wall time is not measured, so a per-op rate would mislead)."""
    single = len(phase.latencies) == 1
    for op, h in phase.latencies.items():
        yield op, h, phase.throughput.get(op) if single else None
    if len(phase.latencies) > 1:
        yield "(all ops)", phase.all_latencies(), (phase.ops / (phase.wall_ns / 1e9) if phase.wall_ns else None)
    for name, h in phase.lags.items():
        yield f"lag.{name}", h, None
    for name, h in phase.connector_delays.items():
        yield f"connector.{name}", h, None


def _status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def _header(run: RunResult) -> str:
    m = run.metadata
    parts = [f"run {m.run_id}"]
    if m.suite:
        parts.append(f"suite {m.suite}")
    if m.config_name:
        parts.append(f"config {m.config_name}")
    if m.stack:
        parts.append(f"stack {m.stack}")
    if m.git_commit:
        parts.append(f"commit {m.git_commit[:12]}{' (dirty)' if m.git_dirty else ''}")
    if m.topology:
        parts.append(
            "topology " + ", ".join(f"{k}={v}" for k, v in m.topology.items() if not isinstance(v, (dict, list)))
        )
    return " | ".join(parts)


def print_table(console: Console, table: Table) -> None:
    """Print `table` whole: where the output is not a terminal (a CI log, a pipe, a file)
    nothing wraps lines, so the table gets the width it needs instead of the default 80
    columns, where rich would cut the figures to "0.0…"."""
    if console.is_terminal:
        console.print(table)
        return
    need = console.measure(table, options=console.options.update(max_width=1000)).maximum
    width = console.width
    if need <= width:
        console.print(table)
        return
    console.width = need  # print's own width= cannot exceed the console's
    try:
        console.print(table)
    finally:
        console.width = width


def runs_table(run: RunResult) -> Table | None:
    """A repeated run's run-to-run spread: per metric the median of the runs' p50 and p99
    with their min..max, and the spread (max / min - 1) of each; None for a single run."""
    if len(run.runs) < 2:
        return None
    table = Table(
        title=f"run to run: {len(run.runs)} runs, each in a fresh process "
        f"(median \\[min..max] of the runs' own figures, ms)",
        title_justify="left",
    )
    for col in ("metric", "p50", "spread", "p99", "spread"):
        table.add_column(col, justify="left" if col == "metric" else "right", no_wrap=col != "metric")
    for name in run.metrics():
        cells = []
        for stat in ("p50", "p99"):
            values = run.run_values(name, stat)
            if len(values) < 2:
                cells += ["-", "-"]
                continue
            cells.append(f"{format_ms(stats.median(values))} [{format_ms(min(values))}..{format_ms(max(values))}]")
            cells.append(f"{stats.spread(values) * 100:.0f}%")
        table.add_row(name, *cells)
    return table


# Percentile columns given up, in this order, when the table is wider than the terminal:
# every figure stays whole (the JSON report has them all).
NARROWER = ((), ("p90",), ("p90", "p95"), ("p90", "p95", "p99.9"))


def results_table(run: RunResult, drop: tuple[str, ...] = ()) -> Table:
    """Per phase a heading row (name and status), then per op, lag and connector delay the
    count, ops/s and latency percentiles (ms) but those in `drop`."""
    shown = tuple(n for n, _ in PERCENTILES if n not in drop)
    table = Table(title="latency in ms (lower is better); ops/s higher is better", title_justify="left")
    table.add_column("phase / metric", justify="left", overflow="fold")
    for col in ("count", "ops/s", *shown, "max"):
        table.add_column(col, justify="right", no_wrap=True)
    blank = [""] * (len(shown) + 3)
    for phase in run.phases:
        head = Text(phase.name, style="bold")
        head.append(" ")
        head.append(_status_text(phase.status))
        table.add_row(head, *blank)
        rows = list(metric_rows(phase))
        if not rows:
            table.add_row("  -", "0", "-", *["-"] * (len(shown) + 1))
        for name, h, rate in rows:
            table.add_row(f"  {name}", f"{h.count:,}", format_rate(rate), *histogram_row(h, shown))
        table.add_section()
    return table


def fitting_results_table(run: RunResult, console: Console) -> Table:
    """The results table with as many percentile columns as the terminal has room for
    (all of them where the output is not a terminal: nothing wraps there)."""
    for drop in NARROWER:
        table = results_table(run, drop)
        if not console.is_terminal:
            return table
        if console.measure(table, options=console.options.update(max_width=1000)).minimum <= console.width:
            return table
    return table


def render(run: RunResult, console: Console | None = None, verbose: bool = False) -> None:
    """Print the final results: per phase and op the count, ops/s and latency percentiles (ms),
    lag and connector-delay rows, checks, errors and the phase and run status."""
    console = console or Console()
    console.print(_header(run), soft_wrap=not console.is_terminal)
    table = fitting_results_table(run, console)
    print_table(console, table)
    spread = runs_table(run)
    if spread is not None:
        print_table(console, spread)

    for phase in run.phases:
        lines: list[Text] = []
        wall = f"{phase.wall_ns / 1e9:.3f} s" if phase.wall_ns else "-"
        head = Text(f"{phase.name}: ")
        head.append(_status_text(phase.status))
        head.append(f"  wall {wall}")
        if phase.reason:
            head.append(f"  ({phase.reason})")
        lines.append(head)
        for c in phase.checks:
            mark = Text("  PASS " if c.ok else "  FAIL ", style="green" if c.ok else "bold red")
            mark.append(c.name + (f": {c.detail}" if c.detail else ""))
            lines.append(mark)
        for cat, e in phase.errors.items():
            line = Text(f"  error {cat}: {e.count:,}", style="red")
            lines.append(line)
            if verbose:
                lines.extend(Text(f"      {s}", style="dim") for s in e.samples)
        if phase.counters:
            lines.append(Text("  counters: " + ", ".join(f"{k}={v:,}" for k, v in phase.counters.items())))
        if verbose and phase.timeline:
            lines.append(
                Text(
                    "  timeline (s: ops, p99 ms): "
                    + "  ".join(
                        f"{p.second}: {p.ops:,}, {format_ms(p.p99_ns) if p.ops else '-'}" for p in phase.timeline
                    )
                )
            )
        if verbose and phase.peak_rss_bytes:
            lines.append(Text(f"  peak RSS {phase.peak_rss_bytes / 2**20:,.1f} MiB"))
        for line in lines:
            console.print(line, soft_wrap=not console.is_terminal)  # a log line stays one line

    summary = Text("run status: ")
    summary.append(_status_text(run.status))
    if run.reason:
        summary.append(f" ({run.reason})")
    console.print(summary)
    if verbose and run.metadata.notes:
        for note in run.metadata.notes:
            console.print(f"note: {note}")


class PhaseProgress:
    """A rich progress bar for one phase: ``with PhaseProgress(console, phase, total) as p: p.advance(n)``.

    On a terminal: a bar with done/total and the time left once the total is known (a
    spinner and a running count until then). Elsewhere (a CI log, a pipe) a live bar would
    leave blank lines behind: one line per phase when it ends instead. ``quiet=True`` makes
    every call a no-op.
    """

    def __init__(self, console: Console | None, phase: str, total: int | None = None, quiet: bool = False) -> None:
        self.phase = phase
        self.completed = 0
        self.total = total
        self._console = None if quiet else console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._started = 0.0
        if self._console is not None and self._console.is_terminal:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self._console,
                transient=True,
            )
            self._task = self._progress.add_task(phase, total=total)

    def __enter__(self) -> PhaseProgress:
        self._started = time.monotonic()
        if self._progress is not None:
            self._progress.start()
        return self

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units of work done."""
        self.completed += n
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)

    def set_total(self, total: int | None) -> None:
        """Change the expected amount of work (e.g. once it becomes known)."""
        self.total = total
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=total)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
        elif self._console is not None:
            done = f"{self.completed:,}" + (f"/{self.total:,}" if self.total is not None else "")
            self._console.print(
                f"{self.phase}: {done} in {time.monotonic() - self._started:.1f} s", soft_wrap=True, highlight=False
            )
