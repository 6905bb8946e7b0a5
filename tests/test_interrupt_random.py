"""Ctrl+C at random moments of a real `sprout run` (PostgreSQL + WebSocket) stops everything.

Each case starts `python -m sprout_harness run postgres-ephemeral-ws --verbose` with its own
throwaway PostgreSQL cluster and a private TMPDIR, waits for the verbose log line that opens
one stage (stack start, building, seeding, a phase, teardown), waits a random delay drawn for
that stage, sends one SIGINT, and checks the project's rule: exit 130, a parseable report
that says the run was interrupted, no process of the run left (descendants seen while it ran,
and anything naming its TMPDIR, like the reparented postmaster), no temp dir left.

The delays come from one seed, printed with every case: SPROUT_INTERRUPT_SEED=<n> replays a
run. Without it every session draws a new seed, so CI keeps exploring new moments.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.procs import StderrWatch, alive, descendants, mentioning

ROOT = Path(__file__).resolve().parents[1]
SEED = int(os.environ.get("SPROUT_INTERRUPT_SEED") or random.SystemRandom().randrange(1 << 32))
CONFIG = "postgres-ephemeral-ws"
BASE_SETS = ["topology.ephemeral=200", "datasets.albums=20000", "datasets.pets=5000"]
LONG_PHASE = (
    "phases=[{name: create, target: durable, params: {count: 50}}, "
    "{name: writers, target: ephemeral, params: {writers: 3, ops: 100000000}}]"
)
SHORT_PHASE = "phases=[{name: create, target: durable, params: {count: 50}}]"
MARKER_TIMEOUT_S = 90.0  # a hang guard, not an expectation
EXIT_TIMEOUT_S = 60.0

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@dataclass(frozen=True)
class Point:
    """Send SIGINT `delay` seconds (drawn from [lo, hi)) after the log line containing `marker`."""

    stage: str
    marker: str
    lo: float
    hi: float
    phases: str = LONG_PHASE


# Windows sized from a quiet run on 2 cores: stack start (initdb + server start) ~0.7 s,
# building 200 ephemerals ~0.4 s, seeding 25k rows ~0.8 s, teardown ~0.15 s. A delay that
# overshoots its stage lands in a later one before the run's end (the long phase), which the
# rule covers as well; only the teardown point needs the run to end, so it stays short.
POINTS = [
    Point("stack-start", "starting stack", 0.0, 0.6),
    Point("initdb", "starting stack", 0.02, 0.15),  # inside the cluster's start, in its thread
    Point("building", "building 1 durable", 0.0, 0.3),
    Point("seeding", "seeding albums", 0.0, 0.5),
    Point("phase", "phase writers", 0.05, 1.0),
    Point("teardown-and-reports", "tearing down", 0.0, 0.06, SHORT_PHASE),
]


def _need_postgres() -> None:
    if shutil.which("initdb") is None and not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.fail("PostgreSQL server binaries are needed: apt-get install postgresql")


@pytest.fixture
def run_tmp():
    """A private TMPDIR the postgres user can traverse: what is left in it was left by the run."""
    d = Path(tempfile.mkdtemp(prefix="sprout-interrupt-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# --- one interrupted run -----------------------------------------------------------------------


@dataclass
class Interrupted:
    returncode: int
    stderr: str
    report: dict | None
    signal_to_exit_s: float
    leftover_processes: list[str]
    leftover_files: list[str]


def interrupt_run(tmp: Path, report: Path, sets: list[str], marker: str, delay: float) -> Interrupted:
    """Start the run, SIGINT it `delay` s after `marker` shows in its log, wait for its end."""
    env = {**os.environ, "TMPDIR": str(tmp)}
    env.pop("SPROUT_PG_DSN", None)  # its own throwaway cluster: its teardown is part of the test
    cmd = [sys.executable, "-m", "sprout_harness", "run", CONFIG, "--verbose", "--json", str(report)]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    watch = StderrWatch(proc, marker)
    procs: set[tuple[int, int]] = set()
    sent = None
    try:
        deadline = time.monotonic() + MARKER_TIMEOUT_S
        while not watch.seen.wait(0.02):  # meanwhile, note every process the run starts
            procs |= descendants(proc.pid)
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no {marker!r} in the run's log (exit {proc.poll()}):\n" + "".join(watch.lines)[-3000:])
        procs |= descendants(proc.pid)
        time.sleep(delay)
        procs |= descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        deadline = sent + EXIT_TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline:
            procs |= descendants(proc.pid)  # teardown starts processes too (pg_ctl stop)
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = watch.text()
    took = time.monotonic() - sent
    data = json.loads(report.read_text()) if report.exists() else None
    time.sleep(0.1)  # let the kernel finish reaping what exited with the run
    return Interrupted(
        proc.returncode, log, data, took, alive(procs) + mentioning(str(tmp)), sorted(p.name for p in tmp.iterdir())
    )


def check_rule(r: Interrupted, where: str) -> None:
    assert r.returncode == 130, f"{where}: exit {r.returncode}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, f"{where}:\n{r.stderr[-3000:]}"
    assert r.report is not None, f"{where}: no report written\n{r.stderr[-3000:]}"
    assert r.report["status"] == "cancelled", f"{where}: report status {r.report['status']}: {r.report['reason']}"
    assert "interrupted" in r.report["reason"], f"{where}: {r.report['reason']}"
    assert r.leftover_processes == [], f"{where}: processes left behind: {r.leftover_processes}"
    assert r.leftover_files == [], f"{where}: temp dirs left behind: {r.leftover_files}"


@pytest.mark.parametrize("point", POINTS, ids=[p.stage for p in POINTS])
def test_sigint_at_a_random_moment_tears_down_and_reports(point: Point, run_tmp: Path, tmp_path: Path) -> None:
    _need_postgres()
    delay = random.Random(f"{SEED}:{point.stage}").uniform(point.lo, point.hi)
    where = f"SIGINT {delay:.3f} s after {point.marker!r} (SPROUT_INTERRUPT_SEED={SEED})"
    print(where)
    r = interrupt_run(run_tmp, tmp_path / "partial.json", [*BASE_SETS, point.phases], point.marker, delay)
    print(
        f"{where}: exit {r.returncode} {r.signal_to_exit_s:.2f} s after the signal; "
        f"phases {[(p['name'], p['status']) for p in (r.report or {}).get('phases', [])]}"
    )
    check_rule(r, where)


def test_sigint_while_seeding_a_large_dataset_exits_promptly(run_tmp: Path, tmp_path: Path) -> None:
    """A million rows (a reference config's size) take long to seed; Ctrl+C must not wait for them."""
    _need_postgres()
    delay = random.Random(f"{SEED}:large-seed").uniform(0.2, 1.0)
    where = f"SIGINT {delay:.3f} s into seeding 1M albums (SPROUT_INTERRUPT_SEED={SEED})"
    sets = ["topology.ephemeral=3", "datasets.albums=1000000", "datasets.pets=0", LONG_PHASE]
    r = interrupt_run(run_tmp, tmp_path / "partial.json", sets, "seeding albums", delay)
    print(f"{where}: exit {r.returncode} {r.signal_to_exit_s:.2f} s after the signal")
    assert r.signal_to_exit_s < EXIT_TIMEOUT_S, f"{where}: still running after {EXIT_TIMEOUT_S:g} s"
    check_rule(r, where)
    assert r.report is not None and r.report["phases"] == [], "the signal came before any phase"
