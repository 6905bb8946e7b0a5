"""A throwaway PostgreSQL cluster for tests and benchmarks, or the server named by SPROUT_PG_DSN.

`ensure_postgres()` returns a `PostgresHandle`: when `SPROUT_PG_DSN` is set it checks that
DSN connects and uses it; otherwise it runs `initdb` into a temp dir and starts a server on
127.0.0.1 (free port) plus a unix socket in that dir, with fsync off (a test cluster: fast,
not crash-safe; `describe()` says so). The server is stopped and its dir removed by
`handle.stop()`, at exit, on SIGTERM and on KeyboardInterrupt (via `throwaway_postgres()`).

PostgreSQL refuses to run as root, so as root the server binaries run as the `postgres`
user. Stack-neutral: stacks ask for a cluster through it.

CLI: `python -m sprout_harness.services.postgres` starts one, prints its DSN, waits for Ctrl+C.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

ENV_DSN = "SPROUT_PG_DSN"
DEFAULT_SEARCH_GLOB = "/usr/lib/postgresql/*/bin"
NOT_FOUND_MESSAGE = (
    "PostgreSQL server binaries not found (looked in PATH and /usr/lib/postgresql/*/bin): "
    "install them (Debian: apt-get install postgresql) or set SPROUT_PG_DSN"
)
# Test-cluster settings: durability traded for start-up and write speed (reported by describe()).
SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL could be provided; the message says what to install or set."""


# --- DSN helpers -------------------------------------------------------------------------

_URL_PASSWORD = re.compile(r"^(postgres(?:ql)?://[^:/@?#]*:)([^@/?#]*)(@)", re.IGNORECASE)
_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)


def mask_dsn(dsn: str) -> str:
    """The DSN with any password replaced by `***` (URL userinfo, `password=` key or query param)."""
    masked = _URL_PASSWORD.sub(r"\1***\3", dsn)
    return _KV_PASSWORD.sub(r"\1***", masked)


def _connect(dsn: str, **kw: Any):
    import psycopg

    return psycopg.connect(dsn, connect_timeout=5, **kw)


def _with_dbname(dsn: str, name: str) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(dsn, dbname=name)


def _ident(name: str) -> str:
    if not name or "\x00" in name:
        raise ValueError(f"bad database name {name!r}")
    return '"' + name.replace('"', '""') + '"'


def create_database(dsn: str, name: str, template: str | None = None) -> str:
    """CREATE DATABASE `name` (optionally from `template`) on the server of `dsn`; return its DSN."""
    sql = f"CREATE DATABASE {_ident(name)}"
    if template:
        sql += f" TEMPLATE {_ident(template)}"
    with _connect(dsn, autocommit=True) as conn:
        conn.execute(sql)
    return _with_dbname(dsn, name)


def drop_database(dsn: str, name: str) -> None:
    """DROP DATABASE IF EXISTS `name`, disconnecting its sessions first (PostgreSQL >= 13)."""
    with _connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")


def check_dsn(dsn: str) -> str:
    """Connect once; return the server version string or raise PostgresUnavailable naming the DSN."""
    try:
        with _connect(dsn) as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0])
    except Exception as exc:  # psycopg.OperationalError and friends
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PostgresUnavailable(
            f"cannot connect to PostgreSQL at {mask_dsn(dsn)} ({ENV_DSN}): {first}; "
            f"start that server, or unset {ENV_DSN} to use a throwaway cluster"
        ) from None


# --- binaries ------------------------------------------------------------------------------


def _version_key(path: str) -> tuple[int, ...]:
    nums = re.findall(r"\d+", Path(path).parent.name)
    return tuple(int(n) for n in nums) or (0,)


def find_pg_bin(search_dirs: Sequence[str] | None = None) -> Path:
    """The directory holding `initdb` and `pg_ctl`.

    Default search: PATH, then `/usr/lib/postgresql/*/bin` (highest version first).
    `search_dirs` replaces that search (tests use it to simulate missing binaries).
    """
    if search_dirs is None:
        candidates: list[str] = []
        found = shutil.which("initdb")
        if found:
            candidates.append(str(Path(found).resolve().parent))
        candidates += sorted(glob.glob(DEFAULT_SEARCH_GLOB), key=_version_key, reverse=True)
    else:
        candidates = list(search_dirs)
    for d in candidates:
        if all(os.access(os.path.join(d, exe), os.X_OK) for exe in ("initdb", "pg_ctl")):
            return Path(d)
    raise PostgresUnavailable(NOT_FOUND_MESSAGE)


