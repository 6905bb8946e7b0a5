"""Every reference config runs end to end against loam at tiny sizes, all checks passing.

PostgreSQL configs use the session's throwaway server (a fresh database per test); the
throwaway-cluster path of the config itself is exercised by test_runner_teardown.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sprout_harness.config import load_config
from sprout_harness.topology.runner import run

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "datasets.albums=240",
    "datasets.pets=240",
    "phases.create.params.count=90",
    "phases.create.params.batch_size=30",
    "phases.fetch.params.get_ops=60",
    "phases.fetch.params.fetch_ops=30",
    "phases.live-limit.params.ops=16",
    "phases.live-limit.params.subscribers=2",
    "phases.writers.params.ops=90",
    "phases.churn.params.subscribers=3",
    "phases.churn.params.cycles=2",
    "topology.ephemeral=2",
]


def _assert_all_ok(result):
    assert result.status == "ok", (result.reason, [(p.name, p.status, p.reason) for p in result.phases])
    assert len(result.phases) == 5
    for p in result.phases:
        assert p.checks and all(c.ok for c in p.checks), p.name
    lr = result.phase(next(p.name for p in result.phases if p.name.startswith("live-limit")))
    assert lr.lags["window_refill"].count >= 16


@pytest.mark.parametrize("name", ["leveldb-local", "leveldb-ephemeral"])
async def test_leveldb_configs(name):
    sets = [s for s in TINY if not (name == "leveldb-local" and s.startswith("topology."))]
    _assert_all_ok(await run(load_config(ROOT / "configs" / f"{name}.yaml", sets, check_stack=True)))


@pytest.mark.postgres
@pytest.mark.parametrize("name", ["postgres-pool", "postgres-ephemeral-ws"])
async def test_postgres_configs(name, pg_database):
    sets = [s for s in TINY if not (name == "postgres-pool" and s.startswith("topology."))]
    cfg = load_config(ROOT / "configs" / f"{name}.yaml", [*sets, f"storage.dsn={pg_database}"], check_stack=True)
    result = await run(cfg)
    _assert_all_ok(result)
    assert result.metadata.storage["engine"] == "postgres" and result.metadata.storage["pool_size"] == 4
    if name == "postgres-ephemeral-ws":
        assert result.metadata.topology["links"][0]["connector"] == "websocket"
        create = result.phases[0]
        assert any(k.startswith("to_durable.") for k in create.connector_delays)
