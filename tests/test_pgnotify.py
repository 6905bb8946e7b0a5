"""pgnotify, the second stack (stacks/pgnotify): plain PostgreSQL + triggers + LISTEN/NOTIFY.

Against the session's real PostgreSQL (a fresh database per test): query translation equals
the harness's reference evaluator, live windows equal a fresh SQL fetch after every kind of
write (LIMIT refill included), notifications carry the commit's timestamp on the client's
perf_counter clock, `sprout run configs/pgnotify.yaml` passes end to end with the ephemeral
phases "unsupported", and the layering holds (pgnotify never imports loam, the harness never
imports pgnotify).
"""

from __future__ import annotations

import ast
import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from sprout_harness import plugins
from sprout_harness.config import load_config
from sprout_harness.contracts import (
    AllOf,
    AnyOf,
    Cond,
    ConfigError,
    Doc,
    InList,
    Not,
    Notification,
    Order,
    QuerySpec,
    StackSettings,
    Unsupported,
)
from sprout_harness.topology.runner import run
from sprout_harness.workloads import reference

try:
    from sprout_pgnotify.client import NotFound, PgClient
    from sprout_pgnotify.stack import PgNotifyStack
except ModuleNotFoundError as exc:  # pragma: no cover - an install problem, not a test result
    pytest.fail(
        f"{exc}: install the pgnotify stack with `.venv/bin/pip install -e stacks/pgnotify --no-deps` "
        "(`make test` does it)",
        pytrace=False,
    )

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "datasets.albums=240",
    "datasets.pets=240",
    "phases.create@durable.params.count=90",
    "phases.create@durable.params.batch_size=30",
    "phases.fetch@durable.params.get_ops=60",
    "phases.fetch@durable.params.fetch_ops=40",
    "phases.live-limit@durable.params.ops=16",
    "phases.live-limit@durable.params.subscribers=3",
    "phases.writers@durable.params.ops=90",
    "phases.churn@durable.params.subscribers=3",
    "phases.churn@durable.params.cycles=2",
]
SUPPORTED = ["create@durable", "fetch@durable", "live-limit@durable", "writers@durable", "churn@durable"]
UNSUPPORTED = ["live-limit@ephemeral", "churn@ephemeral"]


def _settings(dsn: str | None = None, **storage) -> StackSettings:
    st = {"engine": "postgres", "pool_size": 3, **storage}
    if dsn:
        st["dsn"] = dsn
    return StackSettings(name="pgnotify", storage=st, policy={"id": "permissive"})


@pytest.fixture
async def stack(pg_database):
    s = PgNotifyStack(_settings(pg_database, indexes={"albums": ["genre"]}))
    await s.start()
    try:
        yield s
    finally:
        await s.close()
        assert s.settings.run_cleanups() == []


@pytest.fixture
async def node(stack) -> PgClient:
    return await stack.durable(0, stack.context("durable", 0))


# --- layering -----------------------------------------------------------------------------


def _imports(path: Path) -> list[str]:
    out = []
    for n in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(n, ast.Import):
            out += [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            out.append(n.module)
        elif isinstance(n, ast.Call) and getattr(n.func, "attr", getattr(n.func, "id", "")) == "import_module":
            if n.args and isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str):
                out.append(n.args[0].value)
    return out


def _offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"no Python files under {folder}/"
    return [
        f"{f.relative_to(ROOT)} imports {m}"
        for f in files
        for m in _imports(f)
        if any(m == x or m.startswith(x + ".") for x in forbidden)
    ]


@pytest.mark.parametrize(
    "folder, forbidden",
    [
        ("stacks/pgnotify", ("loam", "sprout_loam")),
        ("sprout_harness", ("sprout_pgnotify", "loam", "sprout_loam")),
    ],
)
def test_layering(folder, forbidden):
    assert _offenders(folder, forbidden) == []


def test_registered_through_the_entry_point():
    assert plugins.resolve_stack("pgnotify") is PgNotifyStack
    text = (ROOT / "stacks" / "pgnotify" / "pyproject.toml").read_text()
    assert 'pgnotify = "sprout_pgnotify.stack:stack"' in text


# --- settings and capabilities ------------------------------------------------------------


@pytest.mark.parametrize(
    "change, path",
    [
        ({"storage": {"engine": "leveldb"}}, "storage.engine"),
        ({"policy": {"id": "owner"}}, "policy.id"),
        ({"params": {"user": "x"}}, "stack.params.user"),
        ({"params": {"schema": "Bad-Name"}}, "stack.params.schema"),
        ({"storage": {"engine": "postgres", "shards": 2}}, "storage.params.shards"),
        ({"storage": {"engine": "postgres", "dsn": "host=x port"}}, "storage.dsn"),
    ],
)
def test_validate_names_the_bad_field(change, path):
    s = _settings()
    for k, v in change.items():
        setattr(s, k, v)
    with pytest.raises(ConfigError) as err:
        PgNotifyStack.validate(s)
    assert str(err.value).startswith(path)


