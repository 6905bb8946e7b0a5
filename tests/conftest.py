"""Shared test fixtures: hypothesis profile, one PostgreSQL per session, temp LevelDB paths.

Keep this file small and general; feature-specific fixtures live in their test files.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, settings

from sprout_harness.services.postgres import (
    PostgresHandle,
    PostgresUnavailable,
    create_database,
    drop_database,
    ensure_postgres,
)

_ci_extra = {"database": None} if os.environ.get("CI") else {}  # no example database in CI
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=50,
    suppress_health_check=[HealthCheck.too_slow],
    **_ci_extra,
)
settings.load_profile("ci")


@pytest.fixture(scope="session")
def pg_handle() -> Iterator[PostgresHandle]:
    """One PostgreSQL per pytest session: SPROUT_PG_DSN, else a throwaway cluster (fsync off)."""
    try:
        handle = ensure_postgres()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def pg_dsn(pg_handle: PostgresHandle) -> str:
    """DSN of the session's PostgreSQL server (its `postgres` database)."""
    return pg_handle.dsn


@pytest.fixture
def pg_database(pg_dsn: str) -> Iterator[str]:
    """DSN of a fresh, empty database for this test (dropped afterwards)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    dsn = create_database(pg_dsn, name, template="template0")
    try:
        yield dsn
    finally:
        drop_database(pg_dsn, name)


@pytest.fixture
def tmp_leveldb_path(tmp_path: Path) -> Path:
    """A not-yet-existing directory path for a LevelDB database."""
    return tmp_path / "leveldb"
