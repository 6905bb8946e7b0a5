"""The asv suite's stack axis comes from what is installed: a stack installed beside the
project (a real distribution on sys.path, found through its entry points) appears in the
matrix and runs, with no edit to benchmarks/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from support.asv import REPO_ROOT

TESTS = Path(__file__).resolve().parent

# A stack with declared variants (ephemerals over its own connector), a stack without the
# hook (one durable-only variant), a stack whose module is missing, and a variant name that
# another stack already took.
PIGEON = """
from sprout_harness.contracts.variants import BenchVariant
from support.stacks import DictStack


class PigeonStack(DictStack):
    @classmethod
    def benchmark_variants(cls, query_fields):
        assert query_fields["albums"], query_fields  # what the benchmark queries filter on
        return [BenchVariant("pigeon-direct", connectors=("direct",), stack_params={})]


class CopyCat(DictStack):
    @classmethod
    def benchmark_variants(cls, query_fields):
        return [BenchVariant("pigeon-direct")]
"""

PROBE = """
import json, os, sys
sys.path.insert(0, os.environ["REPO"])
os.environ["SPROUT_BENCH_SCALE"] = "tiny"
from benchmarks import _topology as t
out = {"stacks": list(t.STACKS), "connectors": list(t.CONNECTORS), "combinations": t.combinations(),
       "broken": {n: v.broken for n, v in t.VARIANTS.items() if v.broken},
       "na": {f"{s}/{c}/{e}": t.not_applicable(s, c, e) for s in t.STACKS for c in t.CONNECTORS for e in (0, 1)}}
if "run" in sys.argv:
    phases = [("create", {"count": 20, "batch_size": 5})]
    out["runs"] = {"/".join(map(str, k)): t.entry(k, {}, phases)
                   for k in [("pigeon-direct", "direct", 1), ("dict", t.CONNECTORS[0], 0), ("broken", t.CONNECTORS[0], 0)]}
print(json.dumps(out, default=str))
"""


def _install(site: Path) -> None:
    """A distribution registering three stacks under `sprout_harness.stacks`, as pip would leave it."""
    (site / "pigeonstack.py").write_text(textwrap.dedent(PIGEON))
    info = site / "pigeonstack-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pigeonstack\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[sprout_harness.stacks]\npigeon = pigeonstack:PigeonStack\ndict = support.stacks:DictStack\n"
        "broken = no_such_module_here:Stack\nzz-copycat = pigeonstack:CopyCat\n"
    )


def _probe(site: Path, *args: str, only: str | None = None) -> dict:
    env = {**os.environ, "REPO": str(REPO_ROOT), "PYTHONPATH": os.pathsep.join([str(site), str(TESTS)])}
    env.pop("SPROUT_ASV_STACKS", None)
    if only is not None:
        env["SPROUT_ASV_STACKS"] = only
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_an_installed_stack_joins_the_matrix_and_runs(tmp_path: Path) -> None:
    _install(tmp_path)
    got = _probe(tmp_path, "run")
    # the project's own stacks keep their names (the page's history is keyed by them)
    assert {"loam-leveldb", "loam-postgres", "pgnotify"} <= set(got["stacks"])
    assert {"pigeon-direct", "dict", "broken"} <= set(got["stacks"]), got["stacks"]
    assert got["connectors"][-1] == "direct" and {"inprocess", "websocket"} <= set(got["connectors"])
    combos = {tuple(c) for c in got["combinations"]}
    assert ("pigeon-direct", "direct", 1) in combos and ("pigeon-direct", "inprocess", 1) not in combos
    assert ("dict", got["connectors"][0], 0) in combos and not any(c[0] == "dict" and c[2] for c in combos)
    assert "not direct" in got["na"]["loam-leveldb/direct/1"]
    assert "durable only" in got["na"]["dict/inprocess/1"]
    # the broken and the duplicate are rows that say why, not a broken suite
    assert "no_such_module_here" in got["broken"]["broken"]
    # stacks are read in entry point name order: the first to declare a name keeps it
    assert "taken by 'pigeon'" in got["broken"]["zz-copycat/pigeon-direct"], got["broken"]
    runs = got["runs"]
    for key in ("pigeon-direct/direct/1", "dict/inprocess/0"):
        assert runs[key]["status"] == "ok", runs[key]
        assert runs[key]["phases"]["create"]["counters"], runs[key]
    assert (
        runs["broken/inprocess/0"]["status"] == "na" and "no_such_module_here" in runs["broken/inprocess/0"]["reason"]
    )


def test_sprout_asv_stacks_restricts_the_axis(tmp_path: Path) -> None:
    _install(tmp_path)
    got = _probe(tmp_path, only="loam,pigeon-direct")
    # copycat's variant is selected by its name too, and still reads n/a as a duplicate
    assert got["stacks"] == ["loam-leveldb", "loam-postgres", "pigeon-direct", "zz-copycat/pigeon-direct"], got
    assert got["connectors"] == ["inprocess", "websocket", "direct"]
    got = _probe(tmp_path, only="pgnotify")
    assert got["stacks"] == ["pgnotify"] and got["connectors"] == ["none"], got


def test_asv_skips_exactly_the_cells_that_make_no_sense() -> None:
    """asv skips `skip_params` cells without calling setup (no "skipped" block per cell);
    together with the combinations that run they cover the matrix once."""
    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks import _topology as t

    cells = {(s, c, e) for s in t.STACKS for c in t.CONNECTORS for e in t.EPHEMERALS}
    skipped = set(t.FamilyBenchmark.skip_params)
    assert skipped.isdisjoint(t.combinations()) and skipped | set(t.combinations()) == cells
    assert all(t.not_applicable(*cell) for cell in skipped)
