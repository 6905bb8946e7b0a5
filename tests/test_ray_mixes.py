"""The crud and YCSB mixes with their clients on Ray actors of a real two-node Ray cluster (each
node in a network namespace of its own), against `loam serve` in its own process over a real
throwaway PostgreSQL, run through the runner as `sprout run` runs a config: op counts per
kind, merged histograms equal to the sum of the actors', every write in the store, the report
saying where the clients ran; an actor killed mid-phase fails the phase naming it, and leaves
nothing running."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from support.procs import cmdline, descendants
from support.raycluster import RayCluster, ray_cluster_2  # noqa: F401

# 3,000 pets: each actor's share (~130 kB as JSON) is past Ray's 100 KiB inline limit, so the job's
# params go in parts, and the final state (past 500 entities) is read in pages
PETS, OPS, RECORDS = 3000, 400, 200
PLACEMENT = "ray: 4 actors on 2 node(s)"


def _config(cluster: RayCluster, dsn: str, phases: list[Any], **workload: Any) -> Any:
    from sprout_harness.config import config_from_dict

    return config_from_dict(
        {
            "name": "ray-mixes",
            "stack": {"name": "loam", "params": {"durable_process": True, "server_host": cluster.root_ip}},
            "storage": {"engine": "postgres", "dsn": dsn, "pool_size": 4},
            "datasets": {"pets": PETS, "albums": 0},
            "runner": {"placement": {"engine": "ray", "address": cluster.address, "workers": 4}},
            "workload": {"processes": 4, "workers": 8, **workload},
            "phases": phases,
        }
    )


def _actor_pids(cluster: RayCluster) -> set[int]:
    """Processes of the fleet's actors, in the cluster's namespaces."""
    pids: set[int] = set()
    for ns in cluster.namespaces:
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=30, check=False)
        pids |= {int(p) for p in out.stdout.split() if "_FleetActor" in cmdline(int(p))}
    return pids


async def _gone(pids: set[int], timeout: float = 20.0) -> set[int]:
    deadline = time.monotonic() + timeout
    left = set(pids)
    while left and time.monotonic() < deadline:
        left = {p for p in left if Path(f"/proc/{p}").exists()}
        await asyncio.sleep(0.1)
    return left


@pytest.mark.slow
@pytest.mark.postgres
async def test_crud_and_ycsb_on_ray_actors(ray_cluster_2: RayCluster, pg_database: str, tmp_path: Path) -> None:  # noqa: F811
    from sprout_harness.topology.runner import run

    cfg = _config(
        ray_cluster_2,
        pg_database,
        [
            {"name": "crud", "params": {"preset": "balanced"}},
            {"name": "ycsb-a", "params": {"record_count": RECORDS}},
        ],
        operations=OPS,
    )
    result = await run(cfg, json_path=tmp_path / "r.json")
    assert result.status == "ok", (result.reason, [(p.name, p.status, p.reason) for p in result.phases])
    crud, ycsb = result.phases
    for ph in result.phases:
        assert ph.extra["placement"] == PLACEMENT and ph.extra["mode"] == "4 Ray actors", ph.extra
        assert all(c.ok for c in ph.checks), [(c.name, c.detail) for c in ph.checks if not c.ok]
        names = {c.name for c in ph.checks}
        assert "every acknowledged create, update and delete is reflected in the final state" in names
        assert "every entity in the store is exactly one worker's" in names
        assert "every worker ran its seeded share of the operation stream" in names
        # merged histograms: exactly the sum of the four actors' (and every operation is in them)
        workers = ph.extra["workers"]
        assert len(workers) == 4 and len({w["pid"] for w in workers}) == 4
        for kind, h in ph.latencies.items():
            assert h.count == sum(w["ops"].get(kind, 0) for w in workers), kind
        assert sum(h.count for h in ph.latencies.values()) == OPS
        assert [sum(w["ops"].values()) for w in workers] == [OPS // 4] * 4
        # no warmup, no error: what each actor measured is what its stream drew
        for w in workers:
            ((_, drawn),) = w["drawn"]
            assert sum(drawn.values()) == sum(w["ops"].values())
        assert ph.counters["ops_issued"] == OPS and ph.extra["load"]["errors"] == 0

    kinds = {k: h.count for k, h in crud.latencies.items()}
    assert set(kinds) == {"create", "read", "update", "delete"} and all(n > OPS // 10 for n in kinds.values()), kinds
    # every create and delete landed: the store holds the seeded rows + creates - deletes
    assert crud.counters["final_entities"] == PETS + kinds["create"] - kinds["delete"]
    assert crud.counters["reads_checked"] == kinds["read"]

    ykinds = {k: h.count for k, h in ycsb.latencies.items()}
    assert set(ykinds) == {"read", "update"} and ykinds["read"] + ykinds["update"] == OPS
    assert ycsb.counters["records_loaded"] == RECORDS and ycsb.counters["final_entities"] == RECORDS
    assert ycsb.counters["reads_checked"] == ykinds["read"]
    assert not _actor_pids(ray_cluster_2), "actors left after the run"


@pytest.mark.slow
@pytest.mark.postgres
async def test_an_actor_dying_mid_phase_fails_it(ray_cluster_2: RayCluster, pg_database: str, tmp_path: Path) -> None:  # noqa: F811
    from sprout_harness.topology.runner import run

    cfg = _config(
        ray_cluster_2,
        pg_database,
        [{"name": "crud", "params": {"preset": "read-heavy"}}],
        operations=0,
        duration_s=30,
    )
    task = asyncio.ensure_future(run(cfg, json_path=tmp_path / "r.json"))
    seen: set[int] = set()
    servers: set[tuple[int, int]] = set()
    try:
        deadline = time.monotonic() + 60
        while len(seen) < 4 and time.monotonic() < deadline and not task.done():
            seen = _actor_pids(ray_cluster_2)
            servers |= {c for c in descendants(os.getpid()) if "loam serve" in cmdline(c[0])}
            await asyncio.sleep(0.2)
        assert len(seen) == 4, f"actors did not start: {seen}"
        await asyncio.sleep(3)  # prepared and running
        assert not task.done()
        victim = min(seen)
        t0 = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        result = await asyncio.wait_for(task, 60)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    assert time.monotonic() - t0 < 20, "the phase did not end promptly after the actor died"
    (ph,) = result.phases
    assert result.status != "ok" and ph.status in ("failed", "error"), (ph.status, ph.reason)
    assert "ray actor" in (ph.reason or "") and "died" in (ph.reason or ""), ph.reason
    assert ph.extra["placement"] == PLACEMENT
    # nothing left running: no actor, no loam serve
    assert not await _gone(seen), "actor processes left after the failed phase"
    assert servers, "loam serve was not seen running"
    left = {p for p, _ in servers if Path(f"/proc/{p}").exists() and "loam serve" in cmdline(p)}
    assert not left, f"loam serve left running: {left}"
