"""`sprout run --repeat` and `sprout compare` end to end on real runs of the LevelDB
reference config cut down to seconds: repeated reports, the gate's exit codes (0 same,
1 regressed, 2 could not compare), option errors, and Ctrl+C / SIGTERM during repeats.

One module fixture makes the real reports (two repeated runs and one single run of a
different dataset, side by side so a busy machine hits them alike); every compare case
reuses them, through copies edited with the report API."""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from sprout_harness.config import load_config
from sprout_harness.metrics import load_run
from sprout_harness.reports import json_report
from sprout_harness.topology.repeat import run_repeated
from support.cli import SMALL, invoke, one_error_line, sets
from support.procs import pids_mentioning
from support.runs import slowed

ROOT = Path(__file__).resolve().parents[1]
SPROUT_RUN = [sys.executable, "-m", "sprout_harness", "run", "configs/leveldb-local.yaml", *sets(SMALL)]
# Same-commit repeats must pass; the tiny config's few-sample metrics move by tens of percent
# run to run on a shared machine, so the gate here uses 25% (3x slower is far beyond it).
THRESHOLD = "25%"


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("gate")
    jobs = {
        "base": [
            *SPROUT_RUN,
            "--repeat",
            "5",
            "--warmup",
            "1",
            "--json",
            str(d / "base.json"),
            "--gab",
            str(d / "base-gab.json"),
        ],
        "same": [*SPROUT_RUN, "--repeat", "5", "--json", str(d / "same.json")],
        "other": [*SPROUT_RUN, "--set", "datasets.albums=250", "--json", str(d / "other.json")],
    }
    procs = {
        k: subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for k, cmd in jobs.items()
    }
    out: dict[str, Any] = {"dir": d}
    for k, p in procs.items():
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, (k, stdout[-3000:], stderr[-3000:])
        assert "Traceback" not in stderr
        out[k] = d / f"{k}.json"
        out[f"{k}-stdout"], out[f"{k}-stderr"] = stdout, stderr
    return out


def compare(*args: Any) -> Any:
    return invoke("compare", *map(str, args), "--threshold", THRESHOLD)


def slowed_copy(src: Path, dst: Path, factor: int = 3) -> Path:
    """``src`` with every sample recorded ``factor`` times slower (``support.runs.slowed``)."""
    run = load_run(src)
    return json_report.write(slowed(run, factor, run_id=run.metadata.run_id), dst)


def edited(src: Path, dst: Path, edit: Any) -> Path:
    data = json.loads(src.read_text())
    edit(data)
    dst.write_text(json.dumps(data))
    return dst


# -- the repeated report ----------------------------------------------------------------------


def test_repeated_report_holds_every_run_merged(reports: dict[str, Any]) -> None:
    base = load_run(reports["base"])
    assert base.status == "ok" and len(base.runs) == 5 and base.warmup_runs == 1
    assert [r.index for r in base.runs] == [0, 1, 2, 3, 4] and len({r.run_id for r in base.runs}) == 5
    assert all(r.status == "ok" for r in base.runs)
    assert load_run(reports["same"]).warmup_runs == 0
    assert any("5 runs, each in a fresh process, after 1 discarded warm-up run" in n for n in base.metadata.notes)
    metrics = base.metrics()
    assert metrics
    for name, h in metrics.items():
        counts = [r.metrics[name]["count"] for r in base.runs]
        assert h.count == sum(counts), name  # merged = every run's samples
        assert h.max == max(r.metrics[name]["max"] for r in base.runs), name
    # The console shows the run-to-run table; stderr the runs as they went.
    assert "run to run: 5 runs, each in a fresh process" in reports["base-stdout"]
    assert "fetch@durable/get" in reports["base-stdout"].split("run to run:")[1]
    for line in ("warm-up 1/1: ok", "run 1/5: ok", "run 5/5: ok"):
        assert line in reports["base-stderr"]


def test_gab_entries_of_a_repeated_run_are_medians_with_a_range(reports: dict[str, Any]) -> None:
    base = load_run(reports["base"])
    entries = {e["name"]: e for e in json.loads((reports["dir"] / "base-gab.json").read_text())}
    assert entries and all("range" in e and e["range"].startswith("± ") for e in entries.values())
    assert all(e["extra"].endswith("median of 5 runs") for e in entries.values())
    e = entries["leveldb-local/fetch@durable/get p50"]
    figs = [r.metrics["fetch@durable/get"]["p50"] for r in base.runs]
    assert e["value"] == pytest.approx(statistics.median(figs) / 1e6, abs=1e-6)
    assert float(e["range"][2:]) == pytest.approx((max(figs) - min(figs)) / 2e6, abs=1e-6)


# -- compare: the exit codes ------------------------------------------------------------------


def test_same_commit_repeats_do_not_regress(reports: dict[str, Any]) -> None:
    r = compare(reports["base"], reports["same"])
    assert r.exit_code == 0, r.stdout
    assert "5 vs 5 runs: exact one-sided Mann-Whitney U test" in r.stdout
    assert "REGRESSED" not in r.stdout and "no significant regression beyond +25%" in r.stdout