async def test_durable_only_capabilities(stack):
    caps = stack.capabilities()
    assert caps.subscribe and caps.live_limit and caps.order_by
    assert not caps.ephemeral and caps.connectors == ()
    assert caps.missing(["ephemeral"]) == ["ephemeral"]
    with pytest.raises(Unsupported, match="durable nodes only"):
        await stack.ephemeral(0, None, stack.context("ephemeral", 0))
    with pytest.raises(Unsupported):
        await stack.connector(None, None)


# --- CRUD and query translation -------------------------------------------------------------


async def test_crud_roundtrip(node):
    ack = await node.create("things", [{"a": 1, "b": "x"}, {"a": 2.5, "b": None, "c": True}])
    assert len(ack.ids) == 2 and ack.commit_ns is not None and ack.commit_id
    a, b = ack.ids
    assert (await node.get("things", a)) == Doc(a, {"a": 1, "b": "x"})
    await node.update("things", b, {"a": 3, "d": "new"})
    assert (await node.get("things", b)).props == {"a": 3, "b": None, "c": True, "d": "new"}
    await node.delete("things", a)
    assert await node.get("things", a) is None
    with pytest.raises(NotFound, match="things/"):
        await node.update("things", a, {"a": 0})
    with pytest.raises(NotFound):
        await node.delete("things", a)
    assert await node.get("nowhere", "x") is None and await node.fetch("nowhere", QuerySpec()) == []
    with pytest.raises(ValueError, match="collection name"):
        await node.create("bad name;", [{}])


_VALUES = [None, True, False, -3, 0, 1, 1.0, 2.5, 7, 10**12, "", "A", "B", "a", "b", "ä", "rock", "rock ", "10"]


def _random_value(rng: random.Random):
    return rng.choice(_VALUES)


def _random_pred(rng: random.Random, depth: int = 0):
    r = rng.random()
    field = rng.choice(["v", "w", "n", "s", "id"])
    if depth < 2 and r < 0.25:
        items = tuple(_random_pred(rng, depth + 1) for _ in range(rng.randint(0, 3)))
        return AllOf(items) if rng.random() < 0.5 else AnyOf(items)
    if depth < 2 and r < 0.35:
        return Not(_random_pred(rng, depth + 1))
    if r < 0.5:
        return InList(field, tuple(_random_value(rng) for _ in range(rng.randint(0, 3))), rng.random() < 0.4)
    return Cond(field, rng.choice(["=", "!=", "<", "<=", ">", ">="]), _random_value(rng))


async def test_fetch_equals_the_reference_evaluator(node):
    """Mixed types, missing properties, nulls, code-point string order: SQL == the harness's semantics."""
    rng = random.Random(7)
    rows = []
    for i in range(80):
        row = {"n": rng.choice([rng.randint(-5, 5), round(rng.uniform(-5, 5), 2)]), "s": rng.choice(_VALUES[11:])}
        for f in ("v", "w"):
            if rng.random() < 0.8:  # sometimes missing: compares as null
                row[f] = _random_value(rng)
        rows.append(row)
    ack = await node.create("mixed", rows)
    docs = [Doc(i, r) for i, r in zip(ack.ids, rows)]
    for _ in range(400):
        order = tuple(
            Order(rng.choice(["v", "w", "n", "s", "id"]), rng.random() < 0.5) for _ in range(rng.randint(0, 2))
        )
        q = QuerySpec(
            _random_pred(rng) if rng.random() < 0.9 else None,
            order,
            rng.choice([None, None, 0, 1, 5, 30]) if order else None,
        )
        got = await node.fetch("mixed", q)
        ok, detail = reference.same_result(q, got, reference.evaluate(q, docs))
        assert ok, f"`{q.text}`: {detail}"


# --- live queries ---------------------------------------------------------------------------


