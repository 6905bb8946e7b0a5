"""asv end to end in a clone of this repository: `asv run` over a commit range + `asv publish`,
and `asv continuous` failing on a commit that really slows a benchmark down.

Slow (virtualenv + one wheel build per commit); the asv environment is shared by the tests
of this module and pip's download cache by everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.asv import asv, clone_under_test, commit_all, explain, git, override_conf, result_files

pytestmark = pytest.mark.slow

TINY = {"SPROUT_BENCH_SCALE": "tiny"}


@pytest.fixture(scope="module")
def asv_env_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("asv-env")


def _prepare_clone(tmp_path: Path, env_dir: Path) -> Path:
    repo = clone_under_test(tmp_path / "clone")
    override_conf(repo, env_dir=str(env_dir))
    proc = asv(repo, "machine", "--yes")
    assert proc.returncode == 0, explain(proc)
    return repo


def test_run_over_commit_range_and_publish(tmp_path: Path, asv_env_dir: Path, pg_dsn: str) -> None:
    repo = _prepare_clone(tmp_path, asv_env_dir)
    base = git(repo, "rev-parse", "HEAD")
    (repo / "docs" / "asv-range-test.md").write_text("first commit of the range\n")
    first = commit_all(repo, "range commit 1")
    (repo / "docs" / "asv-range-test.md").write_text("second commit of the range\n")
    second = commit_all(repo, "range commit 2")

    # base..HEAD excludes base: exactly the two new commits.
    proc = asv(
        repo,
        "run",
        f"{base}..HEAD",
        "--bench",
        "anchors",
        "--quick",
        "--show-stderr",
        env={**TINY, "SPROUT_PG_DSN": pg_dsn},
    )
    assert proc.returncode == 0, explain(proc)

    results = result_files(repo)
    assert set(results) == {first, second}, explain(proc)
    for data in results.values():
        values = {name: row[0] for name, row in data["results"].items()}
        assert set(values) >= {
            "anchors.AnchorLevelDB.track_put_write_batch",
            "anchors.AnchorPostgres.track_copy",
            "anchors.AnchorWebsockets.track_round_trip_p50",
            "anchors.AnchorAsyncioQueue.track_hop",
        }
        for name, value in values.items():
            assert value and value[0] is not None and value[0] > 0, (name, value)

    proc = asv(repo, "publish")
    assert proc.returncode == 0, explain(proc)
    html = repo / "html"
    assert (html / "index.html").exists()
    index = json.loads((html / "index.json").read_text())
    assert {first, second} <= set(index["revision_to_hash"].values())
    graphs = list((html / "graphs").rglob("anchors.AnchorLevelDB.track_put_write_batch.json"))
    assert graphs, "asv publish wrote no graph for the LevelDB anchor"
    points = json.loads(graphs[0].read_text())
    assert len(points) == 2 and all(v is not None and v > 0 for _, v in points), points


PROBE_FAST = (
    '"""Test-only module: the work a probe benchmark times."""\n\n\ndef work() -> int:\n    return sum(range(100))\n'
)
PROBE_SLOW = (
    '"""Test-only module: the work a probe benchmark times (now slowed down)."""\n\nimport time\n\n\n'
    "def work() -> int:\n    time.sleep(0.002)\n    return sum(range(100))\n"
)
PROBE_BENCH = '''"""Times sprout_harness._asv_probe.work (added by the continuous test)."""


def time_probe_work():
    from sprout_harness._asv_probe import work

    work()
'''


def test_continuous_exits_nonzero_on_a_regression(tmp_path: Path, asv_env_dir: Path) -> None:
    repo = _prepare_clone(tmp_path, asv_env_dir)
    probe = repo / "sprout_harness" / "_asv_probe.py"
    probe.write_text(PROBE_FAST)
    fast = commit_all(repo, "probe: fast")
    probe.write_text(PROBE_SLOW)
    slow = commit_all(repo, "probe: deliberately slow")
    # The benchmark file lives in the working tree (asv reads benchmarks from there, the project per commit).
    (repo / "benchmarks" / "probe.py").write_text(PROBE_BENCH)

    # No PostgreSQL here: its anchor must show n/a (a skip), not a failure (which would exit 2).
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sprout_harness.asvtools.continuous",
            fast,
            slow,
            "--factor",
            "1.2",
            "--quick",
            "--bench",
            "probe|AnchorPostgres",
            "--no-postgres",
        ],
        cwd=repo,
        env={**os.environ, **TINY},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, explain(proc)
    assert "PERFORMANCE DECREASED" in out and "probe.time_probe_work" in out, explain(proc)
    assert "REGRESSION" in out, explain(proc)


SAMPLES_BENCH = '''"""A track_ benchmark that returns samples (the contract benchmarks/gate.py relies on)."""


class Probe:
    unit = "ratio"

    def track_samples(self):
        return {"samples": [1.0, 1.1, 0.9, 1.0, 1.2, 1.05, 0.95, 1.02, 0.98], "number": 1}

    def track_float(self):
        return 1.0
'''


def test_track_samples_get_statistics_from_asv(tmp_path: Path, asv_env_dir: Path) -> None:
    """asv keeps stats (median, 99 % CI, count) and samples for a track_ returning a samples
    dict, and none for a plain float: what the gate and the anchors rely on (docs/asv.md)."""
    repo = _prepare_clone(tmp_path, asv_env_dir)
    (repo / "benchmarks" / "probe.py").write_text(SAMPLES_BENCH)
    proc = asv(repo, "run", "HEAD^!", "--bench", "probe", "--record-samples", "-a", "rounds=2", "--show-stderr")
    assert proc.returncode == 0, explain(proc)
    (data,) = result_files(repo).values()
    rows = {name: dict(zip(data["result_columns"], row)) for name, row in data["results"].items()}
    got = rows["probe.Probe.track_samples"]
    assert got["result"] == [1.0], got  # the median
    assert got["stats_repeat"] == [18] and got["stats_ci_99_a"][0] < 1.0 < got["stats_ci_99_b"][0], got
    assert sorted(got["samples"][0]) == sorted([1.0, 1.1, 0.9, 1.0, 1.2, 1.05, 0.95, 1.02, 0.98] * 2), got
    plain = rows["probe.Probe.track_float"]
    assert plain["result"] == [1.0] and not plain.get("stats_repeat") and not plain.get("samples"), plain
