"""Storage errors a user can hit: each names the thing at fault and the fix."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from loam.errors import StorageLockedError, StorageUnavailableError, ValidationError
from loam.storage import create_engine, engine_names


def test_leveldb_locked_in_same_process(tmp_leveldb_path: Path) -> None:
    first = create_engine("leveldb", path=str(tmp_leveldb_path))
    first.open()
    try:
        second = create_engine("leveldb", path=str(tmp_leveldb_path))
        with pytest.raises(StorageLockedError) as err:
            second.open()
        msg = str(err.value)
        assert str(tmp_leveldb_path) in msg and "another process" in msg
    finally:
        first.close()
    # once released, the directory opens again
    again = create_engine("leveldb", path=str(tmp_leveldb_path))
    again.open()
    again.close()


def test_leveldb_locked_by_another_process(tmp_leveldb_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from loam.storage.leveldb import LevelDBEngine
        e = LevelDBEngine({str(tmp_leveldb_path)!r}); e.open()
        print("ready", flush=True)
        sys.stdin.readline()
        e.close()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        engine = create_engine("leveldb", path=str(tmp_leveldb_path))
        with pytest.raises(StorageLockedError) as err:
            engine.open()
        assert str(tmp_leveldb_path) in str(err.value)
    finally:
        proc.communicate("done\n", timeout=30)
    assert proc.returncode == 0


def test_leveldb_missing_directory_without_create(tmp_leveldb_path: Path) -> None:
    from loam.errors import StorageError

    engine = create_engine("leveldb", path=str(tmp_leveldb_path), create_if_missing=False)
    with pytest.raises(StorageError) as err:
        engine.open()
    assert str(tmp_leveldb_path) in str(err.value)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_postgres_unreachable_names_masked_dsn() -> None:
    port = _closed_port()
    dsn = f"postgresql://loam:topsecret@127.0.0.1:{port}/loam"
    engine = create_engine("postgres", dsn=dsn)
    with pytest.raises(StorageUnavailableError) as err:
        engine.open()
    msg = str(err.value)
    assert "topsecret" not in msg
    assert f"postgresql://loam:***@127.0.0.1:{port}/loam" in msg
    assert "start PostgreSQL or set SPROUT_PG_DSN" in msg
    assert "topsecret" not in str(engine.describe())


def test_postgres_unreachable_keyword_dsn() -> None:
    port = _closed_port()
    engine = create_engine("postgres", dsn=f"host=127.0.0.1 port={port} user=x password=pw123 dbname=y")
    with pytest.raises(StorageUnavailableError) as err:
        engine.get("items", "some-id")  # first use opens the engine
    assert "pw123" not in str(err.value) and "password=***" in str(err.value)


def test_unknown_engine_name() -> None:
    with pytest.raises(ValidationError) as err:
        create_engine("rocksdb")
    msg = str(err.value)
    assert "rocksdb" in msg
    for name in ("leveldb", "memory", "postgres"):
        assert name in msg and name in engine_names()


def test_bad_engine_parameters(tmp_leveldb_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        create_engine("leveldb", path=str(tmp_leveldb_path), no_such_option=1)
    assert "leveldb" in str(err.value)


def test_bad_names_rejected(tmp_leveldb_path: Path) -> None:
    with pytest.raises(ValidationError):
        create_engine("leveldb", path=str(tmp_leveldb_path), indexes={"items": ["a\x00b"]})
    with pytest.raises(ValidationError):
        create_engine("leveldb", path=str(tmp_leveldb_path), indexes={"items": ["id"]})
