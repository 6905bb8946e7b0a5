"""Processes a test started, directly or not: found through /proc, so a test can say which
ones a run left behind."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path


def stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live, non-zombie process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    if fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> set[tuple[int, int]]:
    """(pid, start time) of every live descendant of `root` (one in a session of its own too:
    the parent link stays)."""
    children: dict[int, list[tuple[int, int]]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            st = stat(int(p.name))
            if st is not None:
                children.setdefault(st[0], []).append((int(p.name), st[1]))
    out: set[tuple[int, int]] = set()
    todo = [root]
    while todo:
        for pid, start in children.get(todo.pop(), []):
            out.add((pid, start))
            todo.append(pid)
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(procs: set[tuple[int, int]]) -> list[str]:
    """`pid: cmdline` of those of `procs` still running (the same process, not a reused pid)."""
    left = []
    for pid, start in procs:
        st = stat(pid)
        if st is not None and st[1] == start:
            left.append(f"{pid}: {cmdline(pid)}")
    return left


def pids_mentioning(text: str) -> list[int]:
    """Every live, non-zombie process (but this one) whose command line contains `text`."""
    return [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit()
        and int(p.name) != os.getpid()
        and text in cmdline(int(p.name))
        and stat(int(p.name)) is not None
    ]


def mentioning(text: str) -> list[str]:
    """`pid: cmdline` of every live process (but this one) whose command line contains `text`."""
    return [f"{pid}: {cmdline(pid)}" for pid in pids_mentioning(text)]


class StderrWatch:
    """Reads a child's stderr (text mode) in a thread: every line kept, `seen` set once a line
    contains `marker`."""

    def __init__(self, proc: subprocess.Popen[str], marker: str) -> None:
        self.lines: list[str] = []
        self.seen = threading.Event()
        self._proc, self._marker = proc, marker
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self.lines.append(line)
            if self._marker in line:
                self.seen.set()

    def text(self, join_s: float = 5.0) -> str:
        """Everything read, after waiting up to `join_s` for the stream to end."""
        self._thread.join(join_s)
        return "".join(self.lines)
