"""The workload benchmark modules run for real at SPROUT_BENCH_SCALE=tiny, in-process, the
way asv calls them (setup_cache, then setup and the track_ methods per parameter
combination), against real LevelDB, the session's PostgreSQL and real loopback WebSockets;
plus the targets table over a results file and the `time_` benchmark on a prepared node."""

from __future__ import annotations

import importlib
import inspect
import itertools
import json
import math
import re
import sys
from pathlib import Path

import pytest

from support.asv import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))  # `benchmarks` is a package at the repo root, as asv imports it

from benchmarks import _common, _topology  # noqa: E402
from sprout_harness.asvtools import targets  # noqa: E402

MODULES = ("bench_create", "bench_fetch", "bench_live_limit", "bench_writers", "bench_churn")


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch, pg_dsn: str) -> None:
    monkeypatch.setenv(_common.ENV_SCALE, "tiny")
    monkeypatch.setenv(_common.ENV_PG_DSN, pg_dsn)
    monkeypatch.setenv("SPROUT_BENCH_CHECK_TIMEOUT", "1")


def _classes(module) -> list[type]:
    """The benchmark classes asv finds in `module`: its own and those it re-exports from the
    harness's family of the same name (`bench_create` -> `sprout_harness.asvsuite.create`)."""
    family = "sprout_harness.asvsuite." + module.__name__.rpartition(".")[2].removeprefix("bench_")
    return [
        c
        for _, c in inspect.getmembers(module, inspect.isclass)
        if c.__module__ in (module.__name__, family) and any(m.startswith("track_") for m in dir(c))
    ]


@pytest.mark.parametrize("name", MODULES)
def test_module_runs_every_combination(name: str, tiny: None) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    classes = _classes(module)
    assert classes, f"{name} defines no benchmark class"
    # One workload run for the module: classes share one setup_cache function (asv's cache key).
    keys = {(inspect.getsourcefile(c.setup_cache), inspect.getsourcelines(c.setup_cache)[1]) for c in classes}
    assert len(keys) == 1, f"{name}: classes must share one setup_cache, got {keys}"
    cache = classes[0]().setup_cache()
    assert not isinstance(cache, _common.Skipped), cache
    assert set(cache) == set(_topology.combinations()), "every sensible combination runs once"
    errors, figures, nas = [], 0, set()
    for cls in classes:
        assert cls.param_names == ["stack", "connector", "ephemerals"]
        bench = cls()
        for combo in itertools.product(*cls.params):
            try:
                bench.setup(cache, *combo)
            except NotImplementedError as exc:
                # n/a: a pruned combination, or a stack without the hook a figure needs
                assert _topology.not_applicable(*combo) or "native_get hook" in str(exc), f"{combo}: n/a ({exc})"
                nas.add((cls.__name__, combo))
                continue
            except RuntimeError as exc:
                errors.append(f"{cls.__name__}{combo}: {exc}")
                continue
            for m in (m for m in dir(cls) if m.startswith("track_")):
                value = getattr(bench, m)(cache, *combo)
                if m == "track_paired_codec_floor" and combo[0] == "pgnotify":
                    assert math.isnan(value), "a stack without the notify_codec hook reads n/a"
                    continue
                assert isinstance(value, float) and math.isfinite(value) and value > 0, (cls.__name__, m, combo, value)
                figures += 1
    assert not errors, "\n".join(errors)
    assert figures > 0
    if name == "bench_fetch":  # the direct-read figure comes from the stack's contract, never a stand-in
        assert ("NodeGetById", ("pgnotify", "inprocess", 0)) in nas, "pgnotify has no native_get hook: n/a"
        assert ("NodeGetById", ("loam-leveldb", "inprocess", 0)) not in nas
        assert ("GetById", ("pgnotify", "inprocess", 0)) not in nas


