"""Connection fleets on a Ray cluster: `RayFleet`, a `WorkerFleet` whose workers are Ray actors.

Each actor is an async actor holding one `WorkerState` (so one `ConnectionSet`), built the way
a worker process builds it: the stack factory by import path and its `connect_address(address,
index)` hook. The fan-out and the merge of replies are `ShardedFleet`'s, shared with worker
processes. Actors are spread over the cluster's nodes (SPREAD scheduling strategy); the fleet
connects to an existing cluster as a driver (`ray.init(address=...)`) and never starts one.

Clocks: an actor on another host has another CLOCK_MONOTONIC. At start the fleet asks each
actor for its host's boot id and estimates its clock offset against this process with ping
exchanges (minimum-RTT method: driver t0, actor `perf_counter_ns()`, driver t1; offset =
t_actor - (t0 + t1) / 2 from the exchange with the smallest t1 - t0, error bound (t1 - t0) / 2).
An actor with this process's boot id shares its clock: its offset is exactly 0, and the
estimate must then lie within its bound (checked: a failure means broken timing). Other actors
are sent their estimate and subtract it from every lag they record (`receipt - commit_ns -
offset`), which assumes the store stamps `commit_ns` on the driver's host (the harness runs it
there). `clocks()` gives the per-actor figures for a report.

`ray` is an optional extra, imported only here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any

from sprout_harness.contracts import ConfigError
from sprout_harness.load.fleet import ShardedFleet, WorkerError, WorkerState, boot_id, checked_reply, init_message

MISSING_RAY = "ray needs the 'ray' extra: pip install 'sprout-harness[ray]'"
PINGS = 20


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(MISSING_RAY, "runner.placement.engine") from None
    return ray


@dataclass(frozen=True)
class ActorClock:
    """One actor's clock against the driver's: `offset_ns` is what its lags are corrected by."""

    actor: int
    node: str
    boot_id: str
    same_host: bool
    offset_ns: int  # applied: exactly 0 on the driver's host, else the estimate
    estimate_ns: int
    bound_ns: int
    rtt_ns: int


def min_rtt_offset(samples: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    """(offset, bound, rtt) from `(t0, t_actor, t1)` exchanges: the one with the smallest rtt."""
    t0, ta, t1 = min(samples, key=lambda s: s[2] - s[0])
    return ta - (t0 + t1) // 2, (t1 - t0 + 1) // 2, t1 - t0


class _FleetActor:
    """The actor body (wrapped with `ray.remote` at start, so importing this module needs no ray)."""

    def __init__(self) -> None:
        self.state = WorkerState()

    async def call(self, msg: dict[str, Any]) -> dict[str, Any]:
        return await self.state.handle(msg)

    async def clock(self) -> int:
        return time.perf_counter_ns()

    async def where(self) -> dict[str, Any]:
        import ray

        util: Any = ray.util  # untyped
        return {
            "node": util.get_node_ip_address(),
            "actor_id": ray.get_runtime_context().get_actor_id(),
            "pid": os.getpid(),
            "boot_id": boot_id(),
        }


class _RayWorker:
    """A worker handle over one actor: every call bounded by the timeout, failures as WorkerError."""

    def __init__(self, ray: Any, actor: Any, index: int) -> None:
        self.ray = ray
        self.actor = actor
        self.index = index
        self.node = "?"
        self.actor_id = "?"
        self.pid = 0
        self.boot_id = ""

    @property
    def name(self) -> str:
        return f"ray actor {self.index} ({self.actor_id[:12]}) on node {self.node}"

    async def _await(self, ref: Any, what: str, timeout: float) -> Any:
        try:
            async with asyncio.timeout(timeout):
                return await ref
        except TimeoutError:
            raise WorkerError(f"{self.name}: no reply to {what!r} within {timeout:g} s") from None
        except self.ray.exceptions.RayActorError as exc:
            raise WorkerError(f"{self.name} died during {what!r}: {_first_line(exc)}") from None
        except self.ray.exceptions.RayError as exc:
            raise WorkerError(f"{self.name}: {what}: {_first_line(exc)}") from None

    async def call(self, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
        reply: dict[str, Any] = await self._await(self.actor.call.remote(msg), msg["op"], timeout)
        return checked_reply(reply, self.name, msg["op"])

    async def locate(self, timeout: float) -> None:
        where = await self._await(self.actor.where.remote(), "start", timeout)
        self.node, self.actor_id, self.pid, self.boot_id = (
            where["node"],
            where["actor_id"],
            where["pid"],
            where["boot_id"],
        )

    async def ping(self, timeout: float) -> tuple[int, int, int]:
        t0 = time.perf_counter_ns()
        ta = await self._await(self.actor.clock.remote(), "clock", timeout)
        return t0, int(ta), time.perf_counter_ns()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)[:300]


def _check_reachable(address: str) -> None:
    """Fail fast, in one line, when nothing listens at a `host:port` address (ray.init would
    retry for a long time first)."""
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and the like: ray.init resolves them
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            pass
    except OSError as exc:
        raise WorkerError(f"no Ray cluster reachable at {address}: {exc.strerror or exc}") from None


class RayFleet(ShardedFleet):
    """Connections spread over `actors` Ray actors on the cluster at `address` (see the module
    docstring); the same interface and reply shapes as `WorkerFleet`."""

    def __init__(
        self,
        address: str,
        actors: int,
        stack_path: str,
        server_address: dict[str, Any],
        counter_field: str,
        timeout_s: float = 300.0,
        *,
        num_cpus: float = 1.0,
    ) -> None:
        self.ray = _ray()  # a missing extra fails at construction, before any phase runs
        super().__init__(actors, counter_field, timeout_s)
        self.ray_address = address
        self.stack_path = stack_path
        self.server_address = server_address
        self.num_cpus = num_cpus  # a CPU per actor by default: SPREAD then fills every node
        self.actors: list[_RayWorker] = []
        self._clocks: list[ActorClock] = []
        self._owns_ray = False

    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():  # already a driver: of this cluster is fine (its owner shuts it down)
            have = str(ray.get_runtime_context().gcs_address)
            if not self.ray_address.startswith("ray://") and self.ray_address not in ("auto", have):
                raise WorkerError(
                    f"cannot connect to the Ray cluster at {self.ray_address}: this process is "
                    f"already a driver of the cluster at {have}"
                )
            return
        _check_reachable(self.ray_address)
        try:
            # the harness console owns stdout: actors' output stays in the cluster's logs
            ray.init(address=self.ray_address, log_to_driver=False)
        except Exception as exc:
            raise WorkerError(f"cannot connect to the Ray cluster at {self.ray_address}: {_first_line(exc)}") from None
        self._owns_ray = True

    async def start(self) -> None:
        self._connect()
        remote = self.ray.remote(num_cpus=self.num_cpus, max_restarts=0)(_FleetActor)
        self.actors = [
            _RayWorker(self.ray, remote.options(scheduling_strategy="SPREAD").remote(), i)
            for i in range(self.processes)
        ]
        await asyncio.gather(*(a.locate(self.timeout_s) for a in self.actors))
        await asyncio.gather(
            *(
                a.call(init_message(self.stack_path, self.server_address, self.counter_field, a.index), self.timeout_s)
                for a in self.actors
            )
        )
        self.workers = list(self.actors)
        here = boot_id()
        for a in self.actors:  # one actor at a time: concurrent pings would widen each other's RTT
            samples = [await a.ping(self.timeout_s) for _ in range(PINGS)]
            estimate, bound, rtt = min_rtt_offset(samples)
            same = bool(here) and a.boot_id == here
            if same and abs(estimate) > bound:
                raise WorkerError(
                    f"{a.name}: clock check failed: same host as the driver, yet the offset "
                    f"estimate {estimate} ns exceeds its bound ±{bound} ns"
                )
            offset = 0 if same else estimate
            if offset:
                await a.call({"op": "offset", "offset_ns": offset}, self.timeout_s)
            self._clocks.append(ActorClock(a.index, a.node, a.boot_id, same, offset, estimate, bound, rtt))

    def clocks(self) -> list[dict[str, Any]]:
        """Per actor: node address, boot_id, applied offset, estimate, bound, RTT (ns)."""
        return [asdict(c) for c in self._clocks]

    async def close(self) -> None:
        for a in self.actors:
            with contextlib.suppress(Exception):
                await a.call({"op": "close"}, min(self.timeout_s, 30.0))
            with contextlib.suppress(Exception):
                self.ray.kill(a.actor, no_restart=True)
        self.actors, self.workers = [], []
        if self._owns_ray:
            self.ray.shutdown()
            self._owns_ray = False
