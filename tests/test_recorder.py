"""PhaseRecorder: samples, counters, errors, checks, status, timeline and throughput."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from sprout_harness.metrics import PhaseRecorder, PhaseResult
from sprout_harness.metrics.timeline import Timeline


class StepClock:
    """A deterministic perf_counter_ns stand-in the test advances by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000_000_000

    def __call__(self) -> int:
        return self.now


def test_record_fills_histogram_counts_throughput_and_timeline() -> None:
    clock = StepClock()
    rec = PhaseRecorder("create", clock=clock)
    rec.start()
    for i in range(100):  # second 0: 100 ops of 1 ms
        rec.record("create_one", 1_000_000)
    clock.now += 1_500_000_000
    for i in range(50):  # second 1: 50 ops of 5 ms
        rec.record("create_one", 5_000_000)
    clock.now += 2_000_000_000  # second 3; second 2 idle
    rec.record("create_batch", 20_000_000)
    clock.now += 500_000_000
    rec.stop()
    res = rec.result()
    assert res.status == "ok" and res.reason is None
    assert res.wall_ns == 4_000_000_000
    assert res.latencies["create_one"].count == 150
    assert res.latencies["create_batch"].count == 1
    assert res.throughput == {"create_one": 150 / 4.0, "create_batch": 1 / 4.0}
    assert [(p.second, p.ops) for p in res.timeline] == [(0, 100), (1, 50), (2, 0), (3, 1)]
    assert abs(res.timeline[0].p99_ns - 1_000_000) <= 10_000
    assert abs(res.timeline[1].p99_ns - 5_000_000) <= 50_000
    assert res.timeline[2].p99_ns == 0.0
    assert res.ops == 151
    assert res.all_latencies().count == 151


def test_timer_records_perf_counter_delta_and_counts_errors_by_type() -> None:
    rec = PhaseRecorder("query")
    rec.start()
    with rec.timer("get") as t:
        time.sleep(0.002)
    assert t.elapsed_ns is not None and t.elapsed_ns >= 2_000_000
    assert rec.latency("get").count == 1
    assert rec.latency("get").max == t.elapsed_ns
    for i in range(7):
        with pytest.raises(KeyError):
            with rec.timer("get"):
                raise KeyError(f"doc-{i}")
    with pytest.raises(TimeoutError):
        with rec.timer("get"):
            raise TimeoutError("slow")
    res = rec.result()
    assert res.latencies["get"].count == 1  # failures are not latency samples
    assert res.errors["KeyError"].count == 7
    assert res.errors["KeyError"].samples == [f"get: 'doc-{i}'" for i in range(2, 7)]  # 5 most recent
    assert res.errors["TimeoutError"].count == 1
    assert res.error_count == 8
    assert res.status == "ok"  # errors are counted; checks decide pass/fail


async def test_timer_lets_cancellation_through_without_counting() -> None:
    rec = PhaseRecorder("subscribe")
    rec.start()

    async def op() -> None:
        with rec.timer("wait"):
            await asyncio.sleep(10)

    task = asyncio.create_task(op())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    res = rec.result()
    assert res.errors == {}
    assert "wait" not in res.latencies


def test_counters_lags_connector_delays() -> None:
    rec = PhaseRecorder("sync")
    rec.start()
    rec.count("entities_created")
    rec.count("entities_created", 9)
    rec.lag("commit_to_notify", 3_000_000)
    rec.lag("commit_to_notify", 4_000_000)
    rec.connector_delay("changes", 250_000)
    res = rec.result()
    assert res.counters == {"entities_created": 10}
    assert res.lags["commit_to_notify"].count == 2 and res.lags["commit_to_notify"].max == 4_000_000
    assert res.connector_delays["changes"].min == 250_000
    assert res.latencies == {}  # lags do not leak into latencies


def test_failed_check_fails_the_phase_and_names_it() -> None:
    rec = PhaseRecorder("create")
    rec.start()
    rec.check("row count", True)
    rec.check("every write landed", False, "998 of 1000 found")
    res = rec.result()
    assert res.status == "failed"
    assert "every write landed" in res.reason and "998 of 1000" in res.reason
    assert [c.ok for c in res.checks] == [True, False]
    assert len(res.failed_checks) == 1


def test_status_marks_and_precedence() -> None:
    rec = PhaseRecorder("live")
    rec.mark_unsupported("stack has no live queries")
    res = rec.result()
    assert (res.status, res.reason) == ("unsupported", "stack has no live queries")
    assert res.wall_ns == 0 and res.timeline == []
    rec2 = PhaseRecorder("x")
    rec2.start()
    rec2.check("c", False)
    rec2.mark_cancelled()
    assert rec2.result().status == "cancelled"
    rec2.mark_error("boom")
    assert (rec2.result().status, rec2.result().reason) == ("error", "boom")
    rec2.mark_unsupported("late")  # lower precedence: does not hide the crash
    assert rec2.result().status == "error"


def test_result_is_a_snapshot_and_round_trips() -> None:
    rec = PhaseRecorder("p")
    rec.start()
    rec.latency("a").record_many(np.arange(1, 1001) * 1000)
    rec.record("a", 5)
    rec.extra["batch_size"] = 100
    res = rec.result()
    rec.record("a", 7)
    assert res.latencies["a"].count == 1001
    back = PhaseResult.from_dict(res.to_dict())
    assert back == res
    assert back.extra == {"batch_size": 100}
    assert back.peak_rss_bytes > 0


def test_record_before_start_starts_the_phase() -> None:
    rec = PhaseRecorder("p")
    rec.record("a", 10)
    rec.stop()
    res = rec.result()
    assert res.latencies["a"].count == 1 and [p.ops for p in res.timeline] == [1]
    assert res.started_at > 0 and res.ended_at >= res.started_at


def test_timeline_clamps_samples_before_start() -> None:
    tl = Timeline(start_ns=10_000_000_000)
    tl.record(9_000_000_000, 5)
    tl.record(10_500_000_000, 6)
    assert [(p.second, p.ops) for p in tl.points()] == [(0, 2)]
    assert Timeline(0).points() == []


def test_peek_copies_without_changing_the_recorder() -> None:
    rec = PhaseRecorder("p")
    rec.start()
    rec.record("get", 1000)
    rec.lag("notify", 2000)
    rec.count("hits", 3)
    rec.error("timeout", "slow")
    snap = rec.peek()
    assert snap.phase == "p" and snap.counters["hits"] == 3 and snap.errors["timeout"] == (1, ["slow"])
    assert int(snap.latencies["get"].counts.sum()) == 1 and snap.lags["notify"].sum_ns == 2000
    rec.record("get", 3000)  # later samples do not leak into the copy
    assert int(snap.latencies["get"].counts.sum()) == 1
    res = rec.result()
    assert res.latencies["get"].count == 2 and res.counters["hits"] == 3