def test_gate_module_returns_samples_asv_tests_statistically(tiny: None) -> None:
    """The gate's track_ methods return `{"samples": [...], "number": 1}`: asv's runner then
    treats the result as a timing result and keeps samples and statistics (asv/runner.py)."""
    from benchmarks import gate
    from sprout_harness.asvtools import continuous

    classes = _classes(gate)
    assert {c.__name__ for c in classes} == {"GateLevelDB", "GateNotifyLag"}
    assert len({inspect.getsourcelines(c.setup_cache)[1] for c in classes}) == 1, "one shared setup_cache"
    cache = classes[0]().setup_cache()
    assert not isinstance(cache, _common.Skipped), cache
    for cls in classes:
        bench = cls()
        bench.setup(cache)
        for m in (m for m in dir(cls) if m.startswith("track_")):
            got = getattr(bench, m)(cache)
            assert set(got) == {"samples", "number"} and got["number"] == 1, (m, got)
            assert len(got["samples"]) == _common.SCALES["tiny"].gate_repeats, (m, got)
            assert all(math.isfinite(v) and v > 0 for v in got["samples"]), (m, got)
            assert any(re.search(rx, f"gate.{cls.__name__}.{m}") for rx in continuous.GATE_BENCH), m
    # asv's own parsing of a benchmark result (the contract the gate relies on)
    asv_runner_src = inspect.getsource(importlib.import_module("asv.runner")._run_benchmark_single_param)
    assert "'samples' in data and 'number' in data" in asv_runner_src
    assert all(s.gate_repeats >= 9 for k, s in _common.SCALES.items() if k != "tiny"), (
        "< 7 samples a side can never be significant"
    )


def test_gate_get_ratio_is_na_without_the_native_get_hook() -> None:
    from benchmarks import gate

    ok = {
        "status": "ok",
        "phases": {
            "asv-gate-leveldb": {
                "status": "ok",
                "extra": {"native_get": 0.0, "create_ratio#0": 2.0, "create_ratio#1": 2.5},
            }
        },
    }
    bench = gate.GateLevelDB()
    bench.setup({gate.DURABLE: ok})
    assert math.isnan(bench.track_get_vs_plyvel_get(None))
    assert bench.track_create_vs_write_batch(None) == {"samples": [2.0, 2.5], "number": 1}


def test_a_phase_the_installed_catalog_lacks_reads_na_and_the_rest_runs(tiny: None) -> None:
    """An older commit's catalog may lack a phase the suite asks for: that phase is n/a,
    the family's other phases still give figures."""
    got = _topology.entry(
        ("loam-leveldb", "inprocess", 0),
        {"albums": 0, "pets": 0},
        [("create", {"count": 50, "batch_size": 10}), ("asv-not-in-this-commit", {})],
    )
    assert got["status"] == "ok", got
    assert got["phases"]["create"]["status"] == "ok"
    assert got["phases"]["asv-not-in-this-commit"]["status"] == "na"
    only_missing = _topology.entry(
        ("loam-leveldb", "inprocess", 0), {"albums": 0, "pets": 0}, [("asv-not-in-this-commit", {})]
    )
    assert only_missing["status"] == "na" and "workload catalog" in only_missing["reason"]


def test_asv_phases_are_the_harness_catalogs() -> None:
    """The asv-* phases are ordinary built-in phases; the suite and the harness run the same
    raw anchors (one function each)."""
    from benchmarks import anchors
    from sprout_harness.workloads import anchors as harness_anchors
    from sprout_harness.workloads import catalog

    phases = catalog.phases()
    for name in ("asv-albums-create", "asv-albums-get", "asv-notify-lag", "asv-idle-memory"):
        assert phases[name].run.__module__ == "sprout_harness.workloads.asv_phases", name
    assert anchors._harness_anchors() is harness_anchors


def test_fanout_module_runs_every_combination(tiny: None) -> None:
    """bench_fanout: S live queries x (routable, not routable), every delivery checked by
    the phase; every figure is produced (the overhead is a difference: any sign)."""
    module = importlib.import_module("benchmarks.bench_fanout")
    bench = module.CommitFanOut()
    cache = bench.setup_cache()
    assert set(cache) == set(itertools.product(*bench.params))
    for combo in itertools.product(*bench.params):
        bench.setup(cache, *combo)
        for m in (m for m in dir(bench) if m.startswith("track_")):
            value = getattr(bench, m)(cache, *combo)
            assert isinstance(value, float) and math.isfinite(value), (m, combo, value)
            if m != "track_nonmatching_overhead_p50":
                assert value > 0, (m, combo, value)


