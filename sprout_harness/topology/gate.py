"""The pull-request gate: two builds run one config in turn, then `sprout compare`.

The base build (any `sprout` executable, e.g. a second checkout's venv) and this one each run
the config ``runs`` times, alternating in ABBA order (base, new, new, base, base, new, ...)
so that a machine which gets busier or quieter over the job affects both sides alike; every
run is a fresh process. Both sides are given the same config file and overrides, so they
measure the same workload and only the code differs. Each side's reports are merged
(`metrics.merge.merge_runs`) into one repeated report, and the two are compared.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sprout_harness.config.schema import SproutConfig
from sprout_harness.metrics.merge import merge_runs
from sprout_harness.metrics.results import RunResult
from sprout_harness.topology.repeat import Stop, run_child, sigterm_as_stop


@dataclass
class GateRuns:
    """Both sides' merged reports; ``cancelled`` when Ctrl+C/SIGTERM cut the runs short,
    ``failed`` names a run that did not finish ok (nothing is compared then)."""

    base: RunResult | None
    new: RunResult | None
    cancelled: bool = False
    failed: str = ""


def order(runs: int) -> list[str]:
    """ABBA order of ``runs`` pairs: base new new base base new ..."""
    out: list[str] = []
    for i in range(runs):
        out += ["base", "new"] if i % 2 == 0 else ["new", "base"]
    return out


def run_gate(
    cfg: SproutConfig,
    config: str,
    sets: tuple[str, ...],
    *,
    base_sprout: str,
    runs: int,
    on_event: Callable[[str], None] | None = None,
) -> GateRuns:
    """Run ``config`` (as given on the command line, with ``sets``) ``runs`` times with each
    build, alternating; ``cfg`` is its resolved form (for error results)."""
    event = on_event or (lambda line: None)
    args = [config, *(a for s in sets for a in ("--set", s))]
    commands = {"base": [base_sprout, "run", *args], "new": [sys.executable, "-m", "sprout_harness", "run", *args]}
    done: dict[str, list[RunResult]] = {"base": [], "new": []}
    with tempfile.TemporaryDirectory(prefix="sprout-gate-") as tmp, sigterm_as_stop():
        try:
            for side in order(runs):
                n = len(done[side]) + 1
                event(f"{side} run {n}/{runs}: running")
                result, interrupted = run_child(commands[side], Path(tmp), f"{side}-{n}", cfg)
                if interrupted:
                    return GateRuns(*_merged(done), cancelled=True)
                if result.status != "ok":
                    return GateRuns(*_merged(done), failed=f"{side} run {n}: {result.status}: {result.reason}")
                done[side].append(result)  # before anything else can be interrupted
                event(f"{side} run {n}/{runs}: ok")
        except (KeyboardInterrupt, Stop):  # between runs: no child is running
            return GateRuns(*_merged(done), cancelled=True)
    return GateRuns(*_merged(done))


def _merged(done: dict[str, list[RunResult]]) -> tuple[RunResult | None, RunResult | None]:
    return (merge_runs(done["base"]) if done["base"] else None, merge_runs(done["new"]) if done["new"] else None)
