"""The asv suite is valid (`asv check`), configured as the project needs, and its anchors and
offline-page helpers work on real libraries (fast; the end-to-end runs are in the slow tests)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import orjson
import pytest

from support.asv import REPO_ROOT, asv, explain, load_conf

sys.path.insert(0, str(REPO_ROOT))  # `benchmarks` is a package at the repo root, as asv imports it

from benchmarks import _common, anchors  # noqa: E402
from sprout_harness.asvtools import offline  # noqa: E402


def test_asv_check_passes() -> None:
    proc = asv(REPO_ROOT, "check", "--python=same", timeout=300)
    assert proc.returncode == 0 and "No problems found" in proc.stdout, explain(proc)


def _dep_name(spec: str) -> str:
    return re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0].lower().replace("_", "-")


def test_conf_matches_the_project() -> None:
    import tomllib

    conf = load_conf(REPO_ROOT)
    expected = {
        "repo": ".",
        "environment_type": "virtualenv",
        "benchmark_dir": "benchmarks",
        "html_dir": "html",
        "results_dir": ".asv/results",
        "env_dir": ".asv/env",
        "branches": ["main"],
    }
    assert {k: conf.get(k) for k in expected} == expected
    assert "--no-build-isolation" in " ".join(conf["build_command"])
    req = {k.lower() for k in conf["matrix"]["req"]}
    # every distribution asv builds: the stores and stacks are installed without dependencies
    ours = {"sprout-harness", "loam", "sprout-loam", "sprout-pgnotify"}
    deps = [
        d
        for dist in ("", "stores/loam", "stacks/loam", "stacks/pgnotify")
        for d in tomllib.loads((REPO_ROOT / dist / "pyproject.toml").read_text())["project"]["dependencies"]
    ]
    missing = {_dep_name(d) for d in deps} - req - ours
    assert not missing, f"asv.conf.json matrix lacks project dependencies {missing}"
    built = " ".join(conf["build_command"])
    assert all(f"{{build_dir}}/{dist}" in built for dist in ("stores/loam", "stacks/loam", "stacks/pgnotify"))
    # asv drops extras, and the no-isolation build needs the build backend in the env.
    assert {"psycopg-binary", "setuptools", "wheel"} <= req


def test_album_payloads_are_deterministic_100_byte_json() -> None:
    from sprout_harness.workloads import anchors as harness_anchors

    pairs = _common.album_payloads(300, seed=7)
    assert pairs == _common.album_payloads(300, seed=7)
    assert pairs != _common.album_payloads(300, seed=8)
    assert {len(v) for _, v in pairs} == {harness_anchors.PAYLOAD_BYTES}
    assert len({k for k, _ in pairs}) == 300
    docs = _common.album_docs(300, seed=7)
    assert [orjson.loads(v) for _, v in pairs] == list(docs)
    assert docs[5]["id"] == harness_anchors.album_id(5)
    # the suite's payloads are the harness's (its asv phases create the same documents)
    assert _common.album_payloads(50) == harness_anchors.album_payloads(50)
    props = _common.album_props(3)
    assert [p["no"] for p in props] == [d["id"] for d in _common.album_docs(3)] and "id" not in props[0]


def test_one_sizes_table_and_one_seeded_rng() -> None:
    """Every scale has every size (one table), and benchmark modules draw random numbers
    only through `_common.rng` (fixed seeds: the same data in every run and commit)."""
    import dataclasses

    fields = [f.name for f in dataclasses.fields(_common.Scale)]
    for name, sc in _common.SCALES.items():
        assert sc.name == name
        assert all(getattr(sc, f) > 0 for f in fields if f != "name"), sc
    assert _common.rng(3).random() == _common.rng(3).random()
    assert _common.rng(3, numpy=True).random() == _common.rng(3, numpy=True).random()
    drawing = re.compile(r"random\.Random\(|default_rng\(|np\.random\.|^import random|^from random", re.M)
    for path in sorted(
        [*(REPO_ROOT / "benchmarks").glob("*.py"), *(REPO_ROOT / "sprout_harness" / "asvsuite").glob("*.py")]
    ):
        if path.name != "_common.py":
            assert not drawing.search(path.read_text()), f"{path.name}: draw through _common.rng"


def test_scale_follows_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_common.ENV_SCALE, "tiny")
    assert _common.scale().name == "tiny"
    monkeypatch.delenv(_common.ENV_SCALE)
    assert _common.scale().name == "full"
    monkeypatch.setenv(_common.ENV_SCALE, "huge")
    with pytest.raises(ValueError, match="SPROUT_BENCH_SCALE"):
        _common.scale()


def test_postgres_anchor_is_na_without_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_common.ENV_PG_DSN, raising=False)
    with pytest.raises(NotImplementedError, match="SPROUT_PG_DSN"):
        _common.postgres_dsn_or_skip()
    bench = anchors.AnchorPostgres()
    cache = bench.setup_cache()
    # a Skipped, not None (asv would then call setup without the cache argument), naming why
    assert isinstance(cache, _common.Skipped) and _common.ENV_PG_DSN in cache.reason
    with pytest.raises(NotImplementedError):
        bench.setup(cache)


def _check_figures(cache: dict, names: set[str]) -> None:
    assert set(cache) == names
    assert all(
        isinstance(v, list) and v and all(isinstance(x, float) and 0 < x < 1e6 for x in v) for v in cache.values()
    ), cache


def test_anchors_measure_real_libraries(monkeypatch: pytest.MonkeyPatch, pg_dsn: str) -> None:
    monkeypatch.setenv(_common.ENV_SCALE, "tiny")
    monkeypatch.setenv(_common.ENV_PG_DSN, pg_dsn)
    for cls, names in [
        (anchors.AnchorLevelDB, {"put_write_batch", "get_random"}),
        (anchors.AnchorPostgres, {"executemany_one_tx", "copy"}),
        (
            anchors.AnchorWebsockets,
            {"round_trip_p50", "round_trip_p99", "one_way", "one_way_latency_p50", "one_way_latency_p99"},
        ),
        (anchors.AnchorAsyncioQueue, {"hop", "burst"}),
    ]:
        bench = cls()
        cache = bench.setup_cache()
        bench.setup(cache)
        _check_figures(cache, names)
        tracked = [m for m in dir(cls) if m.startswith("track_")]
        assert len(tracked) == len(names)
        for m in tracked:  # samples asv keeps statistics for (one per batch or slice)
            got = getattr(bench, m)(cache)
            assert set(got) == {"samples", "number"} and got["number"] == 1, (m, got)
            assert len(got["samples"]) == _common.scale().repeats and min(got["samples"]) > 0, (m, got)
        assert cls.unit == "us"


def test_offline_rewrite_covers_asvs_page() -> None:
    import asv

    page = (Path(asv.__file__).parent / "www" / "index.html").read_text(encoding="utf-8")
    new, n = offline.rewrite_html(page, "index.html")
    assert n == len(offline.ASSETS)
    assert "integrity=" not in new and "cdn" not in new.lower()
    for a in offline.ASSETS:
        assert a.local in new


def test_offline_rewrite_rejects_unknown_cdn() -> None:
    page = '<script src="https://cdn.example.org/lib.js"></script>'
    with pytest.raises(offline.OfflineAssetsError, match="cdn.example.org/lib.js"):
        offline.rewrite_html(page, "x.html")


def test_offline_package_json_lists_every_asset_package() -> None:
    import json

    deps = json.loads((REPO_ROOT / offline.PACKAGE_DIR / "package.json").read_text())["dependencies"]
    assert {a.package for a in offline.ASSETS} == set(deps)


def _continuous_cmd(monkeypatch: pytest.MonkeyPatch, *argv: str) -> list[str]:
    """The `asv continuous` command line the wrapper would run (nothing is run)."""
    from sprout_harness.asvtools import continuous

    calls: list[list[str]] = []

    def fake_run(cmd, env=None, quiet=False):  # noqa: ANN001
        calls.append(list(cmd))
        return 0

    monkeypatch.setattr(continuous, "run", fake_run)
    assert continuous.main(["main", "HEAD", "--no-postgres", *argv]) == 0
    (cmd,) = [c for c in calls if "continuous" in c]
    return cmd[cmd.index("continuous") :]


def test_continuous_gates_on_benchmarks_with_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import gate
    from sprout_harness.asvtools import continuous

    cmd = _continuous_cmd(monkeypatch)
    assert cmd[:5] == ["continuous", "main", "HEAD", "--factor", "1.2"]
    assert " ".join(cmd).count("--bench") == len(continuous.GATE_BENCH) == 2
    assert (
        "-a" in cmd
        and cmd[cmd.index("-a") + 1] == f"rounds={continuous.ROUNDS}"
        and continuous.ROUNDS >= 2
        and "--interleave-rounds" in cmd
    )
    # the gate selects the gate module and the time_ benchmarks, and no absolute track_ figure
    selected = lambda name: any(re.search(rx, name) for rx in continuous.GATE_BENCH)  # noqa: E731
    assert selected("gate.GateLevelDB.track_get_vs_plyvel_get")
    assert selected("bench_fetch.GetByIdLevelDB.time_get_by_id_x100")
    assert not selected("anchors.AnchorWebsockets.track_round_trip_p99")
    assert not selected("bench_live_limit.NotifyLag.track_lag_p50")
    assert all(
        name.startswith("track_")
        for cls in (gate.GateLevelDB, gate.GateNotifyLag)
        for name in vars(cls)
        if not name.startswith("_")
    )


def test_continuous_all_and_explicit_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    cmd = _continuous_cmd(monkeypatch, "--all")
    assert "--bench" not in cmd and "-a" not in cmd  # the whole suite, asv's own rounds
    cmd = _continuous_cmd(monkeypatch, "--bench", "probe", "--quick", "--factor", "1.5")
    assert cmd[cmd.index("--bench") + 1] == "probe" and cmd.count("--bench") == 1
    assert "--quick" in cmd and "-a" not in cmd and cmd[cmd.index("--factor") + 1] == "1.5"


def test_the_uncommitted_note_names_any_project_file_but_the_benchmarks(tmp_path: Path, monkeypatch) -> None:
    """asv builds HEAD but reads the benchmark files from the working tree: a change to any
    other tracked file is what the note warns about, whatever the project's layout."""
    import subprocess

    from sprout_harness.asvtools import bench

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    for rel in ("store/engine.py", "benchmarks/bench_x.py", "README.md"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_text("v1\n")
    git("add", ".")
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "one")
    for rel in ("store/engine.py", "benchmarks/bench_x.py"):
        (tmp_path / rel).write_text("v2\n")
    (tmp_path / "untracked.py").write_text("new\n")
    monkeypatch.chdir(tmp_path)
    assert [line[3:] for line in bench._dirty_project_files()] == ["store/engine.py"]
