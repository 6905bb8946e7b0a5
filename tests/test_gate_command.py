"""`sprout gate`, `sprout merge` and `sprout noise` end to end, on real runs of a small
LevelDB config with one in-process ephemeral (seconds per run).

The gate's "base build" is a wrapper around this build's sprout that adds its own `--set`
after the gate's, so the two sides run different code paths of one build: here the base
runs without the in-process connector's delay and the new side with 2 ms of it, a real
slowdown of every operation that crosses the connector."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sprout_harness.metrics import load_run

ROOT = Path(__file__).resolve().parents[1]
SPROUT = [sys.executable, "-m", "sprout_harness"]
CONFIG = {
    "name": "gate-small",
    "stack": {"name": "loam"},
    "storage": {"engine": "leveldb"},
    "topology": {"durable": 1, "ephemeral": 1, "connector": "inprocess"},
    "datasets": {"albums": 200, "pets": 0},
    "phases": [{"name": "fetch", "target": "ephemeral", "params": {"get_ops": 60, "fetch_ops": 0}}],
}


def _sprout(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SPROUT, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def _one_error(r: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and ln.startswith("error: ")]
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gate-cmd") / "gate-small.yaml"
    path.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    return path


def _wrapper(tmp: Path, body: str) -> Path:
    exe = tmp / "base-sprout"
    exe.write_text(f"#!/bin/sh\n{body}\n")
    exe.chmod(0o755)
    return exe


def test_gate_flags_a_slower_new_build_and_keeps_both_reports(config: Path, tmp_path: Path) -> None:
    base = _wrapper(
        tmp_path, f'exec "{sys.executable}" -m sprout_harness "$@" --set topology.connector_params.delay_s=0'
    )
    r = _sprout(
        "gate",
        str(config),
        "--set",
        "topology.connector_params.delay_s=0.002",
        "--base-sprout",
        str(base),
        "--runs",
        "5",
        "--out-dir",
        str(tmp_path / "out"),
        "--html",
        str(tmp_path / "cmp.html"),
    )
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-2000:]
    rows = [ln for ln in r.stdout.splitlines() if "fetch@ephemeral/get p50" in ln]
    assert rows and "REGRESSED" in rows[0] and "p=0.00397" in rows[0]
    assert "5 vs 5 runs: exact one-sided Mann-Whitney U" in r.stdout
    # ABBA: the log names every run of both sides in that order
    order = [ln.split(" run ")[0].strip() for ln in r.stderr.splitlines() if ln.strip().endswith(": running")]
    assert order == ["base", "new", "new", "base", "base", "new", "new", "base", "base", "new"]
    base_run, new_run = load_run(tmp_path / "out" / "base.json"), load_run(tmp_path / "out" / "new.json")
    assert len(base_run.runs) == len(new_run.runs) == 5
    b = [f.metrics["fetch@ephemeral/get"]["p50"] for f in base_run.runs]
    n = [f.metrics["fetch@ephemeral/get"]["p50"] for f in new_run.runs]
    assert min(n) > 2 * max(b)  # the delay really ran on the new side only
    assert (tmp_path / "cmp.html").read_text().count("REGRESSED") >= 1


def test_gate_refuses_what_it_cannot_compare(config: Path, tmp_path: Path) -> None:
    broken = _wrapper(tmp_path, 'echo "base build is broken" >&2; exit 1')
    r = _sprout("gate", str(config), "--base-sprout", str(broken), "--runs", "5")
    assert r.returncode == 2 and "base run 1: error" in _one_error(r) and "base build is broken" in r.stderr
    for args, field in (
        (["--base-sprout", str(tmp_path / "nope")], "--base-sprout"),
        (["--base-sprout", sys.executable, "--runs", "3"], "--runs"),
        (["--base-sprout", sys.executable, "--threshold", "ten"], "--threshold"),
    ):
        r = _sprout("gate", str(config), *args)
        assert r.returncode == 2 and _one_error(r).startswith(f"error: {field}:"), r.stderr


def test_merge_joins_runs_and_refuses_another_config(config: Path, tmp_path: Path) -> None:
    for i in (1, 2):
        assert _sprout("run", str(config), "--quiet", "--json", str(tmp_path / f"r{i}.json")).returncode == 0
    r = _sprout("merge", str(tmp_path / "m.json"), str(tmp_path / "r1.json"), str(tmp_path / "r2.json"))
    assert r.returncode == 0, r.stderr
    merged, r1, r2 = (load_run(tmp_path / f) for f in ("m.json", "r1.json", "r2.json"))
    assert [f.run_id for f in merged.runs] == [r1.metadata.run_id, r2.metadata.run_id]
    name = "fetch@ephemeral/get"
    assert merged.metrics()[name].count == r1.metrics()[name].count + r2.metrics()[name].count
    other = json.loads((tmp_path / "r2.json").read_text())
    other["metadata"]["dataset_sizes"]["albums"] = 999
    (tmp_path / "other.json").write_text(json.dumps(other))
    r = _sprout("merge", str(tmp_path / "x.json"), str(tmp_path / "r1.json"), str(tmp_path / "other.json"))
    assert r.returncode == 2 and "datasets" in _one_error(r) and not (tmp_path / "x.json").exists()


def test_noise_reports_spread_and_a_threshold(config: Path, tmp_path: Path) -> None:
    r = _sprout("noise", str(config), "--runs", "3", "--json", str(tmp_path / "n.json"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "run-to-run noise over 3 runs" in r.stdout and "fetch@ephemeral/get" in r.stdout
    assert "suggested: sprout run CONFIG --repeat 5, sprout compare --threshold" in r.stdout
    assert len(load_run(tmp_path / "n.json").runs) == 3
    for args, field in (
        (["--runs", "1"], "--runs"),
        (["--alpha", "0.001", "--gate-repeat", "5"], "--gate-repeat"),
        (["--threshold", "-5%"], "--threshold"),
    ):
        r = _sprout("noise", str(config), *args)
        assert r.returncode == 2 and _one_error(r).startswith(f"error: {field}:"), r.stderr