def test_pruned_combinations_are_na() -> None:
    assert _topology.not_applicable("pgnotify", "inprocess", 1)
    assert _topology.not_applicable("loam-leveldb", "websocket", 0)
    assert _topology.not_applicable("loam-postgres", "inprocess", 4) is None
    assert len(_topology.combinations()) == 11
    bench = importlib.import_module("benchmarks.bench_churn").SubscriptionChurn()
    with pytest.raises(NotImplementedError, match="durable only"):
        bench.setup({}, "pgnotify", "inprocess", 4)


def test_a_failed_check_fails_the_combination_loudly() -> None:
    bench = importlib.import_module("benchmarks.bench_churn").SubscriptionChurn()
    key = ("loam-leveldb", "inprocess", 0)
    with pytest.raises(RuntimeError, match="missed a notification"):
        bench.setup(
            {key: {"status": "error", "reason": "phase churn failed: no live subscriber missed a notification"}}, *key
        )


def test_postgres_combinations_are_na_without_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_common.ENV_PG_DSN, raising=False)
    got = _topology.entry(("loam-postgres", "inprocess", 0), {"albums": 0, "pets": 0}, [])
    assert got["status"] == "na" and "SPROUT_PG_DSN" in got["reason"]


def test_time_get_by_id_on_a_prepared_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_common.ENV_SCALE, "tiny")
    bench_fetch = importlib.import_module("benchmarks.bench_fetch")
    bench = bench_fetch.GetByIdLevelDB()
    bench.setup()
    bench.time_get_by_id_x100()
    again = bench_fetch.GetByIdLevelDB()
    again.setup()
    assert again.prepared is bench.prepared  # setup stays cheap: the node is built once per process


def _results_file(tmp_path: Path) -> Path:
    machine = tmp_path / "results" / "m1"
    machine.mkdir(parents=True)
    axes = (
        [repr(v) for v in _topology.STACKS],
        [repr(v) for v in _topology.CONNECTORS],
        [repr(v) for v in _topology.EPHEMERALS],
    )
    n = len(list(itertools.product(*axes)))
    flat = [float("nan")] * n
    combos = list(itertools.product(*axes))
    flat[combos.index(("'loam-leveldb'", "'inprocess'", "0"))] = 3.0
    flat[combos.index(("'loam-postgres'", "'inprocess'", "0"))] = None  # failed
    results = {
        "bench_create.CreateBatched.track_album_us_per_entity": [flat, list(axes)],
        "anchors.AnchorLevelDB.track_put_write_batch": [[1.0], []],
        "anchors.AnchorPostgres.track_executemany_one_tx": [[0.5], []],
        "bench_live_limit.LiveLimitGapFill.track_refill_p50": [
            [0.25 if i == 0 else float("nan") for i in range(n)],
            list(axes),
        ],
        "anchors.AnchorWebsockets.track_round_trip_p50": [[100.0], []],
    }
    data = {"commit_hash": "ab" * 20, "result_columns": ["result", "params"], "results": results}
    (machine / "abababab-env-x.json").write_text(json.dumps(data))
    units = {k: {"unit": "ms" if "refill" in k else "us"} for k in results}
    (tmp_path / "results" / "benchmarks.json").write_text(json.dumps(units))
    return machine / "abababab-env-x.json"


