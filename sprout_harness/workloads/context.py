"""What a phase gets from the runner: the nodes, the expected state, the recorder, helpers."""

from __future__ import annotations

import asyncio
import inspect
import random
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Mapping

from sprout_harness.contracts.client import Capabilities, Client, Doc, WriteAck
from sprout_harness.contracts.errors import CheckFailed, Unsupported
from sprout_harness.contracts.query import Value


class StackBug(RuntimeError):
    """The stack misbehaved in a way no caller can cause (e.g. a stray CancelledError)."""


class StallGuard:
    """Waits for notifications one after another, with one watchdog for the whole loop.

    `await guard.wait(event, done)` returns True once `done()` holds, re-checking each
    time `event` is set. A watchdog task looks every `timeout_s`: if a wait is pending and
    no wait started or finished since its last look, the guard is `stalled`: the pending
    wait returns False (unless `done()` now holds), and so does every later one. This
    replaces an `asyncio.timeout` per wait: entering one costs ~5 us on this machine, which
    would be charged to the lag being measured (the raw anchors wait without one).
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.stalled = False
        self._seq = 0  # bumped when a wait starts and when it ends
        self._event: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> StallGuard:
        self._task = asyncio.get_running_loop().create_task(self._watch())
        return self

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def __aenter__(self) -> StallGuard:
        return self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _watch(self) -> None:
        seen = self._seq
        while True:
            await asyncio.sleep(self.timeout_s)
            if self._event is not None and self._seq == seen:
                self.stalled = True
                self._event.set()
                return
            seen = self._seq

    async def wait(self, event: asyncio.Event, done: Callable[[], bool]) -> bool:
        """True once `done()` holds; it is evaluated with `event` still set after a wake-up
        (so it can tell a notification came), then `event` is cleared before waiting again."""
        if done():
            return True
        self._seq += 1
        self._event = event
        try:
            while True:
                if self.stalled:
                    return done()
                event.clear()
                await event.wait()
                if done():
                    return True
        finally:
            self._event = None
            self._seq += 1


@dataclass
class NodeRef:
    """One built node: its role, index, the durable group it belongs to, and its client."""

    role: str
    index: int
    group: int
    client: Client

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"


class Model:
    """The expected state of one durable group: collection -> id -> props.

    Every write a workload makes through a node of the group is mirrored here, so checks
    can compute expected answers with the reference evaluator.
    """

    def __init__(self) -> None:
        self.data: dict[str, dict[str, dict[str, Value]]] = {}

    def put(self, collection: str, id: str, props: Mapping[str, Value]) -> None:
        self.data.setdefault(collection, {})[id] = dict(props)

    def update(self, collection: str, id: str, props: Mapping[str, Value]) -> None:
        self.data[collection][id].update(props)

    def delete(self, collection: str, id: str) -> None:
        self.data.get(collection, {}).pop(id, None)

    def get(self, collection: str, id: str) -> dict[str, Value] | None:
        return self.data.get(collection, {}).get(id)

    def ids(self, collection: str) -> list[str]:
        return list(self.data.get(collection, {}))

    def docs(self, collection: str) -> list[Doc]:
        return [Doc(i, p) for i, p in self.data.get(collection, {}).items()]

    def size(self, collection: str) -> int:
        return len(self.data.get(collection, {}))


@dataclass
class PhaseContext:
    """Handed to `PhaseSpec.run(ctx, knobs)`.

    `targets` are the nodes of the phase's target role; `durables` / `ephemerals` all nodes;
    `models[group]` the expected state of durable group `group`; `recorder` the phase's
    PhaseRecorder; `advance(n)` moves the progress bar and `set_total(n)` says how far it goes
    (a phase that knows its amount of work sets it first, so the bar shows the time left).
    """

    title: str
    target: str
    recorder: Any
    capabilities: Capabilities
    durables: list[NodeRef]
    ephemerals: list[NodeRef]
    models: dict[int, Model]
    datasets: dict[str, int]
    seed: int
    check_timeout_s: float
    advance: Callable[[int], None] = lambda n: None
    set_total: Callable[[int | None], None] = lambda n: None
    sequences: dict[str, int] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)
    stop_requested: bool = False
    """Set (from any thread) by `Runner.request_stop`: `timed` then ends the phase as cancelled.
    Task cancellation alone cannot stop a phase whose stack calls never suspend (LevelDB)."""
    placement: dict[str, Any] = field(default_factory=lambda: {"engine": "local"})
    """`runner.placement` of the config: where a phase's worker-side clients run (`engine`
    local or ray, `address`, `workers`)."""
    stack: Any = None
    """The stack object itself, for optional hooks (sprout_harness/contracts/hooks.py); phases look
    hooks up with `hooks.require(ctx, name)`, which reports "unsupported" when one is absent."""

    @property
    def targets(self) -> list[NodeRef]:
        return self.durables if self.target == "durable" else self.ephemerals

    def durable_of(self, node: NodeRef) -> NodeRef:
        return self.durables[node.group]

    def group_nodes(self, group: int) -> list[NodeRef]:
        return [self.durables[group], *[e for e in self.ephemerals if e.group == group]]

    def model(self, node: NodeRef) -> Model:
        return self.models[node.group]

    def allocate(self, kind: str, count: int) -> int:
        """Reserve `count` new row numbers of dataset `kind`; returns the first."""
        start = self.sequences.get(kind, self.datasets.get(kind, 0))
        self.sequences[kind] = start + count
        return start

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        """Record a validation; `detail` (what differs) is kept only when it failed."""
        self.recorder.check(name, ok, "" if ok else detail)
        return ok

    def check_none(self, name: str, problems: list[str], what: str = "") -> bool:
        """A check that passes when `problems` (one line per thing that went wrong) is empty;
        on failure the detail gives how many (of `what`) and the first two."""
        label = f" {what}" if what else ""
        return self.check(name, not problems, f"{len(problems)}{label}: " + "; ".join(problems[:2]))

    def require(self, name: str, ok: bool, detail: str = "") -> None:
        """A check that also stops the phase when it fails."""
        self.recorder.check(name, ok, "" if ok else detail)
        if not ok:
            raise CheckFailed(f"{name}: {detail}")

    async def timed(self, op: str, awaitable: Awaitable[Any]) -> Any:
        """Await a stack call, recording its latency under `op` (errors counted by category)."""
        t0 = time.perf_counter_ns()
        try:
            out = await awaitable
        except (Unsupported, NotImplementedError) as exc:
            raise Unsupported(f"{op}: {exc}") from None
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise
            # Nobody cancelled us: the stack let a CancelledError escape (a stack bug); say where.
            frames = traceback.extract_tb(exc.__traceback__)[-3:]
            where = "; ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in frames)
            self.recorder.error(f"{op}:CancelledError", where)
            raise StackBug(f"{op} raised CancelledError although nothing cancelled it (at {where})") from None
        except CheckFailed:
            raise
        except Exception as exc:
            self.recorder.error(f"{op}:{type(exc).__name__}", str(exc)[:200])
            raise
        self.recorder.record(op, time.perf_counter_ns() - t0)
        if self.stop_requested:
            raise asyncio.CancelledError("stop requested")
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # The stack returned although we were cancelled (e.g. asyncio.wait_for on 3.11
            # returns a result that came in the same turn): end the phase all the same.
            raise asyncio.CancelledError("cancelled")
        return out

    def stall_guard(self) -> StallGuard:
        """`async with ctx.stall_guard() as g:` ... `await g.wait(event, done)` per sample."""
        return StallGuard(self.check_timeout_s)

    async def retry(self, probe: Callable[[], Awaitable[bool]], timeout: float | None = None) -> bool:
        """Re-run an async probe until it passes or the deadline ends (caches and replicas may lag)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.check_timeout_s)
        delay = 0.001
        while True:
            if await probe():
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def wait_for(
        self, predicate: Callable[[], bool], timeout: float | None = None, event: asyncio.Event | None = None
    ) -> bool:
        """Wait until `predicate()` holds (re-checked on `event` or every few ms); False on deadline."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.check_timeout_s)
        delay = 0.0005
        while True:
            if predicate():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if event is not None:
                event.clear()
                if predicate():
                    return True
                # asyncio.timeout, not wait_for: wait_for wraps the wait in a new task, whose
                # scheduling would be charged to the lag of the stack being measured
                try:
                    async with asyncio.timeout(min(left, 0.25)):
                        await event.wait()
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, 0.02)


def ack_ns(ack: WriteAck | None, fallback: int) -> int:
    """The commit timestamp of an ack, or `fallback` (the time the call returned)."""
    if ack is not None and isinstance(ack, WriteAck) and ack.commit_ns is not None:
        return ack.commit_ns
    return fallback


async def maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
