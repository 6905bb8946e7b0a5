"""The throwaway PostgreSQL service: start, connect, stop cleanly, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from sprout_harness.services.postgres import (
    ENV_DSN,
    NOT_FOUND_MESSAGE,
    PostgresService,
    PostgresUnavailable,
    create_database,
    drop_database,
    ensure_postgres,
    find_pg_bin,
    mask_dsn,
    throwaway_postgres,
)


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in state


def test_throwaway_cluster_starts_serves_and_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DSN, raising=False)
    svc = PostgresService()
    handle = svc.start()
    tmp = svc.tmp
    assert handle.origin == "throwaway"
    with psycopg.connect(handle.dsn) as conn:
        assert conn.execute("SELECT 1 + 1").fetchone() == (2,)
        assert conn.execute("SHOW fsync").fetchone() == ("off",)
    with psycopg.connect(handle.socket_dsn) as conn:  # the unix socket works too
        assert conn.execute("SELECT 1").fetchone() == (1,)
    desc = handle.describe()
    assert desc["settings"]["fsync"] == "off" and "fsync=off" in desc["note"]
    assert svc.running()
    pid = int((svc.datadir / "postmaster.pid").read_text().split()[0])
    assert _alive(pid)

    handle.stop()
    assert not svc.running()
    assert tmp is not None and not tmp.exists()
    assert not _alive(pid)
    handle.stop()  # idempotent


def test_context_manager_stops_on_keyboard_interrupt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DSN, raising=False)
    with pytest.raises(KeyboardInterrupt):
        with throwaway_postgres() as handle:
            svc = handle._service
            tmp = svc.tmp
            raise KeyboardInterrupt
    assert not tmp.exists() and not svc.running()


def test_sigterm_stops_the_cluster(tmp_path: Path) -> None:
    # A child process starts a cluster, prints its dir, and is sent SIGTERM.
    code = (
        "import sys, time\n"
        "from sprout_harness.services.postgres import PostgresService\n"
        "svc = PostgresService(); h = svc.start()\n"
        "print(svc.tmp, flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != ENV_DSN}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        tmp = Path(proc.stdout.readline().strip())
        pid = int((tmp / "data" / "postmaster.pid").read_text().split()[0])
        assert _alive(pid)
        proc.terminate()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not tmp.exists()
    assert not _alive(pid)


def test_create_and_drop_database(pg_dsn: str) -> None:
    dsn = create_database(pg_dsn, "svc_test_db", template="template0")
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("svc_test_db",)
    drop_database(pg_dsn, "svc_test_db")
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'svc_test_db'").fetchone() == (0,)


def test_pg_database_fixture_gives_a_fresh_database(pg_database: str) -> None:
    with psycopg.connect(pg_database) as conn:
        n = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
    assert n == (0,)


@pytest.mark.parametrize(
    "dsn, expected",
    [
        ("postgresql://bob:s3cret@db.example:5432/app", "postgresql://bob:***@db.example:5432/app"),
        ("postgres://bob:s3cret@h/app?sslmode=require", "postgres://bob:***@h/app?sslmode=require"),
        ("postgresql://bob@h/app?password=s3cret", "postgresql://bob@h/app?password=***"),
        ("host=h user=bob password=s3cret dbname=app", "host=h user=bob password=*** dbname=app"),
        ("host=h password='with space' dbname=app", "host=h password=*** dbname=app"),
        ("host=127.0.0.1 port=5 user=postgres", "host=127.0.0.1 port=5 user=postgres"),
    ],
)
def test_mask_dsn(dsn: str, expected: str) -> None:
    assert mask_dsn(dsn) == expected
    assert "s3cret" not in mask_dsn(dsn)


def test_no_binaries_gives_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DSN, raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PostgresUnavailable) as err:
        find_pg_bin([str(empty)])
    assert str(err.value) == NOT_FOUND_MESSAGE
    with pytest.raises(PostgresUnavailable) as err:
        ensure_postgres(search_dirs=[str(empty)])
    msg = str(err.value)
    assert "\n" not in msg
    assert "apt-get install postgresql" in msg and "SPROUT_PG_DSN" in msg


def test_default_search_finds_binaries() -> None:
    bin_dir = find_pg_bin()
    assert (bin_dir / "initdb").exists() and (bin_dir / "pg_ctl").exists()


def test_bad_env_dsn_gives_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dsn = f"postgresql://alice:hunter2@127.0.0.1:{port}/nowhere"
    monkeypatch.setenv(ENV_DSN, dsn)
    with pytest.raises(PostgresUnavailable) as err:
        ensure_postgres()
    msg = str(err.value)
    assert "hunter2" not in msg
    assert f"postgresql://alice:***@127.0.0.1:{port}/nowhere" in msg
    assert "SPROUT_PG_DSN" in msg and "start" in msg


def test_env_dsn_is_used_when_set(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_DSN, pg_dsn)
    handle = ensure_postgres()
    assert handle.origin == "env" and handle.dsn == pg_dsn
    handle.stop()  # no-op: never stops a server it did not start
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_cli_prints_dsn_and_stops_on_ctrl_c() -> None:
    import signal

    env = {k: v for k, v in os.environ.items() if k != ENV_DSN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sprout_harness.services.postgres"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        dsn = proc.stdout.readline().strip()
        assert dsn.startswith("host=127.0.0.1 port=")
        with psycopg.connect(dsn) as conn:
            datadir = conn.execute("SHOW data_directory").fetchone()[0]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not Path(datadir).exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2)
