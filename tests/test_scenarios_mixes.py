"""The operation-mix scenarios (crud presets, ycsb-a … ycsb-f) at small sizes: on loam (LevelDB,
PostgreSQL) and on the in-test minimal stack; their checks pass, catch a stack that loses
writes, and their figures (closed/open loop, target and achieved rate, late, dropped) reach
every report format. Also the open loop's accounting of late and dropped operations through
a whole phase, and the read-judging rule of `loadphase.History`.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from click.testing import CliRunner

from sprout_harness.cli import cli
from sprout_harness.config import config_from_dict, load_config
from sprout_harness.contracts import Doc, WriteAck
from sprout_harness.contracts.errors import ConfigError
from sprout_harness.topology.runner import run
from sprout_harness.workloads.loadphase import EXISTS, History
from support.scenarios import ROOT, all_reports, assert_ok, assert_phase_figures
from support.stacks import DictClient, DictStack, Store

YCSB_OPS = {
    "a": ["read", "update"],
    "b": ["read", "update"],
    "c": ["read"],
    "d": ["read", "insert"],
    "e": ["scan", "insert"],
    "f": ["read", "readmodifywrite"],
}
LOAD_COUNTERS = ["ops_issued", "ops_late", "ops_dropped", "achieved_rate_ops_s", "final_entities"]
TINY_LOAD = ["workload.duration_s=0", "workload.warmup_s=0", "workload.ramp_up_s=0"]


def _tiny_ycsb(ops: int = 150) -> list[str]:
    return [*TINY_LOAD, f"workload.operations={ops}", "workload.record_count=200", "workload.max_scan_length=20"]


# --- loam --------------------------------------------------------------------------------------


async def test_crud_presets_on_leveldb_pass_and_reach_every_report(tmp_path):
    cfg = load_config(
        ROOT / "configs" / "crud-leveldb.yaml",
        [*TINY_LOAD, "workload.operations=300", "datasets.pets=200"],
        check_stack=True,
    )
    result = await run(cfg)
    assert_ok(result)
    assert [p.name for p in result.phases] == ["crud-write-heavy", "crud-read-heavy", "crud-balanced"]
    reports = all_reports(result, tmp_path)
    for p in result.phases:
        ops = sorted(p.latencies)
        assert set(ops) <= {"create", "read", "update", "delete"} and {"read", "update"} <= set(ops)
        assert p.extra["load_mode"] == "closed-loop" and p.extra["target_rate"] is None
        assert p.counters["ops_issued"] == 300
        assert_phase_figures(reports, p.name, ops, [*LOAD_COUNTERS, "reads_checked"])
        assert "closed-loop, 4 workers" in reports["console"]
    heavy, light = result.phase("crud-write-heavy"), result.phase("crud-read-heavy")
    writes = lambda p: sum(p.latencies[o].count for o in ("create", "update", "delete") if o in p.latencies)  # noqa: E731
    assert writes(heavy) > 200 and writes(light) < 100  # 90:10 vs 10:90


async def test_mixes_through_an_ephemeral_over_websocket():
    """`target: ephemeral`: every operation crosses the connector (its messages are in the
    connector delays), reads are judged as on the durable node, and the final state is read
    from the durable node: 9,000 pets (~1.5 MB) are more than one protocol message (1 MiB) carries."""
    ephemeral = ["topology.ephemeral=1", "topology.connector=websocket"]
    cfg = load_config(
        ROOT / "configs" / "crud-leveldb.yaml",
        [
            *TINY_LOAD,
            *ephemeral,
            "workload.operations=300",
            "datasets.pets=9000",
            *(f"phases.{i}.target=ephemeral" for i in range(3)),
        ],
        check_stack=True,
    )
    result = await run(cfg)
    assert_ok(result)
    for p in result.phases:
        assert {"to_durable.commit", "to_durable.get", "to_ephemeral.get_result"} <= set(p.connector_delays), p.name
        assert p.counters["reads_checked"] > 0 and p.counters["final_entities"] >= 8900
    cfg = load_config(
        ROOT / "configs" / "ycsb-leveldb.yaml",
        [*_tiny_ycsb(), *ephemeral, "phases.0.target=ephemeral", "phases.4.target=ephemeral"],
        check_stack=True,
    )
    cfg.phases = [cfg.phases[0], cfg.phases[4]]  # a (load, read, update) and e (scans, inserts)
    result = await run(cfg)
    assert_ok(result)
    assert [p.name for p in result.phases] == ["ycsb-a@ephemeral", "ycsb-e@ephemeral"]
    assert "to_durable.fetch" in result.phase("ycsb-e@ephemeral").connector_delays


async def test_all_six_ycsb_workloads_on_leveldb(tmp_path):
    cfg = load_config(ROOT / "configs" / "ycsb-leveldb.yaml", _tiny_ycsb(), check_stack=True)
    result = await run(cfg)
    assert_ok(result)
    reports = all_reports(result, tmp_path)
    for w, ops in YCSB_OPS.items():
        p = result.phase(f"ycsb-{w}@durable")
        assert set(p.latencies) == set(ops), (w, sorted(p.latencies))
        assert p.extra["ycsb"]["request_distribution"] == ("latest" if w == "d" else "zipfian")
        assert_phase_figures(reports, p.name, ops, LOAD_COUNTERS)
    assert result.phase("ycsb-a@durable").counters["records_loaded"] == 200
    assert result.phase("ycsb-b@durable").counters["records_loaded"] == 0  # continues on A's table
    e = result.phase("ycsb-e@durable")
    assert e.counters["scans_checked"] == e.latencies["scan"].count > 0 and e.counters["rows_scanned"] > 0
    d = result.phase("ycsb-d@durable")
    assert d.counters["final_entities"] == 200 + result.phase("ycsb-d@durable").latencies["insert"].count


async def test_open_loop_reference_config_on_leveldb(tmp_path):
    cfg = load_config(
        ROOT / "configs" / "open-loop-leveldb.yaml",
        [
            *TINY_LOAD,
            "workload.operations=200",
            "datasets.pets=200",
            "phases.ycsb-a.params.record_count=200",
            "phases.ycsb-e.params.max_scan_length=10",
        ],
        check_stack=True,
    )
    result = await run(cfg)
    assert_ok(result)
    reports = all_reports(result, tmp_path)
    for p, rate in zip(result.phases, (2000, 3000, 400)):
        assert p.extra["load_mode"] == "open-loop" and p.extra["target_rate"] == rate
        assert p.counters["target_rate_ops_s"] == rate
        assert p.counters["ops_issued"] + p.counters["ops_dropped"] == 200
        assert_phase_figures(reports, p.name, sorted(p.latencies), [*LOAD_COUNTERS, "target_rate_ops_s"])
        assert f"open-loop at {rate} ops/s" in reports["console"]


@pytest.mark.postgres
async def test_ycsb_on_postgres(pg_database, tmp_path):
    cfg = load_config(
        ROOT / "configs" / "ycsb-postgres.yaml", [*_tiny_ycsb(120), f"storage.dsn={pg_database}"], check_stack=True
    )
    result = await run(cfg)
    assert_ok(result)
    assert result.metadata.storage["engine"] == "postgres"
    reports = all_reports(result, tmp_path)
    for w, ops in YCSB_OPS.items():
        assert_phase_figures(reports, f"ycsb-{w}@durable", ops, LOAD_COUNTERS)


@pytest.mark.postgres
async def test_crud_open_loop_on_postgres_with_concurrent_writes(pg_database):
    """Blocking engine: operations overlap for real, so reads may race writes to the same id."""
    cfg = config_from_dict(
        {
            "stack": {"name": "loam"},
            "name": "crud-pg",
            "storage": {"engine": "postgres", "dsn": pg_database},
            "datasets": {"albums": 0, "pets": 60},
            "phases": [
                {
                    "name": "crud",
                    "params": {
                        "operations": 400,
                        "workers": 8,
                        "key_distribution": "zipfian",
                        "preset": "balanced",
                        "rate": 2000,
                        "arrival": "poisson",
                    },
                }
            ],
        }
    )
    result = await run(cfg)
    assert_ok(result)
    p = result.phases[0]
    assert p.counters["reads_checked"] > 50 and "reads_concurrent_with_writes" in p.counters
    assert p.extra["load_mode"] == "open-loop" and p.extra["load"]["arrival"] == "poisson"


# --- the in-test minimal stack -----------------------------------------------------------------


async def test_a_collection_larger_than_one_message_is_verified_in_pages():
    """8,000 pets are ~1.3 MB as one fetch reply, over the WebSocket limit of 1 MiB: the final
    state is read in pages of id order, by the workers (their share) and by the driver."""
    cfg = config_from_dict(
        {
            "stack": {"name": "loam", "params": {"durable_process": True}},
            "name": "crud-pages",
            "datasets": {"albums": 0, "pets": 8000},
            "phases": [{"name": "crud", "params": {"operations": 300, "workers": 4, "processes": 2}}],
        }
    )
    result = await run(cfg)
    assert_ok(result)
    (phase,) = result.phases
    assert phase.counters["final_entities"] >= 8000 - 300
    assert phase.extra["placement"] == "local: 2 worker processes"


def _dict_cfg(phases, **extra):
    return config_from_dict(
        {
            "name": "dict-mixes",
            "stack": {"name": "dict"},
            "storage": {"engine": "dict"},
            "datasets": {"albums": 0, "pets": 150},
            "phases": phases,
            **extra,
        }
    )


async def test_mixes_suite_runs_on_a_stack_that_is_not_loam():
    cfg = _dict_cfg([], suite="mixes", workload={"operations": 200, "record_count": 150, "max_scan_length": 15})
    assert [p.title for p in cfg.phases] == [
        "crud-write-heavy",
        "crud-read-heavy",
        "crud-balanced",
        *(f"ycsb-{w}@durable" for w in "abcdef"),
    ]
    result = await run(cfg, factory=DictStack)
    assert_ok(result)
    # DictStack's update of a deleted id raises: the race with a delete is accounted, not an error
    assert all(p.error_count == 0 for p in result.phases)


class CountingClient(DictClient):
    """An ephemeral that counts the operations it served."""

    def __init__(self, store, live=True):
        super().__init__(store, live)
        self.ops = 0

    async def get(self, collection, id):
        self.ops += 1
        return await super().get(collection, id)

    async def update(self, collection, id, props):
        self.ops += 1
        return await super().update(collection, id, props)

    async def create(self, collection, props):
        self.ops += 1
        return await super().create(collection, props)

    async def fetch(self, collection, query):
        self.ops += 1
        return await super().fetch(collection, query)

    async def delete(self, collection, id):
        self.ops += 1
        return await super().delete(collection, id)


class CountingStack(DictStack):
    ephemerals: list[CountingClient] = []
    durables: list[CountingClient] = []

    async def durable(self, index, context):
        self.stores.append(Store())
        CountingStack.durables.append(CountingClient(self.stores[-1], self.live))
        return CountingStack.durables[-1]

    async def ephemeral(self, index, connector, context):
        CountingStack.ephemerals.append(CountingClient(connector, self.live))
        return CountingStack.ephemerals[-1]


@pytest.mark.parametrize(
    "phase,params",
    [("crud", {"operations": 300, "preset": "balanced"}), ("ycsb-a", {"operations": 300, "record_count": 100})],
)
async def test_mixes_through_ephemerals_use_every_ephemeral_of_the_group(phase, params):
    CountingStack.ephemerals, CountingStack.durables = [], []
    cfg = _dict_cfg(
        [{"name": phase, "target": "ephemeral", "params": params}],
        topology={"durable": 1, "ephemeral": 3, "connector": "direct"},
    )
    result = await run(cfg, factory=CountingStack)
    assert_ok(result)
    served = [c.ops for c in CountingStack.ephemerals]
    assert len(served) == 3 and min(served) >= 90, served  # round robin over 300 operations (+ the load)
    key = "crud" if phase == "crud" else "ycsb"
    assert result.phases[0].extra[key]["clients"] == 3


@pytest.mark.parametrize("target", ["durable", "ephemeral"])
@pytest.mark.parametrize(
    "phase,params",
    [
        ("crud", {"operations": 400, "preset": "balanced"}),
        ("ycsb-a", {"operations": 400, "record_count": 60}),
        ("ycsb-e", {"operations": 400, "record_count": 60, "max_scan_length": 10}),
    ],
)
async def test_mixes_drive_every_durable_group(target, phase, params):
    """Two groups: each gets its share of the operations, on its own ids, and each group's
    final state is checked against its own history."""
    CountingStack.ephemerals, CountingStack.durables = [], []
    cfg = _dict_cfg(
        [{"name": phase, "target": target, "params": params}],
        topology={"durable": 2, "ephemeral": 4, "connector": "direct"},
    )
    result = await run(cfg, factory=CountingStack)
    assert_ok(result)
    p = result.phases[0]
    extra = p.extra["crud" if phase == "crud" else "ycsb"]
    assert extra["groups"] == 2 and extra["clients"] == (2 if target == "durable" else 4)
    served = [c.ops for c in (CountingStack.durables if target == "durable" else CountingStack.ephemerals)]
    assert min(served) >= (180 if target == "durable" else 90), served  # + loads and the final fetches
    if phase != "crud":
        assert p.counters["records_loaded"] == 120  # each group loaded its own table
    finals = [name for name, ok in ((c.name, c.ok) for c in p.checks) if "final state" in name]
    assert len(finals) == 2
    # each group ends with its own rows: the initial ones, plus its creates, minus its deletes
    coll = "pets" if phase == "crud" else "usertable"
    stores = [st.data[coll] for st in (s.store for s in CountingStack.durables)]
    assert p.counters["final_entities"] == sum(len(rows) for rows in stores)


class LosesUpdates(DictClient):
    """Acknowledges every 7th update without applying it."""

    n = 0

    async def update(self, collection, id, props):
        LosesUpdates.n += 1
        if LosesUpdates.n % 7 == 0 and id in self.store.data[collection]:
            return WriteAck(self.store.commit({collection}))
        return await super().update(collection, id, props)


class LosingStack(DictStack):
    async def durable(self, index, context):
        self.stores.append(Store())
        return LosesUpdates(self.stores[-1])


@pytest.mark.parametrize("phase", ["crud", "ycsb-a"])
async def test_a_lost_update_fails_the_mix(phase):
    params = (
        {"operations": 300, "record_count": 100} if phase == "ycsb-a" else {"operations": 300, "preset": "write-heavy"}
    )
    result = await run(_dict_cfg([{"name": phase, "params": params}]), factory=LosingStack)
    p = result.phases[0]
    assert p.status == "failed", p.reason
    assert "is reflected in the final state" in p.reason


class StaleReads(DictClient):
    """Reads answer from a snapshot taken at the first read: later writes are invisible."""

    snapshot: dict | None = None

    async def get(self, collection, id):
        if StaleReads.snapshot is None:
            StaleReads.snapshot = {k: dict(v) for k, v in self.store.data[collection].items()}
        p = StaleReads.snapshot.get(id)
        return None if p is None else Doc(id, dict(p))


class StaleStack(DictStack):
    async def durable(self, index, context):
        self.stores.append(Store())
        StaleReads.snapshot = None
        return StaleReads(self.stores[-1])


async def test_a_stale_read_fails_the_mix():
    result = await run(
        _dict_cfg([{"name": "ycsb-a", "params": {"operations": 400, "record_count": 50}}]), factory=StaleStack
    )
    p = result.phases[0]
    assert p.status == "failed"
    assert "every read returned the value of an acknowledged" in p.reason


# --- the open loop's accounting through a phase -----------------------------------------------


class Stalls(DictClient):
    """The 20th get blocks the event loop for 150 ms (a stall every later operation queues behind)."""

    calls = 0

    async def get(self, collection, id):
        Stalls.calls += 1
        if Stalls.calls == 20:
            time.sleep(0.15)
        return await super().get(collection, id)


class StallStack(DictStack):
    async def durable(self, index, context):
        self.stores.append(Store())
        Stalls.calls = 0
        return Stalls(self.stores[-1])


async def test_open_loop_counts_late_operations_and_measures_from_the_intended_start(tmp_path):
    # 400 ops/s: the 150 ms stall delays ~60 scheduled operations; each must count as late and
    # carry its wait in its latency (the stalled op itself: >= 150 ms from its intended start).
    params = {"operations": 300, "record_count": 100, "rate": 400, "workers": 4}
    result = await run(_dict_cfg([{"name": "ycsb-c", "params": params}]), factory=StallStack)
    assert_ok(result)
    p = result.phases[0]
    assert p.extra["load_mode"] == "open-loop"
    late = p.counters["ops_late"]
    assert 30 <= late <= 300 and p.extra["late"] == late and p.counters["ops_dropped"] == 0
    assert p.latencies["read"].max >= 150e6
    assert p.latencies["read"].count == 300
    closed = await run(_dict_cfg([{"name": "ycsb-c", "params": {**params, "rate": None}}]), factory=StallStack)
    c = closed.phases[0]
    assert c.extra["load_mode"] == "closed-loop" and c.counters["ops_late"] == 0
    # the closed loop hides the stall in a handful of samples; the open loop shows it in many
    assert p.latencies["read"].percentile(90) > c.latencies["read"].percentile(90)
    reports = all_reports(result, tmp_path)
    assert "ops_late=" in reports["console"] and "open-loop at 400 ops/s (fixed arrivals)" in reports["console"]


async def test_open_loop_drops_what_exceeds_max_outstanding():
    params = {"operations": 200, "record_count": 100, "rate": 1000, "workers": 1, "max_outstanding": 3}
    result = await run(_dict_cfg([{"name": "ycsb-c", "params": params}]), factory=StallStack)
    assert_ok(result)
    p = result.phases[0]
    assert p.counters["ops_dropped"] > 0
    assert p.counters["ops_issued"] + p.counters["ops_dropped"] == 200
    assert p.latencies["read"].count == p.counters["ops_issued"]


# --- knobs, catalog, CLI ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, path, words",
    [
        ({"rate": 0}, "phases[0].params.rate", ["must be > 0"]),
        ({"arrival": "bursty"}, "phases[0].params.arrival", ["fixed, poisson"]),
        ({"operations": 0}, "phases[0].params.operations", ["duration_s"]),
        ({"preset": "custom"}, "phases[0].params.weights", ["needs weights"]),
        ({"weights": {"read": 1}}, "phases[0].params.weights", ["preset custom"]),
        (
            {"preset": "custom", "weights": {"scan": 1}},
            "phases[0].params.weights.scan",
            ["create, read, update, delete"],
        ),
        ({"preset": "heavy"}, "phases[0].params.preset", ["write-heavy, read-heavy, balanced, custom"]),
        ({"workers": 0}, "phases[0].params.workers", [">= 1"]),
    ],
)
def test_crud_knobs_are_validated(params, path, words):
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"stack": {"name": "loam"}, "phases": [{"name": "crud", "params": params}]})
    assert exc.value.path == path
    assert all(w in str(exc.value) for w in words), str(exc.value)


def test_ycsb_needs_its_own_collection():
    with pytest.raises(ConfigError, match=r"phases\[0\].params.collection: got 'albums', a dataset kind"):
        config_from_dict(
            {"stack": {"name": "loam"}, "phases": [{"name": "ycsb-b", "params": {"collection": "albums"}}]}
        )


def test_sprout_list_shows_the_mixes_with_their_knobs():
    out = CliRunner().invoke(cli, ["list"]).output
    for name in ("crud", *(f"ycsb-{w}" for w in "abcdef")):
        assert f"  {name} " in out, name
    assert "preset='balanced'" in out and "rate=None" in out and "arrival='fixed'" in out
    assert "mixes" in out and "crud -> crud -> crud -> ycsb-a" in out


# --- the read-judging rule ---------------------------------------------------------------------


def test_history_accepts_exactly_what_a_linearizable_store_may_return():
    h = History(lambda id_: {"v": 0} if id_ == "x" else None)
    w1 = h.begin_write("x", {"v": 1}, start=10)
    h.end_write(w1, end=20)
    assert h.judge("x", {"v": 1}, 25, 30)[0]
    assert not h.judge("x", {"v": 0}, 25, 30)[0]  # overwritten before the read began
    assert h.judge("x", {"v": 0}, 15, 30)[:2] == (True, True)  # overlapping: either value
    w2 = h.begin_write("x", {"v": 2}, start=40)  # in flight
    assert h.judge("x", {"v": 1}, 45, 50)[0] and h.judge("x", {"v": 2}, 45, 50)[0]
    assert not h.judge("x", {"v": 2}, 35, 39)[0]  # the read returned before the write began
    h.end_write(w2, end=60)
    assert not h.judge("x", {"v": 1}, 61, 62)[0]
    d = h.begin_write("x", {EXISTS: False}, start=70)
    h.end_write(d, end=80)
    assert h.judge("x", None, 90, 91)[0] and not h.judge("x", {"v": 2}, 90, 91)[0]
    assert h.judge("x", {"v": 2}, 75, 91)[0]  # the delete overlapped the read
    assert not h.judge("y", {"v": 5}, 1, 2)[0]  # never created
    n, problems = h.judge_final({"x": {"v": 2}}, ["x"])
    assert problems and "delete was acknowledged" in problems[0]


def test_history_keeps_values_in_flight_readers_may_still_see():
    h = History(lambda id_: {"v": 0})
    token, rs = h.begin_read()
    for i in range(1, 50):
        h.end_write(h.begin_write("x", {"v": i}))
    assert h.judge("x", {"v": 0}, rs, h.clock())[0]  # the old reader may still return the first value
    h.forget(token)
    h.end_write(h.begin_write("x", {"v": 99}))
    assert len(h.regs["x"]["v"]) <= 2  # nobody can see values older than the last two any more: pruned
    assert not h.judge("x", {"v": 0}, h.clock(), h.clock())[0]


def test_a_load_phase_is_stoppable():
    """A stop request during a load phase ends it as cancelled (no hang with an inline stack)."""
    from sprout_harness.topology.runner import Runner

    async def go():
        cfg = _dict_cfg([{"name": "crud", "params": {"operations": 0, "duration_s": 30}}])
        runner = Runner(cfg, factory=DictStack)
        task = asyncio.ensure_future(runner.run())
        while not runner.result.phases and runner._ctx is None:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        assert runner.request_stop("test stop")
        return await asyncio.wait_for(task, 10)

    result = asyncio.run(go())
    assert result.status == "cancelled" and result.phases[0].status == "cancelled"


def test_every_mix_knob_is_documented():
    from sprout_harness.workloads import catalog

    workloads = (ROOT / "docs" / "workloads.md").read_text()
    configuration = (ROOT / "docs" / "configuration.md").read_text()
    for name in ("crud", *(f"ycsb-{w}" for w in "abcdef")):
        for knob, _, _ in catalog.knob_docs(catalog.get_phase(name)):
            assert f"| `{knob}` |" in workloads, (name, knob)
    for knob in (
        "workers",
        "operations",
        "duration_s",
        "warmup_s",
        "ramp_up_s",
        "rate",
        "arrival",
        "late_tolerance_ms",
        "max_outstanding",
    ):
        assert f"| `{knob}` |" in configuration, knob
