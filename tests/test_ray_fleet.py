"""RayFleet against a real two-node Ray cluster (each node in a network namespace of its own)
and a real `loam serve` on the root namespace's bridge address: every subscription sees every
commit, lag histograms merge exactly, actors land on both nodes, clocks on one host read offset
0 within the estimate's bound, an offset sent to an actor shifts the lags it records, a killed
actor is a WorkerError naming it, never a hang."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from sprout_harness.contracts import ConfigError
from sprout_harness.contracts.query import InList, QuerySpec
from sprout_harness.load.fleet import WorkerError
from sprout_harness.load.ray_fleet import MISSING_RAY, RayFleet, min_rtt_offset
from sprout_loam.adapter import LoamStack
from support.raycluster import RayCluster, ray_cluster_2  # noqa: F401

STACK = "sprout_loam.adapter:LoamStack"
ACTORS, CONNECTIONS, ENTITIES, COMMITS = 4, 200, 10, 12
TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def loam_url(ray_cluster_2: RayCluster) -> Iterator[str]:  # noqa: F811
    """A durable loam node on the bridge address, so actors in both namespaces reach it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "loam", "serve", "--storage", "memory", "--host", ray_cluster_2.root_ip, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()  # "loam serving on ws://host:port"
        if not line.startswith("loam serving on "):
            pytest.fail(f"loam serve did not start: {line} {proc.stdout.read(2000).decode(errors='replace')}")
        yield line.removeprefix("loam serving on ")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
