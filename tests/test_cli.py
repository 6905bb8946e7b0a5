"""The `sprout` CLI: click's CliRunner for the commands, and a real subprocess run of
`sprout run configs/leveldb-local.yaml` at small sizes writing both JSON files."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from sprout_harness.metrics import Histogram, PhaseResult, RunMetadata, RunResult
from sprout_harness.reports import json_report
from support.cli import ROOT, SMALL, invoke, one_error_line, sets


def test_version_and_help():
    from importlib.metadata import version

    r = invoke("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"sprout {version('sprout-harness')}"
    r = invoke("--help")
    assert r.exit_code == 0 and all(c in r.stdout for c in ("run", "validate", "list", "compare"))


def test_list_shows_stacks_workloads_and_configs():
    r = invoke("list")
    assert r.exit_code == 0
    for word in (
        "loam",
        "sprout_loam.adapter:stack",
        "create",
        "fetch",
        "live-limit",
        "writers",
        "churn",
        "sprout",
        "create -> fetch -> live-limit -> writers -> churn",
        "leveldb-local",
        "postgres-ephemeral-ws",
        "knobs: ",
        "albums, pets",
    ):
        assert word in r.stdout, word


def test_validate_is_a_dry_run():
    r = invoke("validate", str(ROOT / "configs" / "postgres-ephemeral-ws.yaml"), "--set", "topology.ephemeral=2")
    assert r.exit_code == 0, r.stderr
    assert "postgres-ephemeral-ws: ok" in r.stdout
    assert "2 ephemeral (e0->d0 websocket, e1->d0 websocket)" in r.stdout


@pytest.mark.parametrize(
    "args, expected, code",
    [
        (
            ["validate", "configs/leveldb-local.yaml", "--set", "topology.durable=0"],
            "error: topology.durable: got 0",
            2,
        ),
        (
            ["validate", "configs/leveldb-local.yaml", "--set", "stack.name=ghost"],
            "error: stack.name: stack 'ghost'",
            2,
        ),
        (["validate", "nowhere.yaml"], "error: config file 'nowhere.yaml' not found", 2),
        (
            ["run", "configs/leveldb-local.yaml", "--set", "topology.links"],
            "error: --set 'topology.links': expected path=value",
            2,
        ),
        (
            ["run", "configs/leveldb-local.yaml", "--set", "storage.engine=ramdisk"],
            "error: storage.engine: got 'ramdisk'",
            2,
        ),
        (["compare", "missing-a.json", "missing-b.json"], "error: run report missing-a.json does not exist", 2),
        (
            ["compare", "configs/leveldb-local.yaml", "configs/leveldb-local.yaml", "--threshold", "ten"],
            "error: --threshold:",
            2,
        ),
    ],
)
def test_errors_are_one_clear_line_and_non_zero(args, expected, code, monkeypatch):
    monkeypatch.chdir(ROOT)
    r = invoke(*args)
    assert r.exit_code == code, (r.stdout, r.stderr)
    assert one_error_line(r).startswith(expected)


def test_an_unreachable_server_is_one_clear_line(monkeypatch):
    monkeypatch.chdir(ROOT)
    r = invoke(
        "run",
        "configs/postgres-pool.yaml",
        "--quiet",
        "--set",
        "storage.dsn=host=127.0.0.1 port=1 user=nobody password=hunter2 dbname=x connect_timeout=2",
    )
    assert r.exit_code == 1
    line = [l for l in r.stderr.splitlines() if l.startswith("error: ")][-1]
    assert "durable node 0" in line and "hunter2" not in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def _run(name: str, p50_ms: float) -> RunResult:
    h = Histogram()
    for i in range(200):
        h.record(int(p50_ms * 1e6 * (0.5 + i / 200)))
    phase = PhaseResult(name="fetch@durable", latencies={"get": h}, wall_ns=10**9)
    return RunResult(RunMetadata(run_id=name, config_name="cmp"), [phase])


def test_compare_exits_1_on_regression_and_0_otherwise(tmp_path):
    base, same, slow = tmp_path / "base.json", tmp_path / "same.json", tmp_path / "slow.json"
    json_report.write(_run("a", 1.0), base)
    json_report.write(_run("b", 1.0), same)
    json_report.write(_run("c", 1.5), slow)
    assert invoke("compare", str(base), str(same), "--threshold", "10%").exit_code == 0
    r = invoke("compare", str(base), str(slow), "--threshold", "10%")
    assert r.exit_code == 1
    assert invoke("compare", str(base), str(slow), "--threshold", "80%").exit_code == 0


def test_sprout_run_leveldb_local_end_to_end_in_a_subprocess(tmp_path):
    js, gab = tmp_path / "out" / "run.json", tmp_path / "out" / "gab.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sprout_harness",
            "run",
            "configs/leveldb-local.yaml",
            *sets(SMALL),
            "--json",
            str(js),
            "--gab",
            str(gab),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    report = json.loads(js.read_text())
    assert report["status"] == "ok"
    assert [p["name"] for p in report["phases"]] == [
        "create@durable",
        "fetch@durable",
        "live-limit@durable",
        "writers@durable",
        "churn@durable",
    ]
    assert all(p["status"] == "ok" and all(c["ok"] for c in p["checks"]) for p in report["phases"])
    md = report["metadata"]
    assert md["config_name"] == "leveldb-local" and md["seed"] == 42 and md["stack"] == "loam"
    assert md["dataset_sizes"] == {"albums": 300, "pets": 300}
    assert md["topology"]["durable"] == 1 and md["storage"]["engine"] == "leveldb"
    assert md["git_commit"] and md["host"] and md["python"] and md["started_at"] <= md["ended_at"]
    entries = json.loads(gab.read_text())
    assert isinstance(entries, list) and entries
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names))
    assert all(isinstance(e["value"], (int, float)) and math.isfinite(e["value"]) for e in entries)
    assert any("window_refill" in n for n in names) and any("notify" in n for n in names)


SLOW_VALIDATE = """
import sys
import time

from sprout_loam.adapter import stack


class SlowToValidate(stack):
    @classmethod
    def validate(cls, settings):
        print("VALIDATING", file=sys.stderr, flush=True)
        time.sleep(60)
"""


def test_ctrl_c_while_loading_the_config_still_writes_the_reports(tmp_path):
    """A stack's validate runs while the config loads; Ctrl+C there exits 130 and the JSON and
    gab reports asked for say the run was interrupted before any phase."""
    import signal

    (tmp_path / "slowcheck.py").write_text(SLOW_VALIDATE)
    report, gab_report = tmp_path / "out" / "run.json", tmp_path / "out" / "run.gab.json"
    cmd = [sys.executable, "-m", "sprout_harness", "run", str(ROOT / "configs" / "leveldb-local.yaml")]
    cmd += ["--set", "stack.name=slowcheck:SlowToValidate", "--json", str(report), "--gab", str(gab_report)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline().strip() == "VALIDATING"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["error: interrupted"]
    data = json.loads(report.read_text())
    assert (data["status"], data["phases"]) == ("cancelled", [])
    assert "while loading the config" in data["reason"]
    assert data["metadata"]["config_name"] == "leveldb-local"
    assert json.loads(gab_report.read_text()) == []
