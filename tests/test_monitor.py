"""The live monitor around real short runs of the loam stack (LevelDB): status, JSON API,
Prometheus text (parsed by prometheus-client's own parser), graceful stop, safe binding."""

from __future__ import annotations

import asyncio
import json
import math
import random

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sprout_harness.metrics import Histogram, load_run
from sprout_harness.monitor import LiveMonitor, MonitorConfigError, MonitorServer, RunState
from sprout_harness.monitor.prometheus import BUCKETS_S, prom_buckets
from sprout_harness.monitor.server import parse_addr
from sprout_harness.monitor.state import HistView
from sprout_harness.topology.runner import Runner
from support.monitor import (
    PHASES,
    REPO,
    aget_json,
    ahttp,
    http,
    read_monitor_url,
    start_cli_run,
    start_run_in_thread,
    tiny_config,
    tiny_sets,
    wait_for_status,
)


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


async def test_status_moves_through_phases_and_metrics_are_exported(tmp_path):
    runner = Runner(tiny_config(writer_ops=30_000), json_path=tmp_path / "run.json")
    # The run gets a thread of its own (as `sprout run` runs it on the main thread): a LevelDB
    # phase never yields its loop, and this test's loop must keep polling meanwhile.
    base, run = await start_run_in_thread(runner, LiveMonitor(port=0, interval_s=0.2), linger_s=1.0)
    during: dict = {}
    try:
        # While writers runs: the JSON API and the Prometheus text hold live figures.
        await wait_for_status(base + "api/status", lambda s: s["status"] == "running writers@durable")
        during["metrics"] = await wait_for_status(
            base + "api/metrics",
            lambda m: (
                m["current"]
                and m["current"]["name"] == "writers@durable"
                and sum(p["phase"] == "writers@durable" for p in m["timeline"]) >= 2
            ),
        )
        status, headers, body = await ahttp(base + "metrics")
        during["prom"] = (status, headers.get("Content-Type", ""), body.decode())
        during["final"] = await wait_for_status(base + "api/status", lambda s: s["terminal"])
        during["final_metrics"] = await aget_json(base + "api/metrics")
        during["final_prom"] = (await ahttp(base + "metrics"))[2].decode()
        result = await asyncio.wait_for(asyncio.wrap_future(run), 60)
    finally:
        if not run.done():
            runner.request_stop("test cleanup")
            await asyncio.wait_for(asyncio.wrap_future(run), 60)

    assert result.status == "ok", result.reason
    final = during["final"]
    assert final["status"] == "completed"
    history = [h["status"] for h in final["history"]]
    expected = ["starting", "seeding", *[f"running {p}" for p in PHASES], "completed"]
    assert [h for h in history if h in expected] == expected, history
    assert final["config"]["name"] == "leveldb-local" and final["run_id"] == result.metadata.run_id
    assert final["phases_planned"] == PHASES
    assert [p["name"] for p in final["phases_done"]] == PHASES

    live = during["metrics"]
    assert live["current"]["name"] == "writers@durable"
    assert live["current"]["latencies"]["update"]["count"] > 0
    assert live["current"]["latencies"]["update"]["p99_ms"] > 0
    assert any(p["phase"] == "writers@durable" and p["ops"] > 0 and p["p99_ms"] for p in live["timeline"])

    status, ctype, text = during["prom"]
    assert status == 200 and ctype.startswith("text/plain")
    fams = families(text)
    running = {s.labels["status"]: s.value for s in fams["sprout_run_status"].samples}
    assert running["running"] == 1.0 and running["completed"] == 0.0
    live_ops = {
        (s.labels["phase"], s.labels["op"]): s.value
        for s in fams["sprout_operations"].samples
        if s.name == "sprout_operations_total"
    }
    assert live_ops[("writers@durable", "update")] > 0

    # After the run: every phase's counters and histograms match the written report exactly.
    report = load_run(tmp_path / "run.json")
    fams = families(during["final_prom"])
    ops = {
        (s.labels["phase"], s.labels["op"]): s.value
        for s in fams["sprout_operations"].samples
        if s.name == "sprout_operations_total"
    }
    hist = fams["sprout_operation_latency_seconds"]
    for phase in report.phases:
        for op, h in phase.latencies.items():
            assert ops[(phase.name, op)] == h.count
            samples = [s for s in hist.samples if s.labels["phase"] == phase.name and s.labels["op"] == op]
            count = next(s.value for s in samples if s.name.endswith("_count"))
            total = next(s.value for s in samples if s.name.endswith("_sum"))
            inf = next(s.value for s in samples if s.name.endswith("_bucket") and s.labels["le"] == "+Inf")
            assert count == inf == h.count
            assert total == pytest.approx(h.total / 1e9)
            buckets = [s.value for s in samples if s.name.endswith("_bucket")]
            assert buckets == sorted(buckets)  # cumulative
    lags = fams["sprout_subscription_lag_seconds"]
    lag_counts = {(s.labels["phase"], s.labels["name"]): s.value for s in lags.samples if s.name.endswith("_count")}
    live_limit = report.phase("live-limit@durable")
    assert lag_counts and all(lag_counts[("live-limit@durable", n)] == h.count for n, h in live_limit.lags.items())
    assert {s.labels["status"]: s.value for s in fams["sprout_run_status"].samples}["completed"] == 1.0
    info = fams["sprout_run_info"].samples[0]
    assert info.labels["run_id"] == result.metadata.run_id and info.labels["stack"] == "loam"
    final_metrics = during["final_metrics"]
    assert final_metrics["overall"]["ops"] == sum(p.ops for p in report.phases)
    assert [p["status"] for p in final_metrics["phases"]] == [p.status for p in report.phases]