def test_targets_table_reads_asv_results(tmp_path: Path) -> None:
    path = _results_file(tmp_path)
    spec = [
        {
            "name": "create",
            "title": "t",
            "figure": "bench_create.CreateBatched.track_album_us_per_entity",
            "params": ["loam-leveldb", "inprocess", 0],
            "anchor": "anchors.AnchorLevelDB.track_put_write_batch",
            "max_ratio": 4,
        },
        {
            "name": "pg",
            "title": "t",
            "figure": "bench_create.CreateBatched.track_album_us_per_entity",
            "params": ["loam-postgres", "inprocess", 0],
            "anchor": "anchors.AnchorPostgres.track_executemany_one_tx",
            "max_ratio": 2,
        },
        {
            "name": "refill ms vs us",
            "title": "t",
            "figure": "bench_live_limit.LiveLimitGapFill.track_refill_p50",
            "params": ["loam-leveldb", "inprocess", 0],
            "anchor": "anchors.AnchorWebsockets.track_round_trip_p50",
            "max_ratio": 3,
        },
        {
            "name": "n/a",
            "title": "t",
            "figure": "bench_live_limit.LiveLimitGapFill.track_refill_p50",
            "params": ["loam-leveldb", "websocket", 1],
            "anchor": "anchors.AnchorWebsockets.track_round_trip_p50",
            "max_ratio": 3,
        },
        {"name": "report", "title": "t", "figure": "anchors.AnchorLevelDB.track_put_write_batch", "anchor": None},
    ]
    rows = targets.evaluate(spec, json.loads(path.read_text()), targets._units(tmp_path / "results"))
    verdicts = [r.verdict for r in rows]
    assert verdicts[0] == "met" and rows[0].ratio == pytest.approx(3.0)
    assert verdicts[1] == "n/a: figure failed"
    assert rows[2].ratio == pytest.approx(2.5) and verdicts[2] == "met"  # 0.25 ms / 100 us
    assert verdicts[3] == "n/a: figure n/a"
    assert verdicts[4] == "report"
    spec[0]["max_ratio"] = 2
    row = targets.evaluate(spec[:1], json.loads(path.read_text()), {})[0]
    assert row.verdict == "MISSED by 50%"
    table = targets.format_table(rows)
    assert "MISSED" not in table and "1 met" not in table and "2 met, 0 missed" in table
    missed = targets.format_table([row]).splitlines()
    assert missed[-1] == "  !! create MISSED by 50%: 3x, bound 2x (t)"  # repeated under the table
    assert (
        targets.format_table([targets.Row("f", "t", row.figure, row.anchor, 2.8e-3 / 0.785, None, "report")]).count(
            "0.00357x"
        )
        == 1
    )
    # an anchor that is itself parameterized: the same benchmark at other parameters
    paired = {
        "name": "paired",
        "title": "t",
        "figure": "bench_create.CreateBatched.track_album_us_per_entity",
        "params": ["loam-leveldb", "inprocess", 0],
        "anchor": "bench_create.CreateBatched.track_album_us_per_entity",
        "anchor_params": ["loam-postgres", "inprocess", 0],
        "max_ratio": 1,
    }
    assert targets.evaluate([paired], json.loads(path.read_text()), {})[0].verdict == "n/a: anchor failed"
    paired["anchor_params"] = ["loam-leveldb", "inprocess", 0]
    row = targets.evaluate([paired], json.loads(path.read_text()), {})[0]
    assert row.verdict == "met" and row.ratio == pytest.approx(1.0)


def test_targets_spec_is_keyed_by_name(tmp_path: Path) -> None:
    spec = tmp_path / "targets.py"
    spec.write_text("TARGETS = [{'title': 'x', 'figure': 'a.B.c'}]\n")
    with pytest.raises(targets.TargetsError, match="no TARGETS dict"):
        targets.load_spec(spec)
    spec.write_text("TARGETS = {'get': {'title': 'x', 'figure': 'a.B.c', 'loam': 'a.B.c'}}\n")
    with pytest.raises(targets.TargetsError, match=r"TARGETS\['get'\] has unknown keys loam"):
        targets.load_spec(spec)
    spec.write_text("TARGETS = {'get': {'title': 'x', 'figure': 'a.B.c', 'max_ratio': 2}}\n")
    assert targets.load_spec(spec) == [{"title": "x", "figure": "a.B.c", "max_ratio": 2, "name": "get"}]


