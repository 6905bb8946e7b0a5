"""A durable loam node in its own OS process: `python -m loam serve`, started and stopped here.

The server binds a free port (on 127.0.0.1 unless told otherwise) and prints `loam serving on ws://...` once bound;
its stderr goes to a log file whose tail explains a server that failed to start or exited
badly. It runs in a session of its own, so a Ctrl+C in the terminal reaches the harness
first and the harness stops the server after its clients (SIGTERM: the server closes its
connections and storage and exits 0; SIGKILL after a grace period).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from sprout_harness.contracts import StackError

READY = "loam serving on "
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0


@dataclass
class ServerProcess:
    """One `loam serve` process (or, with `proc` None, a server someone else runs at `url`)."""

    name: str
    url: str
    proc: subprocess.Popen[str] | None = None
    log: Path | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def where(self) -> str:
        if self.proc is None:
            return f"external server at {self.url}"
        return f"own process (pid {self.proc.pid}, python -m loam serve) at {self.url}"

    def log_tail(self, lines: int = 5) -> str:
        if self.log is None or not self.log.exists():
            return ""
        text = self.log.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def rss_bytes(self) -> int | None:
        """The server's resident memory (from /proc), or None for a server not started here."""
        if self.proc is None:
            return None
        try:
            return int(Path(f"/proc/{self.proc.pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return None

    def alive(self) -> bool:
        return self.proc is None or self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after the grace period; raises StackError when the server had
        exited on its own with an error, or did not stop cleanly (the tail of its log says why)."""
        if self.proc is None:
            return
        died = self.proc.poll()
        if died is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise StackError(
                    f"{self.name}: server pid {self.proc.pid} ignored SIGTERM for {STOP_GRACE_S:g} s; "
                    f"killed. Log: {self.log_tail()}"
                ) from None
        else:
            code = died
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if died is not None or code != 0:
            raise StackError(
                f"{self.name}: server pid {self.proc.pid} "
                f"{'had exited' if died is not None else 'exited'} with {code}: {self.log_tail()}"
            )


def serve_args(
    engine: str,
    params: Mapping[str, Any],
    policy: Mapping[str, Any],
    max_pending: int | None = None,
    host: str = "127.0.0.1",
) -> list[str]:
    """`loam serve` flags for a durable node configured as the adapter builds one in-process."""
    args = ["--storage", engine, "--host", host, "--port", "0"]
    rest = dict(params)
    for key, flag in (("path", "--path"), ("dsn", "--dsn"), ("pool_size", "--pool-size")):
        if key in rest:
            args += [flag, str(rest.pop(key))]
    for key, value in rest.items():
        args += ["--storage-param", f"{key}={json.dumps(value)}"]
    pol = dict(policy)
    args += ["--policy", str(pol.pop("id"))]
    for key, value in pol.items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        args += ["--policy-param", f"{key}={text}"]
    if max_pending is not None:
        args += ["--max-pending", str(max_pending)]
    return args


async def start_server(name: str, args: list[str], log: Path, add_cleanup: Any) -> ServerProcess:
    """Start `python -m loam serve ARGS` and wait for its URL. The stop is registered with
    `add_cleanup` before anything is awaited, so a cancelled start still stops the process."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as err:
        # a Popen, not an asyncio subprocess: the stop is a plain cleanup callable that runs
        # after the event loop's work is done; Popen itself returns once the process exists
        proc = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "loam", "serve", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,
        )
    server = ServerProcess(name, "", proc, log)
    add_cleanup(server.stop)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            line = await asyncio.to_thread(proc.stdout.readline)
    except TimeoutError:
        raise StackError(
            f"{name}: `loam serve` printed no address within {START_TIMEOUT_S:g} s: {server.log_tail()}"
        ) from None
    if not line.startswith(READY):
        await asyncio.to_thread(proc.wait, 5)
        server.proc = None  # exited: nothing to stop, and its error is this one
        raise StackError(
            f"{name}: `loam serve` exited with {proc.returncode} before serving: {server.log_tail() or line.strip()}"
        )
    server.url = line[len(READY) :].strip()
    return server