def test_cli_stop_endpoint_ends_the_run_gracefully_with_reports(tmp_path):
    report, page = tmp_path / "run.json", tmp_path / "run.html"
    proc = start_cli_run(
        [
            "run",
            "configs/leveldb-local.yaml",
            *[f"--set={s}" for s in tiny_sets(writer_ops=2_000_000)],
            "--monitor",
            "--monitor-addr",
            "127.0.0.1:0",
            "--json",
            str(report),
            "--html",
            str(page),
            "-q",
        ],
        cwd=REPO,
    )
    try:
        url = read_monitor_url(proc)
        asyncio.run(wait_for_status(url + "api/status", lambda s: s["status"] == "running writers@durable"))
        # The stop endpoint insists on JSON (a cross-site form post cannot stop a run).
        status, _, _ = http(url + "api/stop", method="POST", body=b"x", headers={"Content-Type": "text/plain"})
        assert status == 415
        assert http(url + "api/stop")[0] == 405
        status, _, body = http(
            url + "api/stop", method="POST", body=b"{}", headers={"Content-Type": "application/json"}
        )
        assert status == 202 and json.loads(body)["stopping"] is True
        final = asyncio.run(wait_for_status(url + "api/status", lambda s: s["terminal"]))
        assert final["status"] == "cancelled"
        assert "stopped from the monitor" in final["reason"]
        # A second stop after the end is refused, not an error page.
        assert http(url + "api/stop", method="POST", body=b"{}", headers={"Content-Type": "application/json"})[0] == 409
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    run = load_run(report)
    assert run.status == "cancelled" and "stopped from the monitor" in run.reason
    assert [p.name for p in run.phases][:3] == PHASES[:3]
    writers = run.phase("writers@durable")
    assert writers.status == "cancelled" and 0 < writers.latencies["update"].count < 2_000_000
    assert page.exists() and "sprout-data" in page.read_text(encoding="utf-8")


