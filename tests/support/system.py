"""Real tools the tests need from the system: found on PATH or installed with apt-get when
the tests run as root (CI does); otherwise the test fails saying what to install, never skips."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

import pytest


def find(names: Sequence[str]) -> str | None:
    """The first of ``names`` on PATH."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def apt_install(package: str) -> str:
    """``apt-get install -y package`` when root and apt-get is there; what went wrong otherwise
    (an empty string when it ran)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "not root or no apt-get here"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", package]
    run = lambda argv: subprocess.run(
        argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900, check=False
    )
    done = run(install)
    if done.returncode != 0:  # stale package lists: refresh once and retry
        run(["apt-get", "update", "-q"])
        done = run(install)
    return "" if done.returncode == 0 else f"`{' '.join(install)}` failed: {done.stderr.strip()[-400:]}"


def require_tool(names: Sequence[str], package: str, why: str) -> str:
    """The path of a tool called one of ``names``, installed from Debian ``package`` if need be."""
    path = find(names)
    problem = ""
    if path is None:
        problem = apt_install(package)
        path = find(names)
    if path is None:
        pytest.fail(
            f"{why} need {names[0]} ({problem or 'installed, but not on PATH'}): install it with "
            f"`apt-get install -y {package}` (Debian/Ubuntu, as root), then re-run",
            pytrace=False,
        )
    return path
