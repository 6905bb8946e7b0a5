"""Realtime scenarios (connection-scaling, subscription-scaling, event-throughput,
filtered-subscriptions) at small sizes against loam over real WebSockets: checks pass,
figures reach every report format, stacks without the hooks report "unsupported", and the
checks catch a stack that loses or misroutes notifications."""

from __future__ import annotations

from pathlib import Path

import pytest

from sprout_harness.config import load_config
from sprout_harness.config.load import config_from_dict
from sprout_harness.contracts.errors import ConfigError
from sprout_harness.topology.runner import run
from sprout_loam.adapter import LoamStack
from support.scenarios import assert_lag_in_every_report, assert_ok
from support.stacks import DictStack

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "datasets.pets=600",
    "phases.connection-scaling.params.connections=12",
    "phases.connection-scaling.params.steps=2",
    "phases.connection-scaling.params.commits_per_step=4",
    "phases.connection-scaling.params.commit_interval_ms=2",
    "phases.subscription-scaling.params.subscriptions=24",
    "phases.subscription-scaling.params.connections=4",
    "phases.subscription-scaling.params.steps=2",
    "phases.subscription-scaling.params.commits_per_step=4",
    "phases.subscription-scaling.params.commit_interval_ms=2",
    "phases.event-throughput.params.subscribers=16",
    "phases.event-throughput.params.connections=4",
    "phases.event-throughput.params.steps=2",
    "phases.event-throughput.params.commits_per_step=30",
    *(
        f"phases.filtered-{p}.params.{k}"
        for p in ("equality", "range")
        for k in ("subscriptions=20", "connections=4", "commits=20", "baseline_commits=20")
    ),
]


async def test_realtime_suite_on_leveldb_over_websocket(tmp_path):
    cfg = load_config(ROOT / "configs" / "realtime-leveldb.yaml", SMALL, check_stack=True)
    result = await run(cfg)
    assert_ok(result)
    by = {p.name: p for p in result.phases}
    cs = by["connection-scaling@durable"]
    assert cs.counters["connections"] == 12 and cs.counters["connect_failures"] == 0
    assert cs.latencies["connect"].count == 12 and cs.latencies["subscribe"].count == 12
    assert cs.lags["notify@6"].count == 6 * 4 and cs.lags["notify@12"].count == 12 * 4
    assert [s["connections"] for s in cs.extra["steps"]] == [6, 12]
    assert cs.counters["server_live_query_bytes_per_connection"] > 0
    ss = by["subscription-scaling@durable"]
    assert ss.latencies["subscribe@24"].count == 12 and ss.counters["server_live_query_bytes_per_subscription"] > 0
    et = by["event-throughput@durable"]
    assert et.counters["notifications"] == 8 * 30 + 16 * 30
    assert et.counters["notifications_per_s@16"] > 0 and et.lags["notify@16"].count == 16 * 30
    for name in ("filtered-equality", "filtered-range"):
        fs = by[name]
        assert fs.counters["groups"] == 20  # match_fraction 0.05 in the config
        assert fs.latencies["commit@0_subs"].count == 20 and fs.latencies["commit@nonmatching"].count == 20
        assert fs.counters["matching_notifications"] == 20  # one subscription per group here
        assert "nonmatching_overhead_p50_ms" in fs.extra
    assert_lag_in_every_report(result, tmp_path, "event-throughput@durable", "notify@16", "notifications_per_s@16")
    assert_lag_in_every_report(result, tmp_path, "connection-scaling@durable", "notify@12", "rss_per_connection_bytes")


async def test_connections_in_worker_processes(tmp_path):
    cfg = config_from_dict(
        {
            "name": "rt-workers",
            "stack": {"name": "loam"},
            "storage": {"engine": "leveldb"},
            "datasets": {"pets": 300, "albums": 0},
            "phases": [
                {
                    "name": "connection-scaling",
                    "params": {
                        "connections": 10,
                        "steps": 2,
                        "processes": 2,
                        "commits_per_step": 3,
                        "commit_interval_ms": 2,
                    },
                },
                {
                    "name": "filtered-subscriptions",
                    "params": {
                        "subscriptions": 12,
                        "connections": 4,
                        "processes": 2,
                        "match_fraction": 0.25,
                        "commits": 12,
                        "baseline_commits": 5,
                    },
                },
            ],
        }
    )
    result = await run(cfg)
    assert_ok(result)
    cs = result.phases[0]
    assert cs.extra["mode"] == "2 worker processes"
    assert cs.counters["connections"] == 10 and cs.lags["notify"].count == 5 * 3 + 10 * 3
    assert "client_rss_per_connection_bytes" in cs.counters
    assert result.phases[1].counters["groups"] == 4


