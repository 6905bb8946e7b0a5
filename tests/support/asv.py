"""Helpers for the asv tests: a throwaway clone of the checkout under test, git and asv calls.

Not a test module (no `test_` prefix); imported by test_asv_*.py and test_published_page.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterable

REPO_ROOT = Path(__file__).resolve().parents[2]
GIT_ID = {
    "GIT_AUTHOR_NAME": "sprout tests",
    "GIT_AUTHOR_EMAIL": "tests@sprout.invalid",
    "GIT_COMMITTER_NAME": "sprout tests",
    "GIT_COMMITTER_EMAIL": "tests@sprout.invalid",
}
# The benchmark modules the clone keeps: small, project-independent, fast in `tiny` scale.
KEEP_BENCHMARKS = ("__init__.py", "_common.py", "anchors.py")


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=repo,
        env={**os.environ, **GIT_ID},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed in {repo}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    """Commit everything in the clone's working tree; return the new commit hash."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def _working_tree_files(root: Path) -> Iterable[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [p for p in out.split("\0") if p]


def clone_under_test(dest: Path, *, keep_benchmarks: Iterable[str] = KEEP_BENCHMARKS) -> Path:
    """Clone the checkout under test into `dest`, as its working tree is right now.

    `git clone` copies HEAD; files changed or added since HEAD are overlaid and committed
    ("working tree under test") so the test measures the code being tested (in CI the
    overlay is empty). Benchmark modules other than `keep_benchmarks` are removed from the
    clone's working tree (asv reads benchmarks from the working tree, the project from each
    commit): the test then depends only on the asv machinery and the anchors.
    """
    subprocess.run(
        ["git", "clone", "-q", "--no-hardlinks", str(REPO_ROOT), str(dest)], check=True, stdin=subprocess.DEVNULL
    )
    for rel in _working_tree_files(REPO_ROOT):
        src = REPO_ROOT / rel
        target = dest / rel
        if src.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
        elif target.exists() and not src.exists():
            target.unlink()
    if git(dest, "status", "--porcelain"):
        commit_all(dest, "working tree under test")
    git(dest, "checkout", "-q", "-B", "main")
    bench = dest / "benchmarks"
    keep = set(keep_benchmarks)
    for p in bench.iterdir():
        if p.name not in keep:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    return dest


def load_conf(repo: Path) -> dict:
    """asv.conf.json as asv reads it (asv allows // comments)."""
    from asv.util import load_json

    return load_json(str(repo / "asv.conf.json"), js_comments=True)


def override_conf(repo: Path, **values: object) -> None:
    """Rewrite the clone's asv.conf.json with `values` (left uncommitted: asv reads the working tree)."""
    conf = load_conf(repo)
    conf.update(values)
    (repo / "asv.conf.json").write_text(json.dumps(conf, indent=4) + "\n")


def asv(repo: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """`python -m asv ...` in `repo` with this venv's interpreter; output captured (text)."""
    return subprocess.run(
        [sys.executable, "-m", "asv", *args],
        cwd=repo,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def explain(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"


def result_files(repo: Path, results_dir: str = ".asv/results") -> dict[str, dict]:
    """commit hash -> parsed asv results file (one environment per commit here)."""
    out = {}
    for f in (repo / results_dir).glob("*/*.json"):
        if f.name in ("machine.json", "benchmarks.json"):
            continue
        data = json.loads(f.read_text())
        out[data["commit_hash"]] = data
    return out