def test_a_3x_slower_copy_regresses(reports: dict[str, Any], tmp_path: Path) -> None:
    slow = slowed_copy(reports["same"], tmp_path / "slow.json")
    r = compare(reports["base"], slow)
    assert r.exit_code == 1, r.stdout
    rows = [line for line in r.stdout.splitlines() if "REGRESSED" in line]
    assert any("fetch@durable/get p50" in row and "p=0.00397" in row for row in rows), r.stdout
    assert "regressed:" in r.stdout
    # Few-sample rows are shown but never among the regressed.
    assert all("few samples" not in row for row in rows)
    assert "fetch@durable/get p99" in r.stdout


def test_reports_of_different_configs_cannot_be_compared(reports: dict[str, Any]) -> None:
    r = compare(reports["base"], reports["other"])
    assert r.exit_code == 2
    line = one_error_line(r)
    assert "differ in datasets" in line and "'albums': 300" in line and "'albums': 250" in line
    assert "--allow-mismatch" in line and r.stdout == ""
    # (the single run ran while all three jobs loaded the machine: the load rule is not under test)
    r = invoke("compare", str(reports["base"]), str(reports["other"]), "--allow-mismatch", "--allow-load-change")
    assert r.exit_code in (0, 1) and "note: base and new differ in datasets" in r.stdout


def test_reports_of_different_hosts_need_the_flag(reports: dict[str, Any], tmp_path: Path) -> None:
    def move(d: dict[str, Any]) -> None:
        d["metadata"]["host"]["cpu_model"] = "A Different CPU"

    moved = edited(reports["same"], tmp_path / "moved.json", move)
    r = compare(reports["base"], moved)
    assert r.exit_code == 2 and "different hosts (cpu_model:" in one_error_line(r)
    r = compare(reports["base"], moved, "--allow-host-change")
    assert r.exit_code == 0 and "note: base and new ran on different hosts" in r.stdout


def _schema_99(d: dict[str, Any]) -> None:
    d["schema_version"] = 99


def _off_layout(d: dict[str, Any]) -> None:
    buckets = d["phases"][1]["latencies"]["get"]["buckets"]
    wide = next(b for b in buckets if b[0] > 10_000)  # buckets there are ~200 ns wide
    wide[0] += 1


def _nan_figure(d: dict[str, Any]) -> None:
    d["runs"][0]["metrics"]["fetch@durable/get"]["p50"] = math.nan


def _negative_figure(d: dict[str, Any]) -> None:
    d["runs"][2]["metrics"]["fetch@durable/get"]["p99"] = -1.0


def _nothing_in_common(d: dict[str, Any]) -> None:
    for p in d["phases"]:
        p["latencies"], p["lags"], p["connector_delays"] = {}, {}, {}
    for r in d["runs"]:
        r["metrics"] = {}


@pytest.mark.parametrize(
    "edit, expected",
    [
        (_schema_99, "schema_version 99 is not supported"),
        (_off_layout, "bucket bounds do not match the histogram layout"),
        (_nan_figure, "is not valid JSON"),  # json writes NaN, which is not JSON
        (_negative_figure, "runs[2].metrics.fetch@durable/get.p99: -1.0 is not a finite figure"),
        (_nothing_in_common, "no metric in common"),
    ],
)
def test_reports_that_cannot_be_compared_exit_2(
    reports: dict[str, Any], tmp_path: Path, edit: Any, expected: str
) -> None:
    bad = edited(reports["same"], tmp_path / "bad.json", edit)
    for pair in ((reports["base"], bad), (bad, reports["base"])):
        r = compare(*pair)
        assert r.exit_code == 2, (r.stdout, r.stderr)
        assert expected in one_error_line(r)


def test_missing_and_truncated_reports_exit_2(reports: dict[str, Any], tmp_path: Path) -> None:
    r = compare(reports["base"], tmp_path / "nowhere.json")
    assert r.exit_code == 2 and "does not exist" in one_error_line(r)
    text = reports["base"].read_text()
    cut = tmp_path / "cut.json"
    cut.write_text(text[: len(text) // 2])
    r = compare(cut, reports["same"])
    assert r.exit_code == 2 and "is not valid JSON" in one_error_line(r)


# -- option errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("--repeat", "0", "error: --repeat: got 0; must be 1..100"),
        ("--repeat", "-3", "error: --repeat: got -3; must be 1..100"),
        ("--repeat", "1000", "error: --repeat: got 1000; must be 1..100"),
        ("--repeat", "x", "error: --repeat: got 'x'; expected a whole number 1..100"),
        ("--warmup", "11", "error: --warmup: got 11; must be 0..10"),
        ("--warmup", "-1", "error: --warmup: got -1; must be 0..10"),
    ],
)
def test_bad_repeat_or_warmup_is_one_line_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str, value: str, expected: str
) -> None:
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out.json"
    r = invoke(
        "run", "configs/leveldb-local.yaml", option, value, "--json", str(out), "--gab", str(tmp_path / "gab.json")
    )
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert one_error_line(r) == expected
    assert r.stdout == "" and list(tmp_path.iterdir()) == []


