"""Facts about the machine and process a run happened on (for run metadata)."""

from __future__ import annotations

import os
import platform
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far, in bytes (process lifetime, not per phase)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def host_info() -> dict[str, Any]:
    """Host name, OS, CPU model and count, memory: enough to tell machines apart in a report."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {
        "hostname": socket.gethostname(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "memory_bytes": _memory_bytes(),
    }


def python_info() -> dict[str, Any]:
    """Interpreter implementation, version and path, plus numpy's version."""
    import numpy

    return {
        "implementation": platform.python_implementation(),
        "version": platform.python_version(),
        "executable": sys.executable,
        "compiler": platform.python_compiler(),
        "numpy": numpy.__version__,
    }


def git_info(path: str | os.PathLike[str] = ".") -> tuple[str | None, bool]:
    """(commit sha of HEAD, whether tracked files differ from it); (None, False) outside a git checkout."""

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None, False
    # Untracked files (results, caches) do not change what was measured; modified tracked files do.
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit.strip(), bool(status and status.strip())


def _busy_s() -> float | None:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU seconds of this process (every thread) and of its children it has waited for."""
    self_, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return self_.ru_utime + self_.ru_stime + children.ru_utime + children.ru_stime


class OtherCpu:
    """The share of the machine's CPU that other processes took while something ran: the
    machine's busy time from /proc/stat, minus this process's and its waited children's,
    over wall time x cores. A run measured while another job loaded the machine reads high
    (0.5: half of every core was busy with something else); `None` where /proc is missing."""

    def __init__(self) -> None:
        self._t0, self._busy0, self._own0 = time.monotonic(), _busy_s(), _own_cpu_s()

    def share(self) -> float | None:
        busy = _busy_s()
        wall = time.monotonic() - self._t0
        if busy is None or self._busy0 is None or wall <= 0:
            return None
        other = (busy - self._busy0) - (_own_cpu_s() - self._own0)
        # /proc/stat counts every core of the machine; rusage runs slightly ahead of its ticks
        return round(min(1.0, max(0.0, other / (wall * (os.cpu_count() or 1)))), 3)
