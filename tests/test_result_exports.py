"""Results where CI systems look: JUnit XML (read back with junitparser), CSV (read back with
the csv module) and a push to a real Prometheus Pushgateway (Debian's binary on loopback)."""

from __future__ import annotations

import csv
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped
from prometheus_client.parser import text_string_to_metric_families

from sprout_harness.metrics.results import Check, ThresholdOutcome
from sprout_harness.monitor import push
from sprout_harness.reports import csv_report, junit
from support.cli import SMALL, invoke, sets
from support.runs import make_run
from support.system import require_tool


def test_junit_has_a_case_per_check_and_threshold(tmp_path: Path) -> None:
    run = make_run()
    run.phases[0].checks.append(Check("no duplicates", False, "3 ids twice"))
    run.thresholds = [
        ThresholdOutcome("*/create_one", "p99", "< 5ms", True, {"create/create_one": 6e5}),
        ThresholdOutcome("*/lag.*", "p99", "< 1ms", False, {}, "lag p99 3.9 ms >= 1 ms"),
    ]
    xml = JUnitXml.fromfile(str(junit.write(run, tmp_path / "out" / "junit.xml")))
    suites = {s.name: list(s) for s in xml}
    assert list(suites) == [
        "leveldb-local/create",
        "leveldb-local/live",
        "leveldb-local/fulltext",
        "leveldb-local/thresholds",
    ]
    create = {c.name: c for c in suites["leveldb-local/create"]}
    assert create["every write landed"].is_passed
    failed = create["no duplicates"].result[0]
    assert isinstance(failed, Failure) and failed.message == "3 ids twice"
    assert [c.name for c in suites["leveldb-local/live"]] == ["phase"] and suites["leveldb-local/live"][0].is_passed
    skipped = suites["leveldb-local/fulltext"][0].result[0]
    assert isinstance(skipped, Skipped) and skipped.message == "stack has no text index"
    rules = suites["leveldb-local/thresholds"]
    assert [c.is_passed for c in rules] == [True, False]
    assert rules[1].result[0].message == "lag p99 3.9 ms >= 1 ms"


def test_junit_reports_an_errored_phase_as_an_error(tmp_path: Path) -> None:
    run = make_run()
    run.phases[1].status, run.phases[1].reason = "error", "StackError: connection reset"
    xml = JUnitXml.fromfile(str(junit.write(run, tmp_path / "j.xml")))
    live = next(s for s in xml if s.name.endswith("/live"))
    err = next(c for c in live if c.name == "phase").result[0]
    assert isinstance(err, Error) and err.message == "StackError: connection reset"


def test_csv_has_a_row_per_figure_and_counter(tmp_path: Path) -> None:
    run = make_run()
    metrics, counters = csv_report.write(run, tmp_path / "csv")
    rows = list(csv.DictReader(metrics.open()))
    want = [
        (p.name, kind, name)
        for p in run.phases
        for kind, hs in (("latency", p.latencies), ("lag", p.lags), ("connector", p.connector_delays))
        for name, h in hs.items()
        if h.count
    ]
    assert [(r["phase"], r["kind"], r["metric"]) for r in rows] == want
    one = next(r for r in rows if r["metric"] == "create_one")
    h = run.phase("create").latencies["create_one"]
    assert int(one["count"]) == h.count and one["ops_per_s"] == ""  # the create phase has two ops
    assert float(one["p99_ms"]) == pytest.approx(h.percentile(99) / 1e6, rel=1e-5)
    assert float(one["max_ms"]) == pytest.approx(h.max / 1e6, rel=1e-5)
    sub = next(r for r in rows if r["metric"] == "subscribe")  # the live phase's only op
    assert float(sub["ops_per_s"]) == pytest.approx(run.phase("live").throughput["subscribe"], rel=1e-5)
    assert {r["run_id"] for r in rows} == {run.metadata.run_id}
    assert list(csv.DictReader(counters.open())) == [
        {
            "run_id": "run-7",
            "config": "leveldb-local",
            "phase": "create",
            "status": "ok",
            "counter": "entities_created",
            "value": "22001",
        }
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    binary = require_tool(("prometheus-pushgateway", "pushgateway"), "prometheus-pushgateway", "Prometheus push tests")
    addr = f"127.0.0.1:{_free_port()}"
    proc = subprocess.Popen(
        [binary, f"--web.listen-address={addr}", f"--persistence.file={tmp_path / 'pushgateway.data'}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30  # a hang guard, not a performance bound
        while True:
            try:
                urllib.request.urlopen(f"http://{addr}/-/ready", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pushgateway did not start: {proc.stderr.read().decode()[-500:]}") from None
                time.sleep(0.05)
        yield addr
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_finished_run_is_pushed_to_a_real_pushgateway(pushgateway: str) -> None:
    run = make_run()
    push.push(run, pushgateway)
    text = urllib.request.urlopen(f"http://{pushgateway}/metrics", timeout=5).read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = [
        s
        for f in families.values()
        for s in f.samples
        if s.labels.get("job") == "sprout" and s.labels.get("run_id") == run.metadata.run_id
    ]
    assert samples, sorted(families)[:20]
    counts = {(s.labels.get("phase"), s.labels.get("op")): s.value for s in samples if s.name.endswith("_count")}
    assert counts[("create", "create_one")] == run.phase("create").latencies["create_one"].count


def test_an_unreachable_gateway_is_an_oserror() -> None:
    with pytest.raises(OSError):
        push.push(make_run(), f"127.0.0.1:{_free_port()}", timeout_s=2)


def test_sprout_run_writes_junit_csv_and_pushes(tmp_path: Path, pushgateway: str) -> None:
    res = invoke(
        "run",
        "leveldb-local",
        *sets(SMALL),
        "--quiet",
        "--junit",
        str(tmp_path / "j.xml"),
        "--csv",
        str(tmp_path / "csv"),
        "--prometheus-push",
        pushgateway,
    )
    assert res.exit_code == 0, res.output
    xml = JUnitXml.fromfile(str(tmp_path / "j.xml"))
    cases = [c for s in xml for c in s]
    assert len(list(xml)) == 5 and cases and all(c.is_passed for c in cases)
    rows = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").open()))
    assert {r["phase"] for r in rows} >= {"create@durable", "fetch@durable"}
    text = urllib.request.urlopen(f"http://{pushgateway}/metrics", timeout=5).read().decode()
    assert 'job="sprout"' in text and "create@durable" in text


def test_a_failed_push_is_one_line_and_exit_1_with_the_reports_written(tmp_path: Path) -> None:
    res = invoke(
        "run",
        "leveldb-local",
        *sets(SMALL),
        "--quiet",
        "--csv",
        str(tmp_path / "csv"),
        "--prometheus-push",
        f"127.0.0.1:{_free_port()}",
    )
    assert res.exit_code == 1
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --prometheus-push: cannot push to 127.0.0.1:"), lines
    assert (tmp_path / "csv" / "metrics.csv").exists()