class Watch:
    """A subscription plus everything its callback received."""

    def __init__(self) -> None:
        self.notes: list[Notification] = []
        self.event = asyncio.Event()
        self.sub = None

    def __call__(self, n: Notification) -> None:
        self.notes.append(n)
        self.event.set()

    async def until(self, cond, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.event.clear()
            try:
                await asyncio.wait_for(self.event.wait(), min(left, 0.05))
            except TimeoutError:
                pass
        return True


async def _settled(node: PgClient, coll: str, watches: dict[QuerySpec, Watch]) -> None:
    """Every live result equals a fresh fetch (within a deadline: delivery is asynchronous)."""
    for q, w in watches.items():
        fresh: list[Doc] = []

        async def same() -> bool:
            fresh[:] = await node.fetch(coll, q)
            return reference.same_result(q, w.sub.results, fresh)[0]

        deadline = time.monotonic() + 10
        while not await same():
            assert time.monotonic() < deadline, f"`{q.text}`: {reference.same_result(q, w.sub.results, fresh)[1]}"
            await asyncio.sleep(0.005)


async def test_live_results_equal_a_fresh_fetch_after_every_write(node):
    rng = random.Random(3)
    genres = ["rock", "jazz", "pop"]

    def album() -> dict:
        return {"genre": rng.choice(genres), "rating": round(rng.uniform(0, 5), 1), "year": rng.randint(1990, 1999)}

    ids = list((await node.create("albums", [album() for _ in range(30)])).ids)
    queries = [
        QuerySpec(Cond("genre", "=", "rock"), (Order("rating", True),), 5, kind="order_limit"),
        QuerySpec(Cond("genre", "=", "jazz"), (Order("year"), Order("rating", True)), 3),
        QuerySpec(AllOf((Cond("rating", ">=", 2.5), InList("genre", ("rock", "pop")))), kind="and_or"),
        QuerySpec(None, (Order("rating"),)),
    ]
    watches: dict[QuerySpec, Watch] = {}
    for q in queries:
        w = Watch()
        w.sub = await node.subscribe("albums", q, w)
        watches[q] = w
    await _settled(node, "albums", watches)
    plain = watches[queries[2]]
    mirror = {d.id: d for d in plain.sub.results}  # the plain query's result rebuilt from notifications only
    for step in range(60):
        op = rng.random()
        if op < 0.25 or len(ids) < 5:
            ids += (await node.create("albums", [album() for _ in range(rng.randint(1, 3))])).ids
        elif op < 0.75:
            await node.update(
                "albums",
                rng.choice(ids),
                rng.choice([{"rating": round(rng.uniform(0, 5), 1)}, {"genre": rng.choice(genres)}]),
            )
        else:
            victim = rng.choice(ids)
            ids.remove(victim)
            await node.delete("albums", victim)
        await _settled(node, "albums", watches)
    for n in plain.notes:
        for d in (*n.added, *n.updated):
            mirror[d.id] = d
        for i in n.removed:
            mirror.pop(i, None)
    assert reference.same_result(queries[2], list(mirror.values()), plain.sub.results)[0]
    for w in watches.values():
        await w.sub.close()


async def test_limit_window_refills_from_below(node):
    rows = [{"genre": "rock", "rating": r} for r in (5.0, 4.0, 3.0, 2.0, 1.0)] + [{"genre": "pop", "rating": 9.0}]
    ids = (await node.create("albums", rows)).ids
    w = Watch()
    q = QuerySpec(Cond("genre", "=", "rock"), (Order("rating", True),), 3)
    w.sub = await node.subscribe("albums", q, w)
    assert [d.id for d in w.sub.results] == list(ids[:3])

    await node.delete("albums", ids[0])  # the top member leaves: the 4th must fill the gap
    assert await w.until(lambda: [d.id for d in w.sub.results] == [ids[1], ids[2], ids[3]])
    n = w.notes[-1]
    assert n.removed == (ids[0],) and [d.id for d in n.added] == [ids[3]] and n.kind == "change"

    await node.update("albums", ids[1], {"rating": 0.5})  # pushed below the window
    assert await w.until(lambda: [d.id for d in w.sub.results] == [ids[2], ids[3], ids[4]])
    await node.update("albums", ids[5], {"genre": "rock"})  # enters at the top
    assert await w.until(lambda: [d.id for d in w.sub.results] == [ids[5], ids[2], ids[3]])
    before = len(w.notes)
    await node.update("albums", ids[1], {"rating": 0.4})  # below the window: the window does not change
    await node.update("albums", ids[2], {"title": "x"})  # in the window: an update notification
    assert await w.until(lambda: any(d.id == ids[2] for n in w.notes[before:] for d in n.updated))
    assert all(not n.added and not n.removed for n in w.notes[before:])
    assert w.sub.results == await node.fetch("albums", q)

    await w.sub.close()
    await node.update("albums", ids[3], {"rating": 10.0})
    await node.create("albums", [{"genre": "rock", "rating": 11.0}])
    seen = len(w.notes)
    await asyncio.sleep(0.2)  # after close nothing may arrive; give the listener a chance to misbehave
    assert len(w.notes) == seen


async def test_notifications_carry_the_commit_timestamp(node, pg_database, stack):
    ids = (await node.create("pets", [{"shelter": "s1", "mood": 0}])).ids
    w = Watch()
    w.sub = await node.subscribe("pets", QuerySpec(Cond("shelter", "=", "s1")), w)
    ack = await node.update("pets", ids[0], {"mood": 1})
    assert await w.until(lambda: any(n.updated for n in w.notes))
    n = w.notes[-1]
    # The same transaction: the txid from RETURNING and the perf_counter_ns taken when COMMIT returned.
    assert n.commit_id == ack.commit_id and n.commit_ns == ack.commit_ns
    assert n.received_ns is not None and n.received_ns >= n.commit_ns
    assert n.updated[0].props["mood"] == 1

    # A write from another process/connection: the trigger's wall-clock time mapped onto perf_counter.
    before = time.perf_counter_ns()
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f"UPDATE {node.schema}.e_pets SET props = props || '{{\"mood\": 2}}' WHERE id = %s", [ids[0]])
    after = time.perf_counter_ns()
    assert await w.until(lambda: w.notes[-1].updated and w.notes[-1].updated[0].props["mood"] == 2)
    n = w.notes[-1]
    slack = 500_000_000  # wall clock vs perf_counter mapping: same machine, coarse bound
    assert before - slack <= n.commit_ns <= after + slack and n.commit_id and n.commit_id != ack.commit_id
    assert stack.describe()["storage"]["nodes"]["durable-0"]["listener_errors"] == []
    await w.sub.close()