@pytest.mark.postgres
async def test_realtime_on_postgres(pg_database):
    cfg = config_from_dict(
        {
            "name": "rt-pg",
            "stack": {"name": "loam"},
            "storage": {"engine": "postgres", "dsn": pg_database, "pool_size": 2},
            "datasets": {"pets": 200, "albums": 0},
            "phases": [
                {
                    "name": "connection-scaling",
                    "params": {"connections": 6, "steps": 2, "commits_per_step": 3, "commit_interval_ms": 1},
                },
                {
                    "name": "event-throughput",
                    "params": {"subscribers": 6, "connections": 3, "steps": 2, "commits_per_step": 10},
                },
            ],
        }
    )
    result = await run(cfg)
    assert_ok(result)
    assert result.metadata.storage["engine"] == "postgres"


async def test_stack_without_connection_hooks_reports_unsupported():
    cfg = config_from_dict(
        {
            "name": "dict-rt",
            "stack": {"name": "dict"},
            "storage": {"engine": "dict"},
            "datasets": {"pets": 50, "albums": 0},
            "phases": [
                {"name": n}
                for n in ("connection-scaling", "subscription-scaling", "event-throughput", "filtered-subscriptions")
            ]
            + [{"name": "connection-scaling", "label": "cs-workers", "params": {"processes": 1}}],
        }
    )
    result = await run(cfg, factory=DictStack)
    assert [p.status for p in result.phases] == ["unsupported"] * 5, [(p.name, p.reason) for p in result.phases]
    assert "open_connection" in result.phases[0].reason
    assert "connection_address" in result.phases[4].reason
    assert result.status == "ok"


class LossyStack(LoamStack):
    """Connections whose subscriptions silently drop every 3rd notification."""

    async def open_connection(self, durable, connector="websocket"):  # type: ignore[no-untyped-def]
        client = await super().open_connection(durable, connector)
        subscribe = client.subscribe

        async def lossy(collection, query, callback):  # type: ignore[no-untyped-def]
            n = {"i": 0}

            def cb(note):  # type: ignore[no-untyped-def]
                n["i"] += 1
                if n["i"] % 3:
                    return callback(note)

            return await subscribe(collection, query, cb)

        client.subscribe = lossy  # type: ignore[method-assign]
        return client


async def test_a_lost_notification_fails_the_delivery_checks():
    cfg = config_from_dict(
        {
            "name": "lossy",
            "stack": {"name": "loam"},
            "storage": {"engine": "memory"},
            "datasets": {"pets": 100, "albums": 0},
            "phases": [
                {
                    "name": "connection-scaling",
                    "params": {"connections": 4, "steps": 1, "commits_per_step": 6, "commit_interval_ms": 1},
                },
                {
                    "name": "event-throughput",
                    "params": {"subscribers": 4, "connections": 2, "steps": 1, "commits_per_step": 6},
                },
            ],
            "runner": {"check_timeout_s": 1},
        }
    )
    result = await run(cfg, factory=LossyStack)
    assert [p.status for p in result.phases] == ["failed", "failed"]
    assert "every connection received every commit" in result.phases[0].reason
    assert "every notification arrived" in result.phases[1].reason


class LossyBackpressuredStack(LossyStack):
    """Loses notifications and says its server dropped slow connections."""

    def server_stats(self, durable):  # type: ignore[no-untyped-def]
        return {**super().server_stats(durable), "slow_connections_closed": 2}


async def test_missing_notifications_name_the_servers_backpressure_first():
    cfg = config_from_dict(
        {
            "name": "lossy",
            "stack": {"name": "loam"},
            "storage": {"engine": "memory"},
            "datasets": {"pets": 100, "albums": 0},
            "phases": [
                {
                    "name": "event-throughput",
                    "params": {"subscribers": 4, "connections": 2, "steps": 1, "commits_per_step": 6},
                }
            ],
            "runner": {"check_timeout_s": 1},
        }
    )
    result = await run(cfg, factory=LossyBackpressuredStack)
    (phase,) = result.phases
    assert phase.status == "failed"
    assert "the server closed 2 connection(s) whose client did not keep up" in phase.reason, phase.reason