# --- the throwaway cluster -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _traversable_by_others(path: Path) -> bool:
    for p in [path, *path.parents]:
        if not os.stat(p).st_mode & stat.S_IXOTH:
            return False
    return True


@dataclass
class PostgresHandle:
    """A usable PostgreSQL: `dsn` (TCP), `origin` ("env" or "throwaway"), `stop()`."""

    dsn: str
    origin: str
    server_version: str = ""
    datadir: Path | None = None
    socket_dir: Path | None = None
    port: int | None = None
    bin_dir: Path | None = None
    _service: PostgresService | None = field(default=None, repr=False)

    @property
    def socket_dsn(self) -> str | None:
        """DSN over the unix socket (throwaway clusters only; lower latency than TCP)."""
        if self.socket_dir is None:
            return None
        return f"host={self.socket_dir} port={self.port} user=postgres dbname=postgres"

    def stop(self) -> None:
        """Stop the throwaway server and remove its dir (no-op for an env DSN); idempotent."""
        if self._service is not None:
            self._service.stop()

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "origin": self.origin,
            "dsn": mask_dsn(self.dsn),
            "server_version": self.server_version,
        }
        if self.origin == "throwaway":
            out["settings"] = dict(SERVER_SETTINGS)
            out["note"] = "throwaway test cluster: fsync=off, synchronous_commit=off, full_page_writes=off"
            out["bin_dir"] = str(self.bin_dir)
        return out


_LIVE: set[PostgresService] = set()
_LIVE_LOCK = threading.Lock()
_HOOKS_INSTALLED = False
_PREV_SIGTERM: Any = None


def _stop_all() -> None:
    with _LIVE_LOCK:
        services = list(_LIVE)
    for s in services:
        with contextlib.suppress(Exception):
            s.stop()


def _on_sigterm(signum: int, frame: Any) -> None:
    _stop_all()
    prev = _PREV_SIGTERM
    if callable(prev):
        prev(signum, frame)
    elif prev == signal.SIG_IGN:
        return
    else:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _install_hooks() -> None:
    global _HOOKS_INSTALLED, _PREV_SIGTERM
    if _HOOKS_INSTALLED:
        return
    _HOOKS_INSTALLED = True
    atexit.register(_stop_all)
    if threading.current_thread() is threading.main_thread():
        _PREV_SIGTERM = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_sigterm)


