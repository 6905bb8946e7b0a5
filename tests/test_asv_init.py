"""`sprout asv init`: asv history of the harness's benchmark families in a store's own repository.

The slow test is the whole user path, for real: a throwaway git repository holding a small
stack (a copy of examples/memstack renamed `tinystore`, with its entry point) gets three
commits, the third with a `get` that busy-waits about ten times its own time; a wheel of the
harness is built from this checkout (its files copied to a temp dir first, so no build/ or
egg-info lands here); `sprout asv init --stack tinystore --harness-wheel ...`, `asv machine`,
`asv run ALL` (tiny sizes, the fetch family), `asv publish`, the page served on 127.0.0.1 and
loaded in headless Chromium (three commits on the graph), and `asv continuous HEAD^ HEAD`
exiting 1 and naming the slow benchmark. Times of each step are printed (pytest -s).

The fast tests cover bad input: an existing asv.conf.json (refused, then --force), a directory
that is not a git repository, an unknown stack.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from sprout_harness.asvtools import offline
from sprout_harness.asvtools.init import CONF_NAME, SUITE_CONFIG
from sprout_harness.cli import cli
from support.asv import REPO_ROOT, asv, commit_all, explain, git
from support.browser import Chromium, chromium  # noqa: F401  (the session fixture)

STORE = "tinystore"
BENCH = "bench_fetch.GetById.track_get"
TINY = {"SPROUT_BENCH_SCALE": "tiny", "SPROUT_BENCH_CHECK_TIMEOUT": "5"}
SLOW_GET = """    async def get(self, collection: str, id: str) -> Doc | None:
        t0 = time.perf_counter()
        row = self.store.rows(collection).get(id)
        doc = None if row is None else Doc(id, dict(row))
        own = time.perf_counter() - t0
        while time.perf_counter() - t0 < 10 * own + 50e-6:  # deliberately slow: ~10x its own time
            pass
        return doc