# -- Ctrl+C and SIGTERM during repeated runs --------------------------------------------------


def _child_started(tmp: Path, proc: subprocess.Popen[str]) -> Iterator[int]:
    """Yields once a `sprout run` child of a repeat in ``tmp`` is alive."""
    while proc.poll() is None:
        found = pids_mentioning(f"{tmp}/sprout-repeat-")
        if found:
            yield found[0]
            return
        os.sched_yield()


@pytest.mark.parametrize("when", ["after run 1", "during run 2"])
def test_ctrl_c_during_repeat_keeps_finished_runs_and_leaves_nothing(tmp_path: Path, when: str) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "out.json"
    proc = subprocess.Popen(
        [*SPROUT_RUN, "--repeat", "3", "--json", str(out)],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if when == "after run 1" and "run 1/3: ok" in line:
            break  # Ctrl+C lands between runs (or as run 2 starts)
        if when == "during run 2" and "run 2/3: running" in line:
            assert list(_child_started(tmp, proc)), "no child appeared for run 2"
            break  # Ctrl+C while the run-2 child is alive
    proc.send_signal(signal.SIGINT)
    stdout, rest = proc.communicate(timeout=300)
    assert proc.returncode == 130, "".join(seen) + rest
    assert "Traceback" not in rest and "partial results written to" in rest
    report = load_run(out)
    assert report.status == "cancelled" and "interrupted after" in (report.reason or "")
    assert 1 <= len(report.runs) <= 2 and report.runs[0].status == "ok"
    assert pids_mentioning(f"{tmp}/sprout-repeat-") == []  # no child left running
    assert [p.name for p in tmp.iterdir() if p.name.startswith("sprout-repeat-")] == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_between_two_runs_gives_the_finished_runs(
    sig: signal.Signals, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signal arrives while the parent is between runs (here: in the progress callback
    after run 1), not while it waits for a child: still a cancelled result with run 1."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    cfg = load_config(str(ROOT / "configs" / "leveldb-local.yaml"), SMALL)
    events: list[str] = []

    def on_event(line: str) -> None:
        events.append(line)
        if line.startswith("run 1/2: ok"):
            os.kill(os.getpid(), sig)

    previous = signal.getsignal(signal.SIGTERM)
    try:
        result = run_repeated(cfg, repeat=2, on_event=on_event)
    except (KeyboardInterrupt, Exception) as exc:  # noqa: BLE001  (what escaped is the failure)
        pytest.fail(f"{type(exc).__name__} escaped run_repeated between runs; run 1 was lost")
    assert (
        signal.getsignal(signal.SIGTERM) == previous and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )
    assert result.status == "cancelled" and result.reason == "interrupted after 1 of 2 run(s); partial results"
    assert len(result.runs) == 1 and result.runs[0].status == "ok"
    assert not any(e.startswith("run 2/2") for e in events)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("sprout-repeat-")] == []


def test_every_run_records_the_cpu_other_processes_took(reports: dict[str, Any]) -> None:
    for key in ("base", "same"):
        shares = [r.other_cpu_share for r in load_run(reports[key]).runs]
        assert len(shares) == 5 and all(s is not None and 0.0 <= s <= 1.0 for s in shares), (key, shares)


def _loaded(share: float) -> Any:
    def edit(d: dict[str, Any]) -> None:
        for r in d["runs"]:
            r["other_cpu_share"] = share

    return edit


def test_a_regression_on_a_much_busier_machine_is_not_comparable(reports: dict[str, Any], tmp_path: Path) -> None:
    """Every new run had other processes take 90% of the CPU, every base run 5%: a slowdown
    then may be the machine. Exit 2 with why, unless --allow-load-change; without a
    regression the load does not matter."""
    quiet = edited(reports["base"], tmp_path / "quiet.json", _loaded(0.05))
    slow = slowed_copy(reports["same"], tmp_path / "slow.json")
    busy_slow = edited(slow, tmp_path / "busy-slow.json", _loaded(0.9))
    r = compare(quiet, busy_slow)
    assert r.exit_code == 2, r.stdout
    line = one_error_line(r)
    assert "not comparable: other processes took 90% of the CPU while new ran and 5% while base ran" in line
    assert "--allow-load-change" in line and "sprout gate" in line
    r = compare(quiet, busy_slow, "--allow-load-change")
    assert r.exit_code == 1, r.stdout
    busy_same = edited(reports["same"], tmp_path / "busy-same.json", _loaded(0.9))
    assert compare(quiet, busy_same).exit_code == 0
    # a gap inside the noise of the runs' own loads is no reason
    mildly = edited(slow, tmp_path / "mild.json", _loaded(0.2))
    assert compare(quiet, mildly).exit_code == 1
