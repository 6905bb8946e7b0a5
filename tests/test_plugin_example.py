"""The worked example of docs/plugins.md, for real, and the harness on its own: the doc shows
every file of examples/memstack verbatim; the package, pip-installed into a fresh virtualenv
that holds only `sprout-harness` besides it (no store, no other stack: `import loam` fails
there), is listed by `sprout list` under its entry point and runs every suite through the CLI,
each phase `ok` or, where memstack lacks the hooks, `unsupported`."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "memstack"
DOC = ROOT / "docs" / "plugins.md"
FILE_BLOCK = re.compile(r"^<!-- file: (\S+) -->\n```[a-z]*\n(.*?)^```$", re.S | re.M)
BUILD_LEFTOVERS = ("__pycache__", "build", "*.egg-info")

SMALL = {"datasets": {"albums": 300, "pets": 300}, "runner": {"check_timeout_s": 10.0}}
RUNS: dict[str, dict[str, Any]] = {
    # suite -> the config's other fields: small sizes through the shared `workload` knobs
    "sprout": {
        "topology": {"durable": 1, "ephemeral": 1},  # builds a connector and an ephemeral too
        "workload": {"count": 200, "get_ops": 100, "fetch_ops": 50, "ops": 100, "cycles": 2},
    },
    "mixes": {"workload": {"operations": 200, "record_count": 200}},
    "queries": {"workload": {"queries": 20, "min_rows": 100}},
    "realtime": {"workload": {"connector": "inprocess", "connections": 8, "subscriptions": 16, "subscribers": 8}},
    "server": {"workload": {"rows": 50, "ops": 50}},
}
EPHEMERAL_PHASES = [  # phases on the ephemeral node: its connector and client do the work
    {"name": "create", "target": "ephemeral", "params": {"count": 100}},
    {"name": "live-limit", "target": "ephemeral", "params": {"ops": 30}},
    {"name": "crud", "target": "ephemeral", "params": {"operations": 200}},
]
UNSUPPORTED = {"trigger@durable"}  # memstack has no trigger hooks
PROBE = """
import json
from memstack.stack import MemStack

class Probe(MemStack):
    def __init__(self, settings):
        names = ("name", "params", "storage", "policy", "topology", "seed")
        print("SETTINGS " + json.dumps({n: getattr(settings, n) for n in names}))
        super().__init__(settings)