async def test_ray_fleet_on_two_nodes(ray_cluster_2: RayCluster, loam_url: str) -> None:  # noqa: F811
    address = {"url": loam_url}
    writer = await LoamStack.connect_address(address, 999)
    fleet = RayFleet(ray_cluster_2.address, ACTORS, STACK, address, "mood", timeout_s=TIMEOUT_S)
    try:
        ack = await writer.create("pets", [{"seq": s, "mood": 0} for s in range(ENTITIES)])
        t0 = time.monotonic()
        await fleet.start()
        started_s = time.monotonic() - t0

        # actors on both nodes, two each (a CPU per actor, two per node)
        clocks = fleet.clocks()
        assert Counter(c["node"] for c in clocks) == {ray_cluster_2.head_ip: 2, ray_cluster_2.worker_ip: 2}
        # one machine: one boot id, so offset exactly 0, and the estimate within its bound
        here = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        for c in clocks:
            assert c["boot_id"] == here and c["same_host"] and c["offset_ns"] == 0, c
            assert abs(c["estimate_ns"]) <= c["bound_ns"], c
        print(
            f"\nstart {started_s:.2f} s; clocks (ns): "
            + "; ".join(f"{c['node']} rtt {c['rtt_ns']} est {c['estimate_ns']} ±{c['bound_ns']}" for c in clocks)
        )

        opened = await fleet.open(CONNECTIONS, 50)
        assert (opened["open"], opened["failures"]) == (CONNECTIONS, 0), opened["errors"]
        assert opened["connect"].count == CONNECTIONS
        q = QuerySpec(InList("seq", tuple(range(ENTITIES))), kind="in")
        subbed = await fleet.subscribe([(k, "pets", q) for k in range(CONNECTIONS)], 50)
        assert subbed["failures"] == 0, subbed["errors"]
        assert all(sorted(r) == sorted(ack.ids) for r in subbed["results"])

        values = [1_000 + c for c in range(COMMITS)]
        for c, v in enumerate(values):
            await writer.update("pets", ack.ids[c % ENTITIES], {"mood": v})
        deadline = time.monotonic() + TIMEOUT_S
        while min(await fleet.counts()) < COMMITS and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        got = await fleet.collect()
        assert all(sorted(s) == values for s in got["seen"]), [len(s) for s in got["seen"]]
        assert got["notifications"] == CONNECTIONS * COMMITS
        assert got["lag"].count == CONNECTIONS * COMMITS  # merged exactly over the four actors
        assert await fleet.client_rss() > 0

        # a host 10 s behind the driver: its lags are receipt - commit_ns - offset
        for a in fleet.actors:
            await a.call({"op": "offset", "offset_ns": -10 * 10**9}, TIMEOUT_S)
        await writer.update("pets", ack.ids[0], {"mood": 9_999})
        deadline = time.monotonic() + TIMEOUT_S
        while min(await fleet.counts()) < COMMITS + 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        shifted = (await fleet.collect())["lag"]
        assert shifted.count == CONNECTIONS and 10 * 10**9 <= shifted.min < 11 * 10**9

        # an actor's process killed mid-way: the next call names it and its node, promptly
        victim = next(a for a in fleet.actors if a.node == ray_cluster_2.worker_ip)
        pids = [a.pid for a in fleet.actors]
        fleet.ray.kill(victim.actor, no_restart=True)
        deadline = time.monotonic() + TIMEOUT_S  # ray.kill returns before the process is gone
        while _alive(victim.pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        t0 = time.monotonic()
        with pytest.raises(WorkerError) as err:
            await fleet.counts()
        assert time.monotonic() - t0 < TIMEOUT_S + 5
        assert f"ray actor {victim.index} " in str(err.value) and ray_cluster_2.worker_ip in str(err.value)
        assert "\n" not in str(err.value)
    finally:
        await fleet.close()
        await writer.close()
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not [p for p in pids if _alive(p)], "actor processes left after close()"
    assert not fleet.ray.is_initialized()


async def test_ray_fleet_unreachable_address() -> None:
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fleet = RayFleet(f"127.0.0.1:{port}", 2, STACK, {"url": "ws://127.0.0.1:1"}, "mood", timeout_s=TIMEOUT_S)
    t0 = time.monotonic()
    with pytest.raises(WorkerError) as err:
        await fleet.start()
    assert time.monotonic() - t0 < 10
    assert f"127.0.0.1:{port}" in str(err.value) and "\n" not in str(err.value)


def test_missing_ray_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as without the extra
    with pytest.raises(ConfigError) as err:
        RayFleet("127.0.0.1:1", 1, STACK, {}, "mood")
    assert str(err.value) == f"runner.placement.engine: {MISSING_RAY}"


def test_min_rtt_offset() -> None:
    # the exchange with the smallest round trip decides: t_actor - midpoint, bound rtt/2
    assert min_rtt_offset([(0, 900, 1000), (2000, 2150, 2200), (3000, 3600, 4000)]) == (50, 100, 200)


async def test_a_sprout_run_places_its_clients_on_the_ray_cluster(
    ray_cluster_2: RayCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    """`runner.placement: {engine: ray}` end to end: the durable node in its own `loam serve`
    process on the bridge address, the realtime phases' connections on Ray actors on both
    nodes; the report says where everything ran."""
    from sprout_harness.config import config_from_dict
    from sprout_harness.topology.runner import run

    cfg = config_from_dict(
        {
            "name": "ray-placement",
            "stack": {"name": "loam", "params": {"durable_process": True, "server_host": ray_cluster_2.root_ip}},
            "storage": {"engine": "memory"},
            "datasets": {"pets": 300, "albums": 0},
            "runner": {"placement": {"engine": "ray", "address": ray_cluster_2.address, "workers": 4}},
            "workload": {"connector": "websocket", "processes": 2},
            "phases": [
                {
                    "name": "connection-scaling",
                    "params": {"connections": 40, "steps": 2, "commits_per_step": 3, "commit_interval_ms": 5},
                },
                {
                    "name": "filtered-subscriptions",
                    "params": {
                        "subscriptions": 16,
                        "connections": 8,
                        "match_fraction": 0.25,
                        "commits": 12,
                        "baseline_commits": 4,
                    },
                },
            ],
        }
    )
    result = await run(cfg, json_path=tmp_path / "r.json")
    assert result.status == "ok", (result.reason, [(p.name, p.status, p.reason) for p in result.phases])
    for ph in result.phases:
        assert ph.extra["placement"] == "ray: 4 actors on 2 node(s)", ph.extra
        assert ph.extra["ray_actors_on_other_hosts"] == 0 and ph.extra["clock_offset_bound_us"] == 0
        assert all(c.ok for c in ph.checks), [(c.name, c.detail) for c in ph.checks if not c.ok]
    cs = result.phases[0]
    assert cs.extra["mode"] == "4 Ray actors"
    assert cs.counters["connections"] == 40 and cs.lags["notify"].count == 20 * 3 + 40 * 3
    assert any(f"at ws://{ray_cluster_2.root_ip}:" in n for n in result.metadata.notes), result.metadata.notes


def test_placement_is_checked_before_the_run() -> None:
    from sprout_harness.config import config_from_dict

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for placement, expected in [
        ({"engine": "ray"}, "runner.placement.address: the Ray cluster's head, HOST:PORT"),
        ({"engine": "ray", "address": "nowhere"}, "runner.placement.address: got 'nowhere'; write HOST:PORT"),
        (
            {"engine": "ray", "address": f"127.0.0.1:{port}"},
            f"runner.placement.address: no Ray cluster answers at 127.0.0.1:{port}",
        ),
        ({"engine": "kubernetes"}, "runner.placement.engine: got 'kubernetes'; allowed: local, ray"),
        ({"engine": "local", "address": "x:1"}, "runner.placement.address: only the ray engine takes an address"),
        ({"engine": "ray", "workers": -1}, "runner.placement.workers: got -1"),
    ]:
        with pytest.raises(ConfigError) as err:
            config_from_dict({"stack": {"name": "loam"}, "runner": {"placement": placement}})
        assert str(err.value).startswith(expected), (placement, str(err.value))