class ServerRecordingStack(LoamStack):
    """Records the backpressure limit of every server the stack starts."""

    limits: list[int] = []

    async def _start_server(self, servers, key, target, params):  # type: ignore[no-untyped-def]
        server = await super()._start_server(servers, key, target, params)
        ServerRecordingStack.limits.append(server.service.max_pending)
        return server


async def test_stack_params_max_pending_reaches_the_servers():
    cfg = config_from_dict(
        {
            "name": "pending",
            "stack": {"name": "loam", "params": {"max_pending": 321}},
            "storage": {"engine": "memory"},
            "datasets": {"pets": 50, "albums": 0},
            "phases": [
                {
                    "name": "connection-scaling",
                    "params": {"connections": 2, "steps": 1, "commits_per_step": 2, "commit_interval_ms": 1},
                }
            ],
        }
    )
    ServerRecordingStack.limits = []
    result = await run(cfg, factory=ServerRecordingStack)
    assert result.status == "ok", [(p.name, p.reason) for p in result.phases]
    assert ServerRecordingStack.limits and set(ServerRecordingStack.limits) == {321}


def test_knobs_are_validated_and_the_1k_target_config_loads():
    cfg = load_config(ROOT / "configs" / "realtime-1k.yaml", check_stack=True)
    assert cfg.datasets["pets"] == 1_000_000 and cfg.phases[0].params["connections"] == 1000
    with pytest.raises(ConfigError, match=r"phases\[0\]\.params\.steps: steps=2000 is more than connections=1000"):
        load_config(ROOT / "configs" / "realtime-1k.yaml", ["phases.connection-scaling.params.steps=2000"])
    with pytest.raises(ConfigError, match="allowed: equality, range"):
        load_config(ROOT / "configs" / "realtime-leveldb.yaml", ["phases.filtered-range.params.predicate=fuzzy"])


async def test_lag_from_the_writers_send_is_reported_beside_the_stores_stamp():
    """Both lags of every delivered notification: `lag.notify` from the store's commit stamp,
    `lag.send_to_notify` from the writer's send on the load generator's clock. The send comes
    before the stamp, so the second is never the smaller, sample by sample and so in every
    percentile."""
    cfg = config_from_dict(
        {
            "name": "rt-two-lags",
            "stack": {"name": "loam"},
            "storage": {"engine": "memory"},
            "datasets": {"pets": 200, "albums": 0},
            "phases": [
                {
                    "name": "connection-scaling",
                    "params": {
                        "connections": 8,
                        "steps": 2,
                        "processes": 1,
                        "connector": "websocket",
                        "commits_per_step": 4,
                        "commit_interval_ms": 2,
                    },
                }
            ],
        }
    )
    result = await run(cfg)
    assert_ok(result)
    ph = result.phases[0]
    notify, send = ph.lags["notify"], ph.lags["send_to_notify"]
    assert send.count == notify.count == 4 * 4 + 8 * 4
    for q in (0.0, 50.0, 99.0, 100.0):
        assert send.percentile(q) >= notify.percentile(q), q
    assert ph.lags["send_to_notify@8"].count == 8 * 4


async def test_the_fan_out_floor_is_measured_beside_each_step():
    """`raw_floor`: each step also broadcasts with bare websockets to as many connections in a
    worker process; every message reaches every connection, and the step gets both figures."""
    cfg = config_from_dict(
        {
            "name": "rt-floor",
            "stack": {"name": "loam"},
            "storage": {"engine": "memory"},
            "datasets": {"pets": 200, "albums": 0},
            "phases": [
                {
                    "name": "connection-scaling",
                    "params": {
                        "connections": 20,
                        "steps": 2,
                        "processes": 1,
                        "connector": "websocket",
                        "commits_per_step": 5,
                        "commit_interval_ms": 2,
                        "raw_floor": True,
                    },
                }
            ],
        }
    )
    result = await run(cfg)
    assert_ok(result)
    ph = result.phases[0]
    assert ph.lags["floor@10"].count == 10 * 5 and ph.lags["floor@20"].count == 20 * 5
    for step in ph.extra["steps"]:
        assert step["floor"]["count"] == step["connections"] * 5
        assert step["lag_over_floor_p50"] > 0 and step["lag_over_floor_p99"] > 0
