"""Repeated runs: N independent runs of one config, each in a fresh process.

As pyperf spawns worker processes, every run starts from a cold interpreter, its own
topology and its own temp dirs, so what one run leaves behind (caches, heap, a slow
teardown) cannot leak into the next. Optional warm-up runs go first and are discarded.
Each child is `python -m sprout_harness run <resolved config> --quiet --json <file>`; the
parent merges the reports (`metrics.merge.merge_runs`), keeps every run's own figures and
writes the merged report.

Ctrl+C or SIGTERM: the running child gets one SIGINT (it tears down and writes its partial
report), the runs finished so far and that partial one are merged into a `cancelled` result,
and the temp dir is removed.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Callable, Iterator

import yaml

from sprout_harness.config.schema import SproutConfig
from sprout_harness.contracts.errors import SproutError
from sprout_harness.metrics.merge import merge_runs
from sprout_harness.metrics.results import RunResult, load_run
from sprout_harness.topology.runner import build_metadata

CHILD_STOP_TIMEOUT_S = 90.0  # a child's teardown is bounded by the runner (30 s per part)


class Stop(Exception):
    """SIGTERM in the parent: stop like Ctrl+C."""


@contextlib.contextmanager
def sigterm_as_stop() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Stop()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave SIGTERM alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while a child starts, then raise them (KeyboardInterrupt,
    Stop): one raised inside ``Popen`` would leave the child running in its own session
    with nothing left to stop it."""
    got: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        got.append(signum)

    try:
        previous = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: the signals are not ours to hold
        yield
        return
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if got:
        raise KeyboardInterrupt() if got[0] == signal.SIGINT else Stop()


def child_config(cfg: SproutConfig) -> dict[str, object]:
    """The resolved config one child runs: a single run, no thresholds (the parent judges
    those on the merged result)."""
    data = cfg.to_dict()
    data["runner"] = {**data["runner"], "repeat": 1, "warmup": 0}
    data["thresholds"] = {}
    return data


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:300] if lines else ""


def _failed_result(cfg: SproutConfig, reason: str) -> RunResult:
    return RunResult(metadata=build_metadata(cfg), status="error", reason=reason)


def run_child(cmd: list[str], workdir: Path, label: str, cfg: SproutConfig) -> tuple[RunResult, bool]:
    """Run ``cmd + ["--quiet", "--json", <workdir>/<label>.json]`` (a `sprout run`) as a child
    process and read its report; (the report, or an error result naming why there is none;
    whether Ctrl+C/SIGTERM interrupted it). Its output goes to ``<label>.log``."""
    out = workdir / f"{label}.json"
    log = workdir / f"{label}.log"
    interrupted = False
    with log.open("wb") as sink:
        # Its own session: a terminal's Ctrl+C reaches only the parent, which passes on
        # exactly one SIGINT and decides how long to wait for the child's teardown.
        try:
            with _signals_deferred():
                child = subprocess.Popen(
                    [*cmd, "--quiet", "--json", str(out)],
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            child.wait()
        except (KeyboardInterrupt, Stop):
            interrupted = True
            _stop_child(child)
    if out.exists():
        try:
            return load_run(out), interrupted
        except (OSError, ValueError) as exc:
            return _failed_result(cfg, f"{label}: unreadable report ({exc})"), interrupted
    why = _last_line(log) or "no report written"
    return _failed_result(cfg, f"{label}: {why}"), interrupted


def _stop_child(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGINT)
    while True:
        try:
            child.wait(timeout=CHILD_STOP_TIMEOUT_S)
            return
        except subprocess.TimeoutExpired:
            child.kill()
        except (KeyboardInterrupt, Stop):
            continue  # a second Ctrl+C: keep waiting for the teardown


class RepeatedRun:
    """``repeat`` measured runs after ``warmup`` discarded ones; ``on_event`` receives one
    line per run started / finished."""

    def __init__(
        self, cfg: SproutConfig, *, repeat: int, warmup: int = 0, on_event: Callable[[str], None] | None = None
    ) -> None:
        self.cfg = cfg
        self.repeat = repeat
        self.warmup = warmup
        self.on_event = on_event or (lambda line: None)

    def _spawn(self, workdir: Path, label: str, cfg_path: Path) -> tuple[RunResult, bool]:
        """Run one child; (its report, whether the run was interrupted)."""
        cmd = [sys.executable, "-m", "sprout_harness", "run", str(cfg_path)]
        return run_child(cmd, workdir, label, self.cfg)

    def run(self) -> RunResult:
        """Every run in turn; a warm-up run that fails stops the whole thing. Ctrl+C or
        SIGTERM at any moment, also between two runs, gives the runs finished so far."""
        measured: list[RunResult] = []
        with tempfile.TemporaryDirectory(prefix="sprout-repeat-") as tmp, sigterm_as_stop():
            try:
                return self._runs(Path(tmp), measured)
            except (KeyboardInterrupt, Stop):  # between runs: no child is running
                return self._cancelled(measured)

    def _runs(self, workdir: Path, measured: list[RunResult]) -> RunResult:
        """The runs, appending each measured one to ``measured`` as it finishes."""
        total = self.warmup + self.repeat
        cfg_path = workdir / "config.yaml"
        cfg_path.write_text(yaml.safe_dump(child_config(self.cfg), sort_keys=False))
        for k in range(total):
            warm = k < self.warmup
            label = f"warmup-{k + 1}" if warm else f"run-{k - self.warmup + 1}"
            title = f"warm-up {k + 1}/{self.warmup}" if warm else f"run {k - self.warmup + 1}/{self.repeat}"
            t0 = time.monotonic()
            self.on_event(f"{title}: running")
            result, interrupted = self._spawn(workdir, label, cfg_path)
            took = time.monotonic() - t0
            if interrupted:
                if not warm and result.phases:
                    measured.append(result)
                return self._cancelled(measured)
            if not warm:
                measured.append(result)  # before anything else can be interrupted
            self.on_event(
                f"{title}: {result.status} in {took:.1f} s" + (f" ({result.reason})" if result.reason else "")
            )
            if warm and result.status != "ok":
                failed = _failed_result(self.cfg, f"warm-up run {k + 1} {result.status}: {result.reason}")
                return failed if not measured else merge_runs(measured, self.warmup)
        return merge_runs(measured, self.warmup)

    def _cancelled(self, measured: list[RunResult]) -> RunResult:
        if measured:
            out = merge_runs(measured, self.warmup)
        else:
            out = RunResult(metadata=build_metadata(self.cfg))
        out.status = "cancelled"
        out.reason = f"interrupted after {len(measured)} of {self.repeat} run(s); partial results"
        return out


def run_repeated(
    cfg: SproutConfig, *, repeat: int, warmup: int = 0, on_event: Callable[[str], None] | None = None
) -> RunResult:
    """`RepeatedRun(...).run()`; never raises for a failed run (see the result's status)."""
    if repeat < 1:
        raise SproutError(f"repeat must be >= 1, got {repeat}")
    return RepeatedRun(cfg, repeat=repeat, warmup=warmup, on_event=on_event).run()
