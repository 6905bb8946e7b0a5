"""The load driver: closed loop, open loop (late/dropped accounting, coordinated omission), phases, stop.

Assertions are on counts and on the ordering of latencies, never on how fast anything ran.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from sprout_harness.load.driver import LoadConfig, LoadDriver, arrival_offsets_ns, run_load
from sprout_harness.metrics.recorder import PhaseRecorder

MS = 1_000_000


def counter_ops():
    """next_op: ("op", 0), ("op", 1), ..."""
    it = itertools.count()
    return lambda: ("op", next(it))


def stalling(stall_at: int, stall_s: float, blocking: bool = False):
    """execute: instant, except operation #stall_at which stalls (awaiting, or blocking the loop)."""

    async def execute(op):
        if op[1] == stall_at:
            if blocking:
                time.sleep(stall_s)
            else:
                await asyncio.sleep(stall_s)

    return execute


async def test_closed_loop_stops_after_the_operation_count():
    done = []

    async def execute(op):
        await asyncio.sleep(0)
        done.append(op[1])

    rec = PhaseRecorder("crud")
    res = await run_load(execute, counter_ops(), LoadConfig(workers=4, operations=100), rec)
    assert len(done) == 100 and sorted(done) == list(range(100))
    assert (res.issued, res.completed, res.errors, res.stopped_by) == (100, 100, 0, "operations")
    r = rec.result()
    assert r.latencies["op"].count == 100
    assert r.extra["load_mode"] == "closed-loop" and r.extra["target_rate"] is None
    assert r.extra["achieved_rate"] > 0 and r.counters["ops_issued"] == 100
    assert r.status == "ok"


async def test_closed_loop_stops_after_the_duration():
    rec = PhaseRecorder("p")

    async def execute(op):
        await asyncio.sleep(0.002)

    res = await run_load(execute, counter_ops(), LoadConfig(workers=2, duration_s=0.3), rec)
    assert res.stopped_by == "duration" and res.completed == res.issued > 10
    assert res.measured_s >= 0.3
    assert rec.result().latencies["op"].count == res.completed


async def test_warmup_and_ramp_up_are_excluded():
    active: list[int] = []  # workers inside an op when each op starts
    running = 0

    async def execute(op):
        nonlocal running
        running += 1
        active.append(running)
        await asyncio.sleep(0.002)
        running -= 1

    rec = PhaseRecorder("p")
    d = LoadDriver(
        execute, counter_ops(), LoadConfig(workers=3, operations=40, warmup_s=0.1, ramp_up_s=0.1), rec, trace=True
    )
    res = await d.run()
    assert res.warmup_ops > 0 and res.issued == 40
    measured = [t for t in d.trace if t.measured]
    unmeasured = [t for t in d.trace if not t.measured]
    assert len(measured) == 40 and len(unmeasured) == res.warmup_ops
    assert all(t.intended_ns < d._measure_from for t in unmeasured)
    assert all(t.intended_ns >= d._measure_from for t in measured)
    assert d._measure_from - d._t0 == 200 * MS
    assert rec.result().latencies["op"].count == 40  # warmup samples never reached the recorder
    # ramp-up: workers join one by one, the second a third of the ramp (33 ms) after the
    # first, so the first worker's 2 ms ops run alone for a while (without the stagger the
    # second op would already overlap the first), and all three run together later
    alone = next(i for i, a in enumerate(active) if a > 1)
    assert alone >= 2 and max(active) == 3


async def test_open_loop_counts_a_stall_from_the_intended_start():
    """rate 200/s, one worker, op #10 takes 200 ms: the ~40 ops due meanwhile queue up.

    Open loop: each queued op's latency runs from its intended start, so it includes the
    wait behind the stall, and those ops are counted late. Closed loop hides the stall
    (coordinated omission): only the stalled op itself is slow."""
    rec = PhaseRecorder("open")
    d = LoadDriver(stalling(10, 0.2), counter_ops(), LoadConfig(workers=1, operations=80, rate=200), rec, trace=True)
    res = await d.run()
    assert (res.mode, res.issued, res.completed, res.dropped) == ("open-loop", 80, 80, 0)
    lat = {k: t.end_ns - t.intended_ns for k, t in enumerate(d.trace)}
    stall = d.trace[10]
    assert stall.end_ns - stall.start_ns >= 200 * MS
    queued = [k for k, t in enumerate(d.trace) if k > 10 and t.intended_ns < stall.end_ns]
    assert len(queued) >= 30  # ~40 due at 5 ms spacing during a 200 ms stall
    for k in queued:  # each waited for the stall to end: latency >= time from its due time to then
        assert lat[k] >= stall.end_ns - d.trace[k].intended_ns
        assert d.trace[k].start_ns >= stall.end_ns
    assert lat[11] >= 150 * MS and lat[11] > lat[20] > lat[30]
    assert res.late >= len(queued)
    r = rec.result()
    assert r.latencies["op"].count == 80 and r.latencies["op"].max >= 200 * MS
    assert r.latencies["op"].percentile(75) >= 25 * MS  # a quarter of the ops waited
    assert r.extra["load_mode"] == "open-loop" and r.extra["target_rate"] == 200
    assert r.extra["late"] == res.late and r.counters["ops_late"] == res.late
    assert res.start_delay["max"] >= 150 * MS

    closed = PhaseRecorder("closed")
    await run_load(stalling(10, 0.2), counter_ops(), LoadConfig(workers=1, operations=80), closed)
    h = closed.result().latencies["op"]
    assert h.max >= 200 * MS and h.percentile(75) < 25 * MS  # the same stall, hidden in one sample