def test_targets_spec_names_real_benchmarks() -> None:
    spec = targets.load_spec(REPO_ROOT / "benchmarks" / "targets.py")
    assert len(spec) >= 7
    for t in spec:
        for name in filter(None, (t["figure"], t.get("anchor"))):
            module, cls, method = name.split(".")
            assert hasattr(getattr(importlib.import_module(f"benchmarks.{module}"), cls), method), name
        for key in ("params", "anchor_params"):
            params = t.get(key)
            if params is None:
                continue
            module, cls, _ = t["figure" if key == "params" else "anchor"].split(".")
            bench = getattr(importlib.import_module(f"benchmarks.{module}"), cls)
            assert len(params) == len(bench.params), t
            assert all(p in axis for p, axis in zip(params, bench.params)), (t, bench.params)
            if list(bench.param_names) == ["stack", "connector", "ephemerals"]:
                assert _topology.not_applicable(*params) is None, t


def test_targets_tool_does_not_import_a_stack() -> None:
    source = (REPO_ROOT / "sprout_harness" / "asvtools" / "targets.py").read_text()
    assert "import loam" not in source and "from loam" not in source and "pgnotify" not in source


def test_targets_show_memory_in_readable_units() -> None:
    assert targets.Figure(10480.0, "bytes", "ok").show() == "10.5 kB"
    assert targets.Figure(2.5e6, "bytes", "ok").show() == "2.5 MB"
    assert targets.Figure(512.0, "bytes", "ok").show() == "512 bytes"
    assert targets.Figure(2.485, "us", "ok").show() == "2.485 us"
    assert targets.Figure(None, "bytes", "failed").show() == "failed"


async def test_codec_floor_runs_the_codec_and_checks_what_it_decoded() -> None:
    from sprout_harness.workloads.anchors import codec_hop_p50_us

    encoded: list[tuple[str, int]] = []

    def encode(id: str, props: dict, commit_ns: int) -> bytes:
        encoded.append((id, props["n"]))
        return json.dumps({"id": id, "commit_ns": commit_ns}).encode()

    docs = [{"n": i} for i in range(3)]
    p50 = await codec_hop_p50_us(encode, lambda b: json.loads(b)["commit_ns"], 50, docs)
    assert p50 > 0 and len(encoded) == 55  # 50 samples after 5 warm-up messages
    assert encoded[:4] == [("e0", 0), ("e1", 1), ("e2", 2), ("e0", 0)]
    with pytest.raises(AssertionError, match="55 messages received, 55 with a commit stamp other"):
        await codec_hop_p50_us(encode, lambda b: json.loads(b)["commit_ns"] + 1, 50, docs)


def test_a_ratio_just_over_its_bound_never_reads_missed_by_0_percent() -> None:
    assert targets._missed_by(4.004 / 4) == "MISSED by 0.1%"
    assert targets._missed_by(1.03) == "MISSED by 3%"
    assert targets._missed_by(1.5) == "MISSED by 50%"
    assert targets._missed_by(2.5) == "MISSED by 2.5x"


def test_wire_fanout_beside_its_floor(tiny: None) -> None:
    """bench_realtime: WebSocket clients in a worker process at each of 4 steps, and the
    bare-websockets floor at the same counts; every figure a positive latency."""
    from benchmarks import bench_realtime
    from sprout_harness.asvsuite import realtime

    bench = bench_realtime.RealtimeFanOut()
    cache = bench.setup_cache()
    assert not isinstance(cache, _common.Skipped), cache
    for step in bench.params[0]:
        n = realtime.connections(step)
        assert cache[f"notify@{n}"]["count"] == n * realtime.COMMITS  # every client got every commit
        assert cache[f"floor@{n}"]["count"] == n * realtime.COMMITS
        bench.setup(cache, step)
        values = [
            bench.track_lag_p50(cache, step),
            bench.track_lag_p99(cache, step),
            bench.track_floor_p50(cache, step),
            bench.track_floor_p99(cache, step),
        ]
        assert all(v > 0 and math.isfinite(v) for v in values), (step, values)