"""


def _init(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["asv", "init", *args])
    return result.exit_code, result.output


def _git_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    return path


def _store(repo: Path) -> None:
    """examples/memstack as a distribution of its own named `tinystore`."""
    shutil.copytree(
        REPO_ROOT / "examples" / "memstack" / "memstack",
        repo / STORE,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for f in [*(repo / STORE).glob("*.py"), repo / "pyproject.toml"]:
        src = f if f.exists() else REPO_ROOT / "examples" / "memstack" / "pyproject.toml"
        text = src.read_text().replace("sprout-memstack", STORE).replace("memstack", STORE)
        f.write_text(text)


# --- bad input -------------------------------------------------------------------------------


def test_refuses_an_existing_conf_unless_forced(tmp_path: Path) -> None:
    repo = _git_repo(tmp_path / "r")
    _store(repo)
    code, out = _init(str(repo), "--stack", STORE)
    assert code == 0, out
    conf = json.loads((repo / CONF_NAME).read_text())
    assert conf["repo"] == "." and conf["branches"] == ["main"] and conf["environment_type"] == "virtualenv"
    assert "--no-build-isolation" in conf["build_command"][0]
    assert {"setuptools", "wheel", "numpy"} <= set(conf["matrix"]["req"])
    assert re.search(r"sprout-harness==\S+ \{wheel_file\}", conf["install_command"][0])
    assert json.loads((repo / SUITE_CONFIG).read_text()) == {"stacks": [STORE]}
    bench = (repo / "benchmarks" / "bench_fetch.py").read_text()
    assert "from sprout_harness.asvsuite.fetch import *" in bench
    assert "## Benchmarks (asv)" in (repo / "README.md").read_text()

    (repo / CONF_NAME).write_text("{}\n")
    code, out = _init(str(repo), "--stack", STORE)
    assert code == 2 and out.count("\n") == 1, out
    assert CONF_NAME in out and "--force" in out and "Traceback" not in out
    assert (repo / CONF_NAME).read_text() == "{}\n"

    code, out = _init(str(repo), "--stack", STORE, "--force")
    assert code == 0, out
    assert json.loads((repo / CONF_NAME).read_text())["repo"] == "."
    assert (repo / "README.md").read_text().count("## Benchmarks (asv)") == 1


def test_not_a_git_repository(tmp_path: Path) -> None:
    code, out = _init(str(tmp_path), "--stack", STORE)
    assert code == 2 and out.count("\n") == 1 and "git" in out and "Traceback" not in out, out
    assert not (tmp_path / CONF_NAME).exists()


def test_unknown_stack(tmp_path: Path) -> None:
    repo = _git_repo(tmp_path / "r")
    code, out = _init(str(repo), "--stack", "no-such-stack")
    assert code == 2 and out.count("\n") == 1 and "no-such-stack" in out and "Traceback" not in out, out
    assert not (repo / CONF_NAME).exists()


def test_no_stack_of_its_own_needs_stack(tmp_path: Path) -> None:
    code, out = _init(str(_git_repo(tmp_path / "r")))
    assert code == 2 and out.count("\n") == 1 and "--stack" in out, out


# --- the whole path, for real ---------------------------------------------------------------


def _harness_wheel(tmp: Path) -> Path:
    src = tmp / "harness-src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, src / name)
    shutil.copytree(REPO_ROOT / "sprout_harness", src / "sprout_harness", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp / "wheels"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, explain(proc)
    (wheel,) = out.glob("sprout_harness-*.whl")
    return wheel


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.slow
async def test_asv_history_of_a_stores_own_repository(tmp_path: Path, chromium: Chromium) -> None:  # noqa: F811
    times: dict[str, float] = {}

    def step(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        t0 = time.perf_counter()
        proc = asv(repo, *args, env=env)
        times[name] = time.perf_counter() - t0
        return proc

    t0 = time.perf_counter()
    wheel = _harness_wheel(tmp_path)
    times["harness wheel"] = time.perf_counter() - t0
    repo = _git_repo(tmp_path / STORE)
    _store(repo)
    code, out = _init(str(repo), "--stack", STORE, "--harness-wheel", str(wheel))
    assert code == 0, out
    (repo / ".gitignore").write_text(".asv/\nhtml/\n")
    commits = [commit_all(repo, "tinystore with asv tracking")]
    stack_py = repo / STORE / "stack.py"
    stack_py.write_text(stack_py.read_text().replace('"""', '"""tinystore: ', 1))
    commits.append(commit_all(repo, "a docstring"))
    text = stack_py.read_text()
    fast_get = re.search(r"    async def get\(self, collection.*?\n\n", text, re.S)
    assert fast_get is not None and "MemClient" in text[: fast_get.start()], "the client's get moved"
    stack_py.write_text(text[: fast_get.start()] + SLOW_GET + "\n" + text[fast_get.end() :])
    commits.append(commit_all(repo, "get busy-waits"))

    proc = step("asv machine", "machine", "--yes")
    assert proc.returncode == 0, explain(proc)
    proc = step("asv run ALL (3 commits)", "run", "ALL", "--bench", "bench_fetch.GetById", "--show-stderr", env=TINY)
    assert proc.returncode == 0, explain(proc)
    results = [f for f in (repo / ".asv" / "results").glob("*/*.json") if f.name != "machine.json"]
    got = {json.loads(f.read_text())["commit_hash"]: json.loads(f.read_text()) for f in results}
    assert set(commits) <= set(got), explain(proc)
    for c in commits:
        values = got[c]["results"][BENCH][0]
        assert any(v is not None and v > 0 for v in values), (c, values)

    proc = step("asv publish", "publish")
    assert proc.returncode == 0, explain(proc)
    html = repo / "html"
    offline.make_offline(html, package_dir=REPO_ROOT / offline.PACKAGE_DIR)
    handler = functools.partial(_Quiet, directory=str(html))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/index.html#{BENCH}"
        async with chromium.page(url) as page:
            await page.wait_for(
                "window.$ && $('#main-graph').data('plot') && $('#main-graph').data('plot').getData().length > 0"
            )
            points = await page.evaluate(
                "$('#main-graph').data('plot').getData().map(s => s.data.filter(p => p[1] !== null).map(p => p[0]))"
            )
    finally:
        server.shutdown()
        server.server_close()
    assert points and max(len(set(p)) for p in points) == 3, points  # three commits on the graph

    proc = step(
        "asv continuous HEAD^ HEAD",
        "continuous",
        "HEAD^",
        "HEAD",
        "--bench",
        "bench_fetch.GetById",
        "--factor",
        "1.2",
        env=TINY,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, explain(proc)
    assert "PERFORMANCE DECREASED" in out and BENCH in out, explain(proc)
    print("\nasv init path, seconds:", json.dumps({k: round(v, 1) for k, v in times.items()}))
    print("\n".join(line for line in out.splitlines() if BENCH in line))