async def test_open_loop_catches_up_after_an_event_loop_stall():
    # the stall blocks the loop itself: the scheduler wakes late and must still issue
    # every overdue operation with its own intended time (no skipped slots)
    d = LoadDriver(
        stalling(5, 0.15, blocking=True),
        counter_ops(),
        LoadConfig(workers=2, operations=60, rate=200),
        PhaseRecorder("p"),
        trace=True,
    )
    res = await d.run()
    assert res.issued == 60 and res.dropped == 0 and len(d.trace) == 60
    intended = sorted(t.intended_ns for t in d.trace)
    gaps = {b - a for a, b in zip(intended, intended[1:])}
    assert max(gaps) - min(gaps) <= 1  # the fixed 5 ms timeline, untouched by the stall
    assert res.late >= 20


async def test_open_loop_drops_beyond_max_outstanding():
    rec = PhaseRecorder("p")
    res = await run_load(
        stalling(0, 0.1), counter_ops(), LoadConfig(workers=1, operations=100, rate=1000, max_outstanding=5), rec
    )
    assert res.dropped > 50 and res.issued + res.dropped == 100 and res.completed == res.issued
    r = rec.result()
    assert r.counters["ops_dropped"] == res.dropped and r.extra["dropped"] == res.dropped
    assert r.latencies["op"].count == res.issued


def test_arrival_schedules():
    fixed = arrival_offsets_ns(100, "fixed", 1, 50)
    assert fixed[0] == 0 and all(b - a == pytest.approx(10 * MS, abs=1) for a, b in zip(fixed, fixed[1:]))
    p1 = arrival_offsets_ns(100, "poisson", 1, 5000)
    assert p1 == arrival_offsets_ns(100, "poisson", 1, 5000)
    assert p1 != arrival_offsets_ns(100, "poisson", 2, 5000)
    gaps = [b - a for a, b in zip(p1, p1[1:])]
    mean = sum(gaps) / len(gaps)
    assert mean == pytest.approx(10 * MS, rel=0.1)
    var = sum((g - mean) ** 2 for g in gaps) / len(gaps)
    assert var**0.5 == pytest.approx(mean, rel=0.15)  # exponential gaps: sd == mean
    ramp = arrival_offsets_ns(100, "fixed", 1, 200, ramp_up_s=1.0)
    rgaps = [b - a for a, b in zip(ramp, ramp[1:])]
    assert rgaps[0] == 200 * MS  # the rate starts at 5% of the target: 5 ops/s
    assert rgaps == sorted(rgaps, reverse=True) and rgaps[-1] == pytest.approx(10 * MS, abs=1)


async def test_poisson_run_issues_the_seeded_timeline():
    d = LoadDriver(
        stalling(-1, 0),
        counter_ops(),
        LoadConfig(operations=30, rate=500, arrival="poisson", seed=9),
        PhaseRecorder("p"),
        trace=True,
    )
    await d.run()
    assert [t.intended_ns - d._t0 for t in d.trace] == arrival_offsets_ns(500, "poisson", 9, 30)


@pytest.mark.parametrize("rate", [None, 1000.0])
async def test_graceful_stop(rate):
    started, finished = [], []

    async def execute(op):
        started.append(op)
        await asyncio.sleep(0.02)
        finished.append(op)

    stop = asyncio.Event()
    rec = PhaseRecorder("p")
    d = LoadDriver(execute, counter_ops(), LoadConfig(workers=3, rate=rate), rec, stop_event=stop)
    task = asyncio.create_task(d.run())
    await asyncio.sleep(0.15)
    d.stop()
    res = await task
    assert res.stopped_by == "stop" and started and len(started) == len(finished)  # running ops finished
    assert res.cancelled == 0 and res.completed == len(finished)
    if rate is not None:  # ops due but not started when stopped are reported, not hidden
        assert res.unstarted > 0 and res.issued == res.completed + res.unstarted
    assert rec.result().latencies["op"].count == res.completed


async def test_stuck_operations_are_cancelled_after_the_drain_timeout():
    async def execute(op):
        await asyncio.sleep(3600)

    stop = asyncio.Event()
    d = LoadDriver(
        execute, counter_ops(), LoadConfig(workers=2, drain_timeout_s=0.1), PhaseRecorder("p"), stop_event=stop
    )
    task = asyncio.create_task(d.run())
    await asyncio.sleep(0.05)
    stop.set()
    res = await task
    assert res.cancelled == 2 and res.completed == 0


async def test_errors_are_counted_not_timed():
    async def execute(op):
        if op[1] % 4 == 0:
            raise RuntimeError(f"boom {op[1]}")

    rec = PhaseRecorder("p")
    res = await run_load(execute, counter_ops(), LoadConfig(operations=20), rec)
    r = rec.result()
    assert res.errors == 5 and r.errors["RuntimeError"].count == 5 and r.latencies["op"].count == 15
    assert "boom" in r.errors["RuntimeError"].samples[0]


def test_config_validation():
    with pytest.raises(ValueError, match="never ends"):
        LoadConfig().validate()
    for bad, match in [
        (dict(workers=0, operations=1), "workers"),
        (dict(rate=0, operations=1), "rate"),
        (dict(arrival="burst", operations=1), "arrival"),
        (dict(duration_s=-1), "duration_s"),
        (dict(operations=1, max_outstanding=0), "max_outstanding"),
    ]:
        with pytest.raises(ValueError, match=match):
            LoadConfig(**bad).validate()
    assert LoadConfig(rate=5, operations=1).mode == "open-loop"
