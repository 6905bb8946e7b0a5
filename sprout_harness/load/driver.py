"""The load driver: W async workers running operations closed-loop or open-loop at a rate.

Closed loop: each worker issues its next operation when the previous one completes;
latency is the operation's own duration. When the system stalls, the workers stall
with it and issue fewer requests, so the stall shows up in one sample only
(coordinated omission): closed-loop figures describe service time, not what clients
arriving at a steady rate would see.

Open loop (`rate` set): a scheduler puts operations on a fixed or Poisson (seeded)
timeline regardless of completions; W workers take them in order. Latency is measured
from the operation's *intended* start time, so time spent queued behind a stall is in
the figures. An operation that starts more than `late_tolerance_s` after its intended
time is counted `late`; one that falls due while `max_outstanding` operations are
already queued or running is not issued but counted `dropped`. The scheduler never
skips: after an event-loop stall it issues every overdue operation at once, each
keeping its intended time.

Phases: workers start over `ramp_up_s` (closed loop: staggered starts; open loop: the
rate rises linearly), then `warmup_s` runs unmeasured; the measured window follows
and ends after `duration_s` or `operations` measured operations, or when `stop()` is
called (graceful: no new operations, running ones finish within `drain_timeout_s`).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Awaitable, Callable, Literal

from sprout_harness.metrics.histogram import Histogram
from sprout_harness.metrics.recorder import PhaseRecorder

Execute = Callable[[Any], Awaitable[Any]]
NextOp = Callable[[], Any]
Arrival = Literal["fixed", "poisson"]


@dataclass(frozen=True)
class LoadConfig:
    """How to drive load; `rate` (ops/s, all workers together) switches to open loop."""

    workers: int = 1
    duration_s: float | None = None
    operations: int | None = None
    warmup_s: float = 0.0
    ramp_up_s: float = 0.0
    rate: float | None = None
    arrival: Arrival = "fixed"
    seed: int = 0
    late_tolerance_s: float = 0.001
    max_outstanding: int = 10_000
    drain_timeout_s: float = 30.0

    @property
    def mode(self) -> str:
        return "open-loop" if self.rate is not None else "closed-loop"

    def validate(self, has_stop_event: bool = False) -> None:
        def bad(msg: str) -> None:
            raise ValueError(f"load config: {msg}")

        if self.workers < 1:
            bad(f"workers must be >= 1, got {self.workers}")
        if self.duration_s is None and self.operations is None and not has_stop_event:
            bad("give duration_s or operations (or a stop event), else the run never ends")
        if self.duration_s is not None and not self.duration_s > 0:
            bad(f"duration_s must be > 0, got {self.duration_s}")
        if self.operations is not None and self.operations < 1:
            bad(f"operations must be >= 1, got {self.operations}")
        for name in ("warmup_s", "ramp_up_s", "late_tolerance_s", "drain_timeout_s"):
            if getattr(self, name) < 0:
                bad(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            bad(f"rate must be a positive number of ops/s, got {self.rate}")
        if self.arrival not in ("fixed", "poisson"):
            bad(f"arrival must be 'fixed' or 'poisson', got {self.arrival!r}")
        if self.max_outstanding < 1:
            bad(f"max_outstanding must be >= 1, got {self.max_outstanding}")


def arrival_offsets_ns(rate: float, arrival: Arrival, seed: int, n: int, ramp_up_s: float = 0.0) -> list[int]:
    """The first `n` intended start offsets (ns from the run's start) of an open-loop schedule."""
    sched = _Schedule(rate, arrival, seed, ramp_up_s)
    return [sched.next_offset_ns() for _ in range(n)]


class _Schedule:
    """Intended start offsets: fixed spacing 1/rate, or exponential gaps (a Poisson process).

    During ramp-up the instantaneous rate is rate * max(t / ramp_up, 5%)."""

    def __init__(self, rate: float, arrival: Arrival, seed: int, ramp_up_s: float) -> None:
        self.rate = rate
        self.poisson = arrival == "poisson"
        self.rng = random.Random(f"{seed}/arrivals")
        self.ramp_ns = int(ramp_up_s * 1e9)
        self.t_ns = 0.0
        self.first = True

    def next_offset_ns(self) -> int:
        if self.first:  # the first operation is due at once
            self.first = False
            return 0
        rate = self.rate
        if self.ramp_ns and self.t_ns < self.ramp_ns:
            rate *= max(self.t_ns / self.ramp_ns, 0.05)
        gap_s = self.rng.expovariate(rate) if self.poisson else 1.0 / rate
        self.t_ns += gap_s * 1e9
        return int(self.t_ns)


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One operation as the driver saw it (kept when `trace=True`): ns on perf_counter."""

    op: str
    intended_ns: int
    start_ns: int
    end_ns: int
    measured: bool
    ok: bool


@dataclass
class LoadResult:
    """What the driver did; the same facts go into the recorder's counters and `extra`."""

    mode: str
    workers: int
    target_rate: float | None
    achieved_rate: float
    arrival: str | None
    issued: int = 0  # measured operations started
    completed: int = 0  # measured operations finished (ok or error)
    errors: int = 0
    late: int = 0
    dropped: int = 0
    unstarted: int = 0  # scheduled but still queued when the run stopped
    cancelled: int = 0  # still running after drain_timeout_s
    warmup_ops: int = 0
    measured_s: float = 0.0
    stopped_by: str = ""
    late_tolerance_ms: float = 0.0
    start_delay: dict[str, float] = field(default_factory=dict)
    service_time: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_op_name(op: Any) -> str:
    """`op.op` (YCSB/CRUD operations), `op[0]` for tuples, else the type name."""
    name = getattr(op, "op", None)
    if isinstance(name, str):
        return name
    if isinstance(op, tuple) and op and isinstance(op[0], str):
        return op[0]
    if isinstance(op, str):
        return op
    return type(op).__name__


class LoadDriver:
    """Runs `execute(op)` for operations from `next_op()` under `config`, recording into `recorder`."""

    def __init__(
        self,
        execute: Execute,
        next_op: NextOp,
        config: LoadConfig,
        recorder: PhaseRecorder,
        *,
        op_name: Callable[[Any], str] = default_op_name,
        stop_event: asyncio.Event | None = None,
        trace: bool = False,
        clock: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        config.validate(has_stop_event=stop_event is not None)
        self.execute = execute
        self.next_op = next_op
        self.config = config
        self.recorder = recorder
        self.op_name = op_name
        self.stop_event = stop_event if stop_event is not None else asyncio.Event()
        self.trace: list[TraceEntry] | None = [] if trace else None
        self._clock = clock
        self._t0 = 0
        self._measure_from = 0
        self._measure_until: int | None = None
        self._stopped_by = ""
        self._start_delay = Histogram()
        self._service = Histogram()
        self._res = LoadResult(
            config.mode,
            config.workers,
            config.rate,
            0.0,
            config.arrival if config.rate is not None else None,
            late_tolerance_ms=config.late_tolerance_s * 1e3,
        )
        self._running = 0
        self._measure_started = False

    def stop(self) -> None:
        """Graceful stop: issue nothing new, let running operations finish."""
        if not self._stopped_by:
            self._stopped_by = "stop"
        self.stop_event.set()

    # --- shared bookkeeping ---------------------------------------------------------

    def _begin_measuring(self) -> None:
        if not self._measure_started:
            self._measure_started = True
            self.recorder.start()

    def _in_window(self, t_ns: int) -> bool:
        return t_ns >= self._measure_from and (self._measure_until is None or t_ns < self._measure_until)

    async def _run_one(self, op: Any, intended_ns: int, measured: bool) -> None:
        name = self.op_name(op)
        start = self._clock()
        self._running += 1
        ok = True
        try:
            await self.execute(op)
        except Exception as exc:
            ok = False
            if measured:
                self._res.errors += 1
                self.recorder.error(type(exc).__name__, f"{name}: {exc}")
        finally:
            self._running -= 1
        end = self._clock()
        if measured:
            self._begin_measuring()
            self._res.completed += 1
            if ok:
                self.recorder.record(name, end - intended_ns)
                self._service.record(end - start)
        if self.trace is not None:
            self.trace.append(TraceEntry(name, intended_ns, start, end, measured, ok))

    # --- closed loop ------------------------------------------------------------------

    def _claim_closed(self, now: int) -> bool | None:
        """None: stop; else whether the next operation is measured (and count it)."""
        if self.stop_event.is_set():
            return None
        if now < self._measure_from:
            self._res.warmup_ops += 1
            return False
        self._begin_measuring()
        if self._measure_until is not None and now >= self._measure_until:
            self._stopped_by = self._stopped_by or "duration"
            return None
        ops = self.config.operations
        if ops is not None and self._res.issued >= ops:
            self._stopped_by = self._stopped_by or "operations"
            return None
        self._res.issued += 1
        return True

    async def _closed_worker(self, index: int) -> None:
        cfg = self.config
        if cfg.ramp_up_s and cfg.workers > 1:
            delay = cfg.ramp_up_s * index / cfg.workers
            try:
                async with asyncio.timeout(delay):
                    await self.stop_event.wait()
                return
            except TimeoutError:
                pass
        while True:
            # Yield between operations: with a stack whose calls never suspend, W workers
            # would otherwise collapse into one running its whole share back to back.
            await asyncio.sleep(0)
            measured = self._claim_closed(self._clock())
            if measured is None:
                return
            op = self.next_op()
            # Closed loop: latency is service time, from the moment the operation is issued
            # (generating it is the driver's cost, not the stack's).
            await self._run_one(op, self._clock(), measured)

    # --- open loop --------------------------------------------------------------------

    async def _open_scheduler(self, queue: asyncio.Queue[tuple[Any, int, bool] | None]) -> None:
        cfg = self.config
        assert cfg.rate is not None
        sched = _Schedule(cfg.rate, cfg.arrival, cfg.seed, cfg.ramp_up_s)
        stop_wait = asyncio.ensure_future(self.stop_event.wait())
        try:
            while True:
                due = self._t0 + sched.next_offset_ns()
                now = self._clock()
                if due > now:
                    if self._measure_until is not None and due >= self._measure_until:
                        self._stopped_by = self._stopped_by or "duration"
                        return
                    await asyncio.wait([stop_wait], timeout=(due - now) / 1e9)
                if self.stop_event.is_set():
                    return
                measured = self._in_window(due)
                if self._measure_until is not None and due >= self._measure_until:
                    self._stopped_by = self._stopped_by or "duration"
                    return
                if measured:
                    if cfg.operations is not None and self._res.issued + self._res.dropped >= cfg.operations:
                        self._stopped_by = self._stopped_by or "operations"
                        return
                    self._begin_measuring()
                op = self.next_op()  # drawn even when dropped: slot k always gets the stream's op k
                if queue.qsize() + self._running >= cfg.max_outstanding:
                    if measured:
                        self._res.dropped += 1
                    continue
                if measured:
                    self._res.issued += 1
                else:
                    self._res.warmup_ops += 1
                queue.put_nowait((op, due, measured))
        finally:
            stop_wait.cancel()

    async def _open_worker(self, queue: asyncio.Queue[tuple[Any, int, bool] | None]) -> None:
        tol = int(self.config.late_tolerance_s * 1e9)
        while True:
            item = await queue.get()
            if item is None:
                return
            if self.stop_event.is_set():  # graceful stop: leave queued operations unstarted
                if item[2]:
                    self._res.unstarted += 1
                continue
            op, due, measured = item
            delay = self._clock() - due
            if measured:
                self._start_delay.record(max(delay, 0))
                if delay > tol:
                    self._res.late += 1
            await self._run_one(op, due, measured)

    # --- run --------------------------------------------------------------------------

    async def run(self) -> LoadResult:
        """Drive the load until a stop condition; returns the figures (also in the recorder)."""
        cfg = self.config
        self._t0 = self._clock()
        self._measure_from = self._t0 + int((cfg.ramp_up_s + cfg.warmup_s) * 1e9)
        if cfg.duration_s is not None:
            self._measure_until = self._measure_from + int(cfg.duration_s * 1e9)
        if self._measure_from == self._t0:
            self._begin_measuring()
        if cfg.rate is None:
            workers = [asyncio.ensure_future(self._closed_worker(i)) for i in range(cfg.workers)]
            scheduler = None
            queue: asyncio.Queue[tuple[Any, int, bool] | None] | None = None
        else:
            queue = asyncio.Queue()
            workers = [asyncio.ensure_future(self._open_worker(queue)) for _ in range(cfg.workers)]
            scheduler = asyncio.ensure_future(self._open_scheduler(queue))
        try:
            if scheduler is not None:
                stop_wait = asyncio.ensure_future(self.stop_event.wait())
                await asyncio.wait([scheduler, stop_wait], return_when=asyncio.FIRST_COMPLETED)
                stop_wait.cancel()
                if self.stop_event.is_set():
                    self._stopped_by = self._stopped_by or "stop"
                await scheduler
                assert queue is not None
                for _ in workers:
                    queue.put_nowait(None)
            else:
                await self._wait_closed(workers)
            _, pending = await asyncio.wait(workers, timeout=cfg.drain_timeout_s)
            for w in pending:
                w.cancel()
            self._res.cancelled += self._running
            await asyncio.gather(*workers, return_exceptions=True)
            while queue is not None and not queue.empty():  # left behind by cancelled workers
                item = queue.get_nowait()
                if item is not None and item[2]:
                    self._res.unstarted += 1
        except asyncio.CancelledError:
            for w in [*workers, *([scheduler] if scheduler else [])]:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self.recorder.mark_cancelled("load driver cancelled")
            raise
        finally:
            self._finish()
        return self._res

    async def _wait_closed(self, workers: list[asyncio.Future[None]]) -> None:
        """Closed loop: workers end by themselves (count, duration) or after stop()."""
        stop_wait = asyncio.ensure_future(self.stop_event.wait())
        try:
            await asyncio.wait([asyncio.gather(*workers), stop_wait], return_when=asyncio.FIRST_COMPLETED)
            if self.stop_event.is_set():
                self._stopped_by = self._stopped_by or "stop"
        finally:
            stop_wait.cancel()

    def _finish(self) -> None:
        self._begin_measuring()
        self.recorder.stop()
        r, rec = self._res, self.recorder
        r.measured_s = rec.elapsed_ns / 1e9
        r.achieved_rate = r.completed / r.measured_s if r.measured_s > 0 else 0.0
        r.stopped_by = self._stopped_by or "done"
        if self._start_delay.count:
            r.start_delay = self._start_delay.summary()
        if self._service.count:
            r.service_time = self._service.summary()
        rec.count("ops_issued", r.issued)
        rec.count("ops_late", r.late)
        rec.count("ops_dropped", r.dropped)
        rec.count("ops_unstarted", r.unstarted)
        rec.count("ops_warmup", r.warmup_ops)
        rec.extra["load_mode"] = r.mode
        rec.extra["target_rate"] = r.target_rate
        rec.extra["achieved_rate"] = r.achieved_rate
        rec.extra["late"] = r.late
        rec.extra["dropped"] = r.dropped
        rec.extra["load"] = r.to_dict()


async def run_load(
    execute: Execute, next_op: NextOp, config: LoadConfig, recorder: PhaseRecorder, **kwargs: Any
) -> LoadResult:
    """`LoadDriver(...).run()` in one call."""
    return await LoadDriver(execute, next_op, config, recorder, **kwargs).run()


__all__ = [
    "Arrival",
    "LoadConfig",
    "LoadDriver",
    "LoadResult",
    "TraceEntry",
    "arrival_offsets_ns",
    "default_op_name",
    "run_load",
]