"""


def shown_in_doc() -> dict[str, str]:
    """path -> text of every `<!-- file: path -->` code block of docs/plugins.md."""
    return {path: text for path, text in FILE_BLOCK.findall(DOC.read_text())}


def settings_block(label: str) -> str:
    """The code block of docs/plugins.md marked `<!-- settings: label -->`."""
    (text,) = re.findall(rf"^<!-- settings: {label} -->\n```[a-z]*\n(.*?)^```$", DOC.read_text(), re.S | re.M)
    return str(text)


def test_the_doc_shows_every_file_of_the_example_verbatim() -> None:
    ignored = shutil.ignore_patterns(*BUILD_LEFTOVERS)
    on_disk = {}
    for path in sorted(EXAMPLE.rglob("*")):
        if path.is_file() and not any(ignored(str(p.parent), [p.name]) for p in (path, *path.parents)):
            on_disk[path.relative_to(ROOT).as_posix()] = path.read_text()
    assert shown_in_doc() == on_disk


HARNESS_FILES = ("pyproject.toml", "README.md", "sprout_harness")  # the sprout-harness distribution
OTHER_DISTRIBUTIONS = ("loam", "sprout-loam", "sprout-pgnotify", "plyvel", "psycopg", "psycopg-pool", "httpx")


def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args]
    subprocess.run(cmd, check=True, timeout=600)


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh virtualenv holding only `sprout-harness` (built from this tree,
    its dependencies from the package index) and memstack: no other stack, no store, and
    nothing leaks into the project venv or the source tree."""
    tmp = tmp_path_factory.mktemp("memstack")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    # copies: the builds' build/ and *.egg-info stay out of the repository
    harness = tmp / "harness"
    harness.mkdir()
    for name in HARNESS_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, harness / name, ignore=shutil.ignore_patterns(*BUILD_LEFTOVERS))
        else:
            shutil.copy2(src, harness / name)
    example = tmp / "memstack"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns(*BUILD_LEFTOVERS))
    wheels = tmp / "wheels"
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(harness), str(example))
    _pip("--python", str(py), "install", *map(str, sorted(wheels.glob("*.whl"))))
    where = subprocess.run(
        [str(py), "-c", "import memstack, sprout_harness; print(memstack.__file__); print(sprout_harness.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp,
    ).stdout.split()
    assert all(Path(w).is_relative_to(venv) for w in where), where
    return py


def test_the_harness_installs_alone(python: Path, tmp_path: Path) -> None:
    """sprout-harness pulls in no store and no other stack: `import loam` fails there, and
    the only stack the CLI lists is the one installed beside it."""
    probe = "import importlib.util as u, sys; print(*[m for m in sys.argv[1:] if u.find_spec(m)])"
    modules = ("loam", "sprout_loam", "sprout_pgnotify", "plyvel", "psycopg", "sprout_harness", "memstack")
    found = subprocess.run(
        [str(python), "-c", probe, *modules], check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout.split()
    assert found == ["sprout_harness", "memstack"]
    out = subprocess.run([str(python), "-c", "import loam"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 1 and "No module named 'loam'" in out.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "list", "--format=freeze"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.lower()
    names = {line.split("==")[0] for line in listed.split()}
    assert {"sprout-harness", "sprout-memstack"} <= names
    assert not names & set(OTHER_DISTRIBUTIONS), names & set(OTHER_DISTRIBUTIONS)
    stacks = sprout(python, "list", cwd=tmp_path).stdout.split("phases:")[0]
    assert re.findall(r"^  (\S+) +\S+:\S+$", stacks, re.M) == ["memstack"]


def sprout(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SPROUT_DEBUG": ""}
    return subprocess.run(
        [str(python), "-m", "sprout_harness", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def run_config(python: Path, tmp_path: Path, name: str, config: dict[str, Any]) -> dict[str, Any]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": f"memstack-{name}",
                "stack": {"name": "memstack"},
                "storage": {"engine": "memory"},
                **SMALL,
                **config,
            }
        )
    )
    out = sprout(python, "run", str(path), "--json", str(tmp_path / f"{name}.json"), "-q", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    report: dict[str, Any] = json.loads((tmp_path / f"{name}.json").read_text())
    return report


def test_sprout_list_shows_the_installed_stack(python: Path, tmp_path: Path) -> None:
    out = sprout(python, "list", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^  memstack +memstack\.stack:MemStack$", out.stdout, re.M), out.stdout


@pytest.mark.parametrize("suite", sorted(RUNS))
def test_every_suite_runs_on_memstack(python: Path, tmp_path: Path, suite: str) -> None:
    listed = sprout(python, "list", cwd=tmp_path).stdout
    (steps,) = re.findall(rf"^  {suite} +(.+)$", listed.split("suites:")[1], re.M)
    report = run_config(python, tmp_path, suite, {"suite": suite, **RUNS[suite]})
    assert report["status"] == "ok"
    assert report["metadata"]["stack"] == "memstack"
    assert report["metadata"]["storage"] == {"engine": "memory", "durable_nodes": 1}  # from describe()
    phases = {p["name"]: (p["status"], p.get("reason")) for p in report["phases"]}
    assert len(phases) == len(steps.split(" -> "))
    for name, (status, reason) in phases.items():
        assert status == ("unsupported" if name in UNSUPPORTED else "ok"), (name, status, reason)


def test_phases_on_an_ephemeral_node(python: Path, tmp_path: Path) -> None:
    report = run_config(
        python, tmp_path, "ephemeral", {"topology": {"durable": 2, "ephemeral": 2}, "phases": EPHEMERAL_PHASES}
    )
    assert {p["name"]: p["status"] for p in report["phases"]} == {
        "create@ephemeral": "ok",
        "live-limit@ephemeral": "ok",
        "crud@ephemeral": "ok",
    }
    assert report["metadata"]["topology"]["links"] == [
        {"ephemeral": 0, "durable": 0, "connector": "inprocess"},
        {"ephemeral": 1, "durable": 1, "connector": "inprocess"},
    ]


def test_validate_refuses_what_memstack_cannot_honour(python: Path, tmp_path: Path) -> None:
    path = tmp_path / "leveldb.yaml"
    path.write_text(yaml.safe_dump({"stack": {"name": "memstack"}, "storage": {"engine": "leveldb"}}))
    out = sprout(python, "validate", str(path), cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: storage.engine: got 'leveldb'; memstack keeps its data in memory: set storage.engine: memory"
    ]


def test_the_settings_the_doc_shows_are_what_a_run_passes(python: Path, tmp_path: Path) -> None:
    config = yaml.safe_load(settings_block("config"))
    shown = ast.literal_eval(settings_block("received"))
    (tmp_path / "settings_probe.py").write_text(PROBE)
    path = tmp_path / "settings.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                **config,
                "stack": {"name": "settings_probe:Probe"},
                "datasets": {"albums": 20, "pets": 20},
                "phases": [{"name": "create"}],
                "workload": {"count": 10},
            }
        )
    )
    out = sprout(python, "run", str(path), "-q", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("SETTINGS ")]
    assert json.loads(line.removeprefix("SETTINGS ")) == {**shown, "name": "settings_probe:Probe"}
    assert shown["name"] == config["stack"]["name"]
