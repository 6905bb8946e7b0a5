"""Server scenarios (trigger, isolation) at small sizes against loam on LevelDB and PostgreSQL:
checks pass, figures reach every report format, stacks without the hooks report
"unsupported", and broken deliveries or leaking databases fail the checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from loam.errors import ProtocolError
from loam.node.api import Context
from loam.node.durable import DurableNode
from loam.protocol import codec
from loam.protocol import messages as m
from loam.query.ast import Compare, Query
from loam.storage import create_engine
from loam.triggers import TriggerManager
from sprout_harness.config import load_config
from sprout_harness.config.load import config_from_dict
from sprout_harness.load.webhook import WebhookReceiver
from sprout_harness.topology.runner import run
from sprout_harness.workloads.phases import triggers as trigger_phase
from sprout_loam.adapter import LoamStack
from support.scenarios import assert_lag_in_every_report, assert_ok
from support.stacks import DictStack

ROOT = Path(__file__).resolve().parents[1]
TRIGGER_SMALL = ["phases.trigger.params.commits=120", "phases.trigger.params.entities=10"]
ISOLATION_SMALL = [
    f"phases.{p}.params.{k}"
    for p in ("isolation-websocket", "isolation-direct")
    for k in ("databases=3", "rows=60", "ops=40")
]


async def test_trigger_on_leveldb(tmp_path):
    result = await run(load_config(ROOT / "configs" / "trigger-leveldb.yaml", TRIGGER_SMALL, check_stack=True))
    assert_ok(result)
    p = result.phases[0]
    matching = p.counters["matching_commits"]
    assert 0 < matching < 120 and p.counters["delivered"] == matching and p.counters["duplicates"] == 0
    assert p.counters["retried"] >= matching // 10 > 0  # receiver_failures: 10 in the config
    for lag in ("evaluated", "delivered", "webhook"):
        assert p.lags[lag].count == matching
    assert p.extra["delivery_success"] == 1.0
    assert_lag_in_every_report(result, tmp_path, "trigger@durable", "webhook", "matching_commits")


@pytest.mark.postgres
async def test_trigger_and_isolation_on_postgres(pg_database):
    sets = [*TRIGGER_SMALL, f"storage.dsn={pg_database}"]
    assert_ok(await run(load_config(ROOT / "configs" / "trigger-postgres.yaml", sets, check_stack=True)))
    result = await run(
        load_config(
            ROOT / "configs" / "isolation-postgres.yaml",
            [*ISOLATION_SMALL, f"storage.dsn={pg_database}"],
            check_stack=True,
        )
    )
    assert_ok(result)
    assert result.metadata.storage["engine"] == "postgres"
    import psycopg

    with psycopg.connect(pg_database) as conn:  # a shared server: every database's schema dropped again
        left = conn.execute("select nspname from pg_namespace where nspname like 's%d0\\_iso%'").fetchall()
    assert left == []


class RefusingReceiver(WebhookReceiver):
    """Answers 400 (a refusal the stack must not retry) to the third delivery it sees."""

    def __init__(self, respond=None, **kw):  # type: ignore[no-untyped-def]
        seen: list[str] = []

        def refuse(body, attempt):  # type: ignore[no-untyped-def]
            if body["delivery_id"] not in seen:
                seen.append(body["delivery_id"])
            return 400 if seen.index(body["delivery_id"]) == 2 else respond(body, attempt)

        super().__init__(respond=refuse, **kw)


class DuplicatingStack(LoamStack):
    """Registers every trigger twice under two names: each matching change is POSTed twice."""

    async def add_trigger(self, durable, spec):  # type: ignore[no-untyped-def]
        from dataclasses import replace

        await super().add_trigger(durable, spec)
        await super().add_trigger(durable, replace(spec, name=spec.name + "-again"))


async def test_broken_delivery_fails_the_trigger_check(monkeypatch):
    cfg = load_config(
        ROOT / "configs" / "trigger-leveldb.yaml",
        [
            *TRIGGER_SMALL,
            "phases.trigger.params.receiver_failures=0",
            "phases.trigger.params.concurrency=1",
            "runner.check_timeout_s=2",
        ],
    )
    monkeypatch.setattr(trigger_phase, "RECEIVER", RefusingReceiver)
    result = await run(cfg)
    p = result.phases[0]
    assert p.status == "failed"
    assert "every matching commit delivered exactly once" in p.reason and "1 of" in p.reason
    assert p.counters["failed"] == 1
    monkeypatch.undo()
    dup = await run(cfg, factory=DuplicatingStack)
    assert dup.phases[0].status == "failed" and "more than once" in dup.phases[0].reason


async def test_isolation_on_leveldb_websocket_and_direct(tmp_path):
    result = await run(load_config(ROOT / "configs" / "isolation-leveldb.yaml", ISOLATION_SMALL, check_stack=True))
    assert_ok(result)
    for p in result.phases:
        assert p.counters["databases"] == 3 and p.counters["updates"] == 120
        assert p.counters["notifications"] == 3 * 2 * 40  # 2 subscribers per database see their 40 updates
        assert len(p.extra["per_database"]) == 3
        per_db = [k for k in p.latencies if k.startswith("update@")]
        assert len(per_db) == 3 and all(p.latencies[k].count == 40 for k in per_db)
    assert result.phases[0].extra["connector"] == "websocket"
    db = next(k[len("notify@") :] for k in result.phases[0].lags if k.startswith("notify@"))
    assert_lag_in_every_report(result, tmp_path, "isolation-websocket", f"notify@{db}", "databases")


class SharedDatabaseStack(LoamStack):
    """A broken host: every database name maps to one database."""

    async def database_client(self, durable, database, connector=None):  # type: ignore[no-untyped-def]
        return await super().database_client(durable, "shared", connector)


async def test_leaking_databases_fail_the_isolation_check():
    cfg = config_from_dict(
        {
            "name": "leaky",
            "stack": {"name": "loam"},
            "storage": {"engine": "memory"},
            "datasets": {"pets": 0, "albums": 0},
            "runner": {"check_timeout_s": 1},
            "phases": [{"name": "isolation", "params": {"databases": 2, "rows": 20, "ops": 10}}],
        }
    )
    result = await run(cfg, factory=SharedDatabaseStack)
    p = result.phases[0]
    assert p.status == "failed"
    assert "no read, fetch or notification crossed a database boundary" in p.reason


async def test_stack_without_trigger_or_database_hooks_reports_unsupported():
    cfg = config_from_dict(
        {
            "name": "dict-server",
            "stack": {"name": "dict"},
            "storage": {"engine": "dict"},
            "datasets": {"pets": 10, "albums": 0},
            "suite": "server",
            "phases": [],
        }
    )
    result = await run(cfg, factory=DictStack)
    assert [(p.name, p.status) for p in result.phases] == [
        ("trigger@durable", "unsupported"),
        ("isolation@durable", "unsupported"),
    ]
    assert "add_trigger" in result.phases[0].reason and "database_client" in result.phases[1].reason


async def test_a_trigger_takes_a_parsed_query():
    node = DurableNode(create_engine("memory"))
    await node.start()
    async with WebhookReceiver() as rx:
        async with TriggerManager(node) as mgr:
            t = mgr.add_trigger("big", "orders", Query(Compare("total", ">", 100)), rx.url)
            assert "total" in t.predicate_text
            await node.create("orders", [{"total": 5}, {"total": 500}], Context())
            assert await rx.wait_accepted(1, 5)
            await mgr.drain(5)
        assert [r.body["change"]["after"]["total"] for r in rx.accepted.values()] == [500]
    await node.close()


def test_notify_codec_hook_is_loams_wire_codec():
    encode, decode = LoamStack.notify_codec()
    data = encode("e1", {"tracks": 1001, "hot": True}, 123456789)
    msg = codec.decode(data)
    assert type(msg) is m.Notify and msg.kind == "change" and msg.commit_ns == 123456789
    assert [(e.id, e.props) for e in msg.updated] == [("e1", {"tracks": 1001, "hot": True})]
    assert msg.sent_ns > 0 and decode(data) == 123456789
    with pytest.raises(ValueError, match="expected a change notify, decoded Pong"):
        decode(codec.encode(m.Pong(rid=1)))
    with pytest.raises(ProtocolError, match="not JSON"):
        decode(b"{nope")