async def test_non_loopback_bind_needs_the_public_flag_and_a_token():
    state = RunState()
    with pytest.raises(MonitorConfigError, match="--monitor-public"):
        MonitorServer(state, "0.0.0.0", 0)
    with pytest.raises(MonitorConfigError, match="--monitor-token"):
        MonitorServer(state, "0.0.0.0", 0, public=True, token=None)
    MonitorServer(state, "127.0.0.5", 0)  # any loopback address is fine without a token
    MonitorServer(state, "::1", 0)

    server = MonitorServer(state, "0.0.0.0", 0, public=True, token="s3cret")
    async with server:
        base = f"http://127.0.0.1:{server.bound_port}/"
        assert (await ahttp(base + "api/status"))[0] == 401
        assert (await ahttp(base + "api/status", headers={"X-Sprout-Token": "wrong"}))[0] == 401
        assert (await ahttp(base + "api/status", headers={"X-Sprout-Token": "s3cret"}))[0] == 200
        assert (await ahttp(base + "metrics", headers={"Authorization": "Bearer s3cret"}))[0] == 200
        status, _, page = await ahttp(base + "?token=s3cret")
        assert status == 200 and b'"s3cret"' in page and b"static/plotly.min.js?token=s3cret" in page
        status, headers, js = await ahttp(base + "static/plotly.min.js?token=s3cret")
        assert status == 200 and len(js) > 1_000_000 and headers["Content-Type"].startswith("text/javascript")
        assert (await ahttp(base + "nope?token=s3cret"))[0] == 404
        # No run attached: nothing to stop.
        status, _, body = await ahttp(
            base + "api/stop?token=s3cret", method="POST", body=b"{}", headers={"Content-Type": "application/json"}
        )
        assert status == 409


async def test_dashboard_escapes_the_token_and_refuses_oversized_requests():
    token = "t</script><script>alert(1)</script>"
    async with MonitorServer(RunState(), "127.0.0.1", 0, token=token) as server:
        status, _, page = await ahttp(server.url)
        assert status == 200 and b"<script>alert" not in page and page.count(b"<script") == 2
        assert b'var TOKEN = "t\\u003c/script\\u003e' in page
        base = f"http://127.0.0.1:{server.bound_port}/"
        status, _, body = await ahttp(
            base + "api/stop",
            method="POST",
            body=b"x" * 100_000,
            headers={"X-Sprout-Token": token, "Content-Type": "application/json"},
        )
        assert status == 413 and "over the limit" in json.loads(body)["error"]


def test_cli_refuses_a_public_bind_without_flag_or_token():
    for extra, needle in (
        (["--monitor-addr", "0.0.0.0:0"], "--monitor-public"),
        (["--monitor-addr", "0.0.0.0:0", "--monitor-public"], "--monitor-token"),
        (["--monitor-addr", "127.0.0.1"], "needs a port"),
    ):
        proc = start_cli_run(["run", "configs/leveldb-local.yaml", "--monitor", *extra, "-q"], cwd=REPO)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, (extra, out, err)
        assert needle in err and "error:" in err


def test_parse_addr():
    assert parse_addr("127.0.0.1:9090") == ("127.0.0.1", 9090)
    assert parse_addr("[::1]:0") == ("::1", 0)
    assert parse_addr(":8000") == ("127.0.0.1", 8000)
    for bad in ("localhost", "1.2.3.4:http", "1.2.3.4:70000"):
        with pytest.raises(MonitorConfigError):
            parse_addr(bad)


def test_prometheus_buckets_follow_the_histogram():
    rng = random.Random(7)
    values = [int(rng.lognormvariate(math.log(400_000), 1.5)) for _ in range(20_000)]
    h = Histogram()
    h.record_many(values)
    buckets = prom_buckets(HistView.of(h))
    assert buckets[-1] == ("+Inf", float(len(values)))
    for (le, cum), bound in zip(buckets, BUCKETS_S):
        exact_low = sum(v <= bound * 1e9 * 0.98 for v in values)
        exact_high = sum(v <= bound * 1e9 * 1.02 for v in values)
        assert exact_low <= cum <= exact_high, (le, cum, exact_low, exact_high)


def test_interval_percentiles_come_from_histogram_deltas():
    h = Histogram()
    h.record_many([1_000] * 100)
    first = HistView.of(h)
    h.record_many([5_000_000] * 50)
    delta = HistView.of(h).minus(first)
    assert delta.count == 50
    s = delta.summary_ms()
    assert s["p50_ms"] == pytest.approx(5.0, rel=0.01) and s["p99_ms"] == pytest.approx(5.0, rel=0.01)