async def test_two_durable_nodes_are_separate(stack):
    a = await stack.durable(0, stack.context("durable", 0))
    b = await stack.durable(1, stack.context("durable", 1))
    assert a.schema != b.schema
    wa, wb = Watch(), Watch()
    wa.sub = await a.subscribe("albums", QuerySpec(), wa)
    wb.sub = await b.subscribe("albums", QuerySpec(), wb)
    await b.create("albums", [{"genre": "rock"}])
    assert await wb.until(lambda: len(wb.sub.results) == 1)
    await a.create("albums", [{"genre": "jazz"}])
    assert await wa.until(lambda: len(wa.sub.results) == 1)
    assert [d.props["genre"] for d in wa.sub.results] == ["jazz"] and len(wb.sub.results) == 1


# --- sprout run, end to end -----------------------------------------------------------------


def test_sprout_run_pgnotify_end_to_end_in_a_subprocess(tmp_path, pg_database):
    js = tmp_path / "run.json"
    args = [a for s in [*TINY, f"storage.dsn={pg_database}"] for a in ("--set", s)]
    proc = subprocess.run(
        [sys.executable, "-m", "sprout_harness", "run", "configs/pgnotify.yaml", *args, "--json", str(js)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    report = json.loads(js.read_text())
    assert report["status"] == "ok"
    phases = {p["name"]: p for p in report["phases"]}
    assert list(phases) == SUPPORTED + UNSUPPORTED
    for name in SUPPORTED:
        assert phases[name]["status"] == "ok" and phases[name]["checks"], name
        assert all(c["ok"] for c in phases[name]["checks"]), (name, phases[name]["checks"])
    for name in UNSUPPORTED:
        assert phases[name]["status"] == "unsupported" and "ephemeral" in phases[name]["reason"]
    lags = phases["live-limit@durable"]["lags"]
    assert lags["window_refill"]["count"] >= 16 and lags["notify"]["count"] >= 16
    assert lags["notify"]["min"] > 0  # commit -> callback on one clock: never negative
    assert phases["churn@durable"]["lags"]["notify"]["count"] > 0
    md = report["metadata"]
    assert md["stack"] == "pgnotify" and md["storage"]["engine"] == "postgres"
    # A server we do not own: the run's schema was dropped at teardown.
    with psycopg.connect(pg_database) as conn:
        left = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pgnotify%'").fetchall()
    assert left == []


async def test_run_on_its_own_throwaway_cluster_with_two_durable_nodes(monkeypatch):
    monkeypatch.delenv("SPROUT_PG_DSN", raising=False)
    cfg = load_config(
        ROOT / "configs" / "pgnotify.yaml",
        [
            *TINY,
            "topology.durable=2",
            # one churn writer per durable group, else the
            # churners of the other group wait out check_timeout
            "phases.churn@durable.params.writers=2",
        ],
        check_stack=True,
    )
    assert cfg.storage.dsn is None
    result = await run(cfg)
    assert result.status == "ok", (result.reason, [(p.name, p.status, p.reason) for p in result.phases])
    assert [p.status for p in result.phases] == ["ok"] * 5 + ["unsupported"] * 2
    assert result.metadata.storage["server"]["origin"] == "throwaway"
    assert set(result.metadata.storage["nodes"]) == {"durable-0", "durable-1"}