class PostgresService:
    """One throwaway cluster: `start()` -> handle, `stop()` removes everything (idempotent)."""

    def __init__(self, search_dirs: Sequence[str] | None = None, base_dir: str | None = None):
        self.search_dirs = search_dirs
        self.base_dir = base_dir
        self.bin_dir: Path | None = None
        self.tmp: Path | None = None
        self.datadir: Path | None = None
        self.port: int | None = None
        self.handle: PostgresHandle | None = None
        self._as_postgres = os.geteuid() == 0
        self._lock = threading.Lock()

    # running binaries (as `postgres` when we are root)
    def _run(self, args: list[str], *, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        kw: dict[str, Any] = {}
        if self._as_postgres:
            kw = {"user": "postgres", "group": "postgres", "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        proc = subprocess.run(
            args,
            cwd=self.tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            **kw,
        )
        if check and proc.returncode != 0:
            raise PostgresUnavailable(
                f"{Path(args[0]).name} failed (exit {proc.returncode}): {proc.stdout.strip()[-2000:]}"
                + self._log_tail()
            )
        return proc

    def _log_tail(self) -> str:
        if self.tmp is None:
            return ""
        log = self.tmp / "server.log"
        with contextlib.suppress(OSError):
            return "\nserver log:\n" + log.read_text(errors="replace")[-2000:]
        return ""

    def _make_tmp(self) -> Path:
        bases = [self.base_dir] if self.base_dir else [tempfile.gettempdir(), "/tmp"]
        for base in bases:
            b = Path(base).resolve()
            if not self._as_postgres or _traversable_by_others(b):
                tmp = Path(tempfile.mkdtemp(prefix="sprout-pg-", dir=b))
                if self._as_postgres:
                    shutil.chown(tmp, "postgres", "postgres")
                    tmp.chmod(0o700)
                return tmp
        raise PostgresUnavailable(
            f"no temp dir traversable by the postgres user (tried {bases}): "
            "set TMPDIR to a world-traversable directory or set SPROUT_PG_DSN"
        )

    def start(self) -> PostgresHandle:
        with self._lock:
            if self.handle is not None:
                return self.handle
            self.bin_dir = find_pg_bin(self.search_dirs)
            _install_hooks()
            self.tmp = self._make_tmp()
            with _LIVE_LOCK:
                _LIVE.add(self)
            try:
                self.datadir = self.tmp / "data"
                self._run(
                    [
                        str(self.bin_dir / "initdb"),
                        "-D",
                        str(self.datadir),
                        "--no-sync",
                        "-A",
                        "trust",
                        "-U",
                        "postgres",
                        "-E",
                        "UTF8",
                        "--locale=C",
                    ],
                )
                last_err: Exception | None = None
                for _ in range(3):  # a free port can be taken between probe and bind
                    self.port = _free_port()
                    opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.tmp} " + " ".join(
                        f"-c {k}={v}" for k, v in SERVER_SETTINGS.items()
                    )
                    try:
                        self._run(
                            [
                                str(self.bin_dir / "pg_ctl"),
                                "-D",
                                str(self.datadir),
                                "-l",
                                str(self.tmp / "server.log"),
                                "-w",
                                "-t",
                                "60",
                                "-o",
                                opts,
                                "start",
                            ],
                        )
                        break
                    except PostgresUnavailable as exc:
                        last_err = exc
                else:
                    raise last_err  # type: ignore[misc]
                dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
                self.handle = PostgresHandle(
                    dsn=dsn,
                    origin="throwaway",
                    server_version=check_dsn(dsn),
                    datadir=self.datadir,
                    socket_dir=self.tmp,
                    port=self.port,
                    bin_dir=self.bin_dir,
                    _service=self,
                )
                return self.handle
            except BaseException:
                self._stop_locked()
                raise

    def running(self) -> bool:
        """True while `pg_ctl status` reports a server for this cluster's data dir."""
        if self.datadir is None or self.bin_dir is None or not self.datadir.exists():
            return False
        return self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.datadir), "status"], check=False).returncode == 0

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        try:
            if self.datadir is not None and (self.datadir / "postmaster.pid").exists():
                proc = self._run(
                    [str(self.bin_dir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "-t", "30", "stop"],
                    check=False,
                )
                if proc.returncode != 0 and (self.datadir / "postmaster.pid").exists():
                    self._kill_postmaster()
        finally:
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
            with _LIVE_LOCK:
                _LIVE.discard(self)
            self.tmp = None
            self.handle = None

    def _kill_postmaster(self) -> None:
        # Last resort so a server never outlives us: SIGQUIT (immediate shutdown), then SIGKILL.
        with contextlib.suppress(Exception):
            pid = int((self.datadir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGQUIT)
            for _ in range(50):
                time.sleep(0.1)
                os.kill(pid, 0)
            os.kill(pid, signal.SIGKILL)


def ensure_postgres(search_dirs: Sequence[str] | None = None) -> PostgresHandle:
    """SPROUT_PG_DSN if set (checked to connect), else a started throwaway cluster.

    Raises PostgresUnavailable with a one-line reason and fix.
    """
    dsn = os.environ.get(ENV_DSN)
    if dsn:
        return PostgresHandle(dsn=dsn, origin="env", server_version=check_dsn(dsn))
    return PostgresService(search_dirs=search_dirs).start()


@contextlib.contextmanager
def throwaway_postgres(search_dirs: Sequence[str] | None = None) -> Iterator[PostgresHandle]:
    """`ensure_postgres()` as a context manager: the throwaway server is stopped on exit."""
    handle = ensure_postgres(search_dirs)
    try:
        yield handle
    finally:
        handle.stop()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        with throwaway_postgres() as handle:
            print(handle.dsn, flush=True)
            print(f"# {handle.describe()}", file=sys.stderr, flush=True)
            print("# press Ctrl+C to stop", file=sys.stderr, flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    except PostgresUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
