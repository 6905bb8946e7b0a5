"""Many client connections, each holding live queries: in this process or in worker processes.

A `ConnectionSet` opens connections with a stack hook, subscribes live queries on them and
records, per subscription, the values of one counter field seen in its notifications
(so a scenario can check which commits reached which subscription) and one lag histogram
(receipt time - the commit's `commit_ns`). `LocalFleet` runs one in this process;
`WorkerFleet` spreads connections over worker processes (`python -m
sprout_harness.load.fleet`), each a small client runner that rebuilds the stack's factory
by import path (the plugin mechanism) and calls its `connect_address(address, index)`
hook — it never imports a stack package by name. Workers talk JSON lines over stdin/stdout.
A `WorkerState` answers that protocol (`handle(msg) -> reply`); `ShardedFleet` fans calls out
to worker handles and merges their replies, for worker processes here and for Ray actors in
`sprout_harness.load.ray_fleet`.

Lag in worker processes uses the same clock: `time.perf_counter_ns` is CLOCK_MONOTONIC on
Linux, one clock for every process of the machine. A worker on another host is told its
clock offset (`op: offset`) and subtracts it from every lag it records.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import os
import sys
import time
from typing import Any, Awaitable, Callable, Protocol

from sprout_harness import plugins
from sprout_harness.contracts.client import Client, Notification
from sprout_harness.contracts.errors import Unsupported
from sprout_harness.contracts.query import AllOf, AnyOf, Cond, InList, Not, Order, Pred, QuerySpec
from sprout_harness.metrics.histogram import Histogram

OpenClient = Callable[[int], Awaitable[Client]]

#: characters of job params per call when they are sent in parts (`ShardedFleet.job`)
JOB_PART_CHARS = 60_000


def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; 0 where unknown)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def measured_rss_bytes() -> int:
    gc.collect()
    return current_rss_bytes()


def boot_id() -> str:
    """This host's boot id: processes with the same one share CLOCK_MONOTONIC ("" where unknown)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


# --- QuerySpec <-> JSON (for worker processes) ------------------------------------------------


def pred_to_json(p: Pred | None) -> Any:
    if p is None:
        return None
    if isinstance(p, Cond):
        return ["cond", p.field, p.op, p.value]
    if isinstance(p, InList):
        return ["in", p.field, list(p.values), p.negated]
    if isinstance(p, (AllOf, AnyOf)):
        return ["and" if isinstance(p, AllOf) else "or", [pred_to_json(i) for i in p.items]]
    if isinstance(p, Not):
        return ["not", pred_to_json(p.item)]
    raise TypeError(f"not a predicate: {p!r}")


def pred_from_json(d: Any) -> Pred | None:
    if d is None:
        return None
    tag = d[0]
    if tag == "cond":
        return Cond(d[1], d[2], d[3])
    if tag == "in":
        return InList(d[1], tuple(d[2]), bool(d[3]))
    if tag in ("and", "or"):
        items = tuple(pred_from_json(i) for i in d[1])
        return AllOf(items) if tag == "and" else AnyOf(items)  # type: ignore[arg-type]
    if tag == "not":
        return Not(pred_from_json(d[1]))  # type: ignore[arg-type]
    raise ValueError(f"unknown predicate tag {tag!r}")


def query_to_json(q: QuerySpec) -> dict[str, Any]:
    return {
        "where": pred_to_json(q.where),
        "order_by": [[o.field, o.descending] for o in q.order_by],
        "limit": q.limit,
        "kind": q.kind,
    }


def query_from_json(d: dict[str, Any]) -> QuerySpec:
    return QuerySpec(
        pred_from_json(d["where"]), tuple(Order(f, bool(desc)) for f, desc in d["order_by"]), d["limit"], d["kind"]
    )


# --- one process's connections ------------------------------------------------------------------


class ConnectionSet:
    """Connections and their subscriptions in one process (see the module docstring)."""

    def __init__(self, open_client: OpenClient, counter_field: str, first_index: int = 0) -> None:
        self.open_client = open_client
        self.counter_field = counter_field
        self.first_index = first_index
        # this host's clock minus the committing host's: subtracted from every lag (0 on one host)
        self.clock_offset_ns = 0
        self.clients: list[Client] = []
        self.subs: list[Any] = []
        self.seen: list[list[int]] = []
        self.receipts: list[tuple[int, int]] = []  # (counter value, receipt ns) since the last collect
        self.lag = Histogram()
        self.notifications = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None

    async def open(self, n: int, concurrency: int) -> dict[str, Any]:
        """Open `n` more connections, `concurrency` at a time; `connect` = per-connection open time."""
        hist, errors = Histogram(), []
        sem = asyncio.Semaphore(max(1, concurrency))
        opened: list[tuple[int, Client]] = []
        unsupported: list[Unsupported] = []

        async def one(i: int) -> None:
            async with sem:
                t0 = time.perf_counter_ns()
                try:
                    c = await self.open_client(self.first_index + i)
                except Unsupported as exc:  # the stack cannot: not a failed connect
                    unsupported.append(exc)
                    return
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    return
                hist.record(time.perf_counter_ns() - t0)
                opened.append((i, c))

        base = len(self.clients)
        t0 = time.perf_counter_ns()
        await asyncio.gather(*(one(base + i) for i in range(n)))
        wall = time.perf_counter_ns() - t0
        self.clients.extend(c for _, c in sorted(opened, key=lambda x: x[0]))
        if unsupported:
            raise unsupported[0]  # what was opened is closed with the set
        return {
            "connect": hist,
            "failures": len(errors),
            "errors": errors[:5],
            "wall_ns": wall,
            "open": len(self.clients),
        }

    def _callback(self, s: int) -> Callable[[Notification], None]:
        field = self.counter_field
        seen = self.seen[s]

        def on_notify(n: Notification) -> None:
            now = time.perf_counter_ns()
            if n.kind != "change":
                return
            if n.commit_ns is not None:
                self.lag.record(max(0, now - n.commit_ns - self.clock_offset_ns))
            self.notifications += 1
            if self.first_ns is None:
                self.first_ns = now
            self.last_ns = now
            for d in (*n.added, *n.updated):
                v = d.props.get(field)
                if type(v) is int:
                    seen.append(v)
                    self.receipts.append((v, now))

        return on_notify

    async def subscribe(self, specs: list[tuple[int, str, QuerySpec]], concurrency: int) -> dict[str, Any]:
        """Subscribe `(connection, collection, query)` each; `initial` = time to initial result."""
        hist, errors = Histogram(), []
        results: list[list[str] | None] = [None] * len(specs)
        sem = asyncio.Semaphore(max(1, concurrency))
        base = len(self.subs)
        self.subs.extend([None] * len(specs))
        self.seen.extend([] for _ in specs)

        unsupported: list[Unsupported] = []

        async def one(k: int, conn: int, coll: str, q: QuerySpec) -> None:
            async with sem:
                t0 = time.perf_counter_ns()
                try:
                    sub = await self.clients[conn].subscribe(coll, q, self._callback(base + k))
                except Unsupported as exc:
                    unsupported.append(exc)
                    return
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    return
                hist.record(time.perf_counter_ns() - t0)
                self.subs[base + k] = sub
                results[k] = [d.id for d in sub.results]

        await asyncio.gather(*(one(k, *spec) for k, spec in enumerate(specs)))
        if unsupported:
            raise unsupported[0]
        return {"initial": hist, "failures": len(errors), "errors": errors[:5], "results": results}

    def collect(self, sent: dict[int, int] | None = None) -> dict[str, Any]:
        """Lag and counts since the last collect (then reset); `seen` per subscription (kept).
        `sent` maps counter values to when the writer sent them (the driver's clock): then
        `lag_send` holds receipt - send for each value received since the last collect, on
        the load generator's own clocks (this host's receipt moved by `clock_offset_ns`)."""
        lag_send = Histogram()
        if sent:
            for v, at in self.receipts:
                t = sent.get(v)
                if t is not None:
                    lag_send.record(max(0, at - self.clock_offset_ns - t))
        out = {
            "lag": self.lag,
            "lag_send": lag_send,
            "notifications": self.notifications,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "seen": [list(s) for s in self.seen],
        }
        self.lag, self.notifications, self.first_ns, self.last_ns = Histogram(), 0, None, None
        self.receipts = []
        return out

    def counts(self) -> list[int]:
        """Values seen so far per subscription (cheap progress probe)."""
        return [len(s) for s in self.seen]

    async def close(self) -> None:
        for sub in self.subs:
            if sub is not None:
                try:
                    await sub.close()
                except Exception:
                    pass
        await close_clients(self.clients)
        self.subs, self.clients = [], []


# --- fleets: where the connection sets run --------------------------------------------------------


class LocalFleet:
    """All connections in this process."""

    processes = 0

    def __init__(self, open_client: OpenClient, counter_field: str) -> None:
        self.set = ConnectionSet(open_client, counter_field)
        self.conn_count = 0

    async def start(self) -> None:
        pass

    async def open(self, n: int, concurrency: int) -> dict[str, Any]:
        out = await self.set.open(n, concurrency)
        self.conn_count = out["open"]
        return out

    async def subscribe(self, specs: list[tuple[int, str, QuerySpec]], concurrency: int) -> dict[str, Any]:
        return await self.set.subscribe(specs, concurrency)

    async def counts(self) -> list[int]:
        return self.set.counts()

    async def collect(self, sent: dict[int, int] | None = None) -> dict[str, Any]:
        return self.set.collect(sent)

    async def client_rss(self) -> int:
        return 0

    async def close(self) -> None:
        await self.set.close()


class WorkerError(RuntimeError):
    pass


async def close_clients(clients: list[Client]) -> None:
    """Close every client that has a `close` (an optional hook), whatever one of them raises:
    a worker tearing down must reach all of them."""
    for c in clients:
        fn = getattr(c, "close", None)
        if fn is not None:
            try:
                await fn()
            except Exception:
                pass


def checked_reply(reply: dict[str, Any], worker: str, op: str) -> dict[str, Any]:
    """A worker's reply, or the Unsupported / WorkerError it carries."""
    if "unsupported" in reply:
        raise Unsupported(reply["unsupported"])
    if "error" in reply:
        raise WorkerError(f"{worker}: {op}: {reply['error']}")
    return reply


class WorkerHandle(Protocol):
    """One worker of a `ShardedFleet`: answers the worker protocol (see `WorkerState`)."""

    index: int

    async def call(self, msg: dict[str, Any], timeout: float) -> dict[str, Any]: ...


class ShardedFleet:
    """Connections spread round-robin over worker handles; merges their replies.

    Subclasses start the workers (`self.workers`) and close them; everything between is here,
    so every kind of worker is merged the same way."""

    def __init__(self, workers: int, counter_field: str, timeout_s: float) -> None:
        self.processes = workers
        self.counter_field = counter_field
        self.timeout_s = timeout_s
        self.workers: list[WorkerHandle] = []
        self.conn_owner: list[tuple[int, int]] = []  # global connection -> (worker, local index)
        self.sub_owner: list[tuple[int, int]] = []
        self._per_worker_conns = [0] * workers
        self._per_worker_subs = [0] * workers

    async def _all(self, msg: dict[str, Any]) -> list[dict[str, Any]]:
        return await asyncio.gather(*(w.call(msg, self.timeout_s) for w in self.workers))

    async def open(self, n: int, concurrency: int) -> dict[str, Any]:
        share = [n // self.processes + (1 if i < n % self.processes else 0) for i in range(self.processes)]
        per = max(1, concurrency // self.processes)
        replies = await asyncio.gather(
            *(w.call({"op": "open", "n": k, "concurrency": per}, self.timeout_s) for w, k in zip(self.workers, share))
        )
        hist, failures, errors, wall = Histogram(), 0, [], 0
        for i, r in enumerate(replies):
            hist.merge(Histogram.from_dict(r["connect"]))
            failures += r["failures"]
            errors += r["errors"]
            wall = max(wall, r["wall_ns"])
            for local in range(self._per_worker_conns[i], r["open"]):
                self.conn_owner.append((i, local))
            self._per_worker_conns[i] = r["open"]
        return {
            "connect": hist,
            "failures": failures,
            "errors": errors[:5],
            "wall_ns": wall,
            "open": len(self.conn_owner),
        }

    async def subscribe(self, specs: list[tuple[int, str, QuerySpec]], concurrency: int) -> dict[str, Any]:
        per_worker: list[list[tuple[int, list[Any]]]] = [[] for _ in self.workers]
        for k, (conn, coll, q) in enumerate(specs):
            w, local = self.conn_owner[conn]
            per_worker[w].append((k, [local, coll, query_to_json(q)]))
        per = max(1, concurrency // self.processes)
        replies = await asyncio.gather(
            *(
                w.call({"op": "subscribe", "specs": [s for _, s in items], "concurrency": per}, self.timeout_s)
                for w, items in zip(self.workers, per_worker)
            )
        )
        hist, failures, errors = Histogram(), 0, []
        results: list[Any] = [None] * len(specs)
        order: list[tuple[int, int]] = [(-1, -1)] * len(specs)
        for wi, (items, r) in enumerate(zip(per_worker, replies)):
            hist.merge(Histogram.from_dict(r["initial"]))
            failures += r["failures"]
            errors += r["errors"]
            for j, (k, _) in enumerate(items):
                results[k] = r["results"][j]
                order[k] = (wi, self._per_worker_subs[wi] + j)
            self._per_worker_subs[wi] += len(items)
        self.sub_owner.extend(order)
        return {"initial": hist, "failures": failures, "errors": errors[:5], "results": results}

    async def counts(self) -> list[int]:
        replies = await self._all({"op": "counts"})
        return [replies[w]["counts"][local] for w, local in self.sub_owner]

    async def collect(self, sent: dict[int, int] | None = None) -> dict[str, Any]:
        replies = await self._all({"op": "collect", "sent": {str(v): t for v, t in (sent or {}).items()}})
        lag, lag_send, n = Histogram(), Histogram(), 0
        firsts = [r["first_ns"] for r in replies if r["first_ns"] is not None]
        lasts = [r["last_ns"] for r in replies if r["last_ns"] is not None]
        for r in replies:
            lag.merge(Histogram.from_dict(r["lag"]))
            lag_send.merge(Histogram.from_dict(r["lag_send"]))
            n += r["notifications"]
        seen = [replies[w]["seen"][local] for w, local in self.sub_owner]
        return {
            "lag": lag,
            "lag_send": lag_send,
            "notifications": n,
            "first_ns": min(firsts) if firsts else None,
            "last_ns": max(lasts) if lasts else None,
            "seen": seen,
        }

    async def client_rss(self) -> int:
        return sum(r["rss"] for r in await self._all({"op": "rss"}))

    # -- jobs: a client-side program each worker runs (see `WorkerState`, op "job") ----------

    async def job(self, step: str, per_worker: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Step `step` of every worker's job at once (a barrier: returns when all replied);
        `per_worker` gives each worker its own message fields (the job's params at "prepare")."""
        if step == "prepare" and per_worker:
            per_worker = list(await asyncio.gather(*(self._in_parts(w, f) for w, f in zip(self.workers, per_worker))))
        msgs = [{"op": "job", "step": step, **(per_worker[i] if per_worker else {})} for i in range(self.processes)]
        return await asyncio.gather(*(w.call(m, self.timeout_s) for w, m in zip(self.workers, msgs)))

    async def _in_parts(self, worker: Any, fields: dict[str, Any]) -> dict[str, Any]:
        """Large job params (a worker's share of a big dataset) go ahead in parts of
        `JOB_PART_CHARS`: a Ray actor call whose arguments pass 100 KiB travels through the
        object store instead of inline, and between nodes that transfer may never arrive."""
        text = json.dumps(fields.get("params"))
        if len(text) <= JOB_PART_CHARS:
            return fields
        for k in range(0, len(text), JOB_PART_CHARS):
            await worker.call({"op": "job", "step": "part", "data": text[k : k + JOB_PART_CHARS]}, self.timeout_s)
        return {**{k: v for k, v in fields.items() if k != "params"}, "params_in_parts": True}


class _ProcessWorker:
    def __init__(self, proc: asyncio.subprocess.Process, index: int) -> None:
        self.proc = proc
        self.index = index
        self.lock = asyncio.Lock()

    async def call(self, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        async with self.lock:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            await self.proc.stdin.drain()
            async with asyncio.timeout(timeout):
                line = await self.proc.stdout.readline()
        if not line:
            err = b""
            if self.proc.stderr is not None:
                try:
                    async with asyncio.timeout(2):
                        err = await self.proc.stderr.read(4000)
                except TimeoutError:
                    pass
            raise WorkerError(
                f"client worker {self.index} exited during {msg['op']!r}: "
                f"{err.decode(errors='replace').strip()[-800:] or 'no output'}"
            )
        return checked_reply(json.loads(line), f"client worker {self.index}", msg["op"])


class WorkerFleet(ShardedFleet):
    """Connections spread round-robin over `processes` worker processes."""

    def __init__(
        self, processes: int, stack_path: str, address: dict[str, Any], counter_field: str, timeout_s: float = 300.0
    ) -> None:
        super().__init__(processes, counter_field, timeout_s)
        self.stack_path = stack_path
        self.address = address
        self.procs: list[_ProcessWorker] = []

    async def start(self) -> None:
        for i in range(self.processes):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "sprout_harness.load.fleet",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=1 << 28,
            )
            w = _ProcessWorker(proc, i)
            self.procs.append(w)
            self.workers.append(w)
            await w.call(init_message(self.stack_path, self.address, self.counter_field, i), self.timeout_s)

    async def close(self) -> None:
        for w in self.procs:
            try:
                await w.call({"op": "close"}, 60)
            except Exception:
                pass
            if w.proc.returncode is None:
                try:
                    async with asyncio.timeout(10):
                        await w.proc.wait()
                except TimeoutError:
                    w.proc.kill()
                    await w.proc.wait()
        self.workers, self.procs = [], []


def init_message(stack_path: str, address: Any, counter_field: str, worker: int) -> dict[str, Any]:
    """The first message to worker `worker`: its stack, address and connection index range."""
    return {
        "op": "init",
        "stack": stack_path,
        "address": address,
        "field": counter_field,
        "first_index": worker * 1_000_000,
    }


def stack_import_path(stack: Any) -> str:
    """`module:Class` of a stack object: what a worker process imports to rebuild its factory."""
    cls = type(stack)
    return f"{cls.__module__}:{cls.__qualname__}"


# --- the worker process -------------------------------------------------------------------------


def _jsonable(out: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.to_dict() if isinstance(v, Histogram) else v) for k, v in out.items()}


class WorkerState:
    """One worker's `ConnectionSet` behind the fleet protocol: `await handle(msg)` -> reply.

    Both the worker process's stdin loop and the Ray actor drive it. Replies are JSON-able
    (histograms as dicts); a failed operation replies `{"error": ...}`; after `close`,
    `closed` is set."""

    def __init__(self) -> None:
        self.cs: ConnectionSet | None = None
        self.closed = False
        self.connect: Callable[[Any, int], Awaitable[Client]] | None = None
        self.job: Any = None
        self.job_task: asyncio.Task[Any] | None = None
        self.job_parts: list[str] = []  # a job's params sent in parts (see `ShardedFleet.job`)

    def _set(self) -> ConnectionSet:
        if self.cs is None:
            raise RuntimeError("no 'init' yet")
        return self.cs

    async def handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self._dispatch(msg["op"], msg)
        except Unsupported as exc:  # the fleet raises it again: the phase is unsupported
            return {"unsupported": str(exc)}
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}

    async def _dispatch(self, op: str, msg: dict[str, Any]) -> dict[str, Any]:
        if op == "init":
            factory = plugins.resolve_stack(msg["stack"])
            connect = getattr(factory, "connect_address", None)
            if not callable(connect):
                raise RuntimeError(f"stack {msg['stack']!r} has no connect_address hook")
            address = msg["address"]

            def open_client(i: int) -> Awaitable[Client]:
                return connect(address, i)  # type: ignore[no-any-return]

            self.cs = ConnectionSet(open_client, msg["field"], msg["first_index"])
            self.connect = connect
            return {"ok": True, "pid": os.getpid(), "boot_id": boot_id()}
        if op == "job":
            return await self._job(msg)
        if op == "open":
            return _jsonable(await self._set().open(msg["n"], msg["concurrency"]))
        if op == "subscribe":
            specs = [(c, coll, query_from_json(q)) for c, coll, q in msg["specs"]]
            return _jsonable(await self._set().subscribe(specs, msg["concurrency"]))
        if op == "counts":
            return {"counts": self._set().counts()}
        if op == "collect":
            sent = {int(v): int(t) for v, t in (msg.get("sent") or {}).items()}
            return _jsonable(self._set().collect(sent))
        if op == "rss":
            return {"rss": measured_rss_bytes()}
        if op == "clock":
            return {"t_ns": time.perf_counter_ns()}
        if op == "offset":
            self._set().clock_offset_ns = int(msg["offset_ns"])
            return {"ok": True}
        if op == "close":
            await self._close_job()
            if self.cs is not None:
                await self.cs.close()
            self.closed = True
            return {"ok": True}
        return {"error": f"unknown op {op!r}"}

    async def _job(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A client-side program run in steps: "prepare" builds it (`msg["runner"]`, a
        `module:attr` import path, called with the stack's `connect_address` and
        `msg["params"]`) and awaits its `prepare()`; "start" runs its `run()` in a task; "poll"
        answers its `progress()` (and the error that ended the task, if one did); "stop" calls
        its `stop()`; "finish" awaits the task and then its `finish()`, whose reply goes back."""
        step = msg["step"]
        if step == "part":
            self.job_parts.append(str(msg["data"]))
            return {"ok": True}
        if step == "prepare":
            if self.connect is None:
                raise RuntimeError("no 'init' yet")
            await self._close_job()
            params = json.loads("".join(self.job_parts)) if msg.get("params_in_parts") else msg["params"]
            self.job_parts = []
            module, _, attr = str(msg["runner"]).partition(":")
            self.job = getattr(importlib.import_module(module), attr)(self.connect, params)
            return dict(await self.job.prepare() or {"ok": True})
        if self.job is None:
            raise RuntimeError(f"job step {step!r} before 'prepare'")
        if step == "start":
            self.job_task = asyncio.ensure_future(self.job.run())
            return {"ok": True}
        task = self.job_task
        if step == "poll":
            out = dict(self.job.progress())
            out["finished"] = task is not None and task.done()
            if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                raise RuntimeError(f"{type(exc).__name__}: {exc}")
            return out
        if step == "stop":
            self.job.stop()
            return {"ok": True}
        if step == "finish":
            if task is not None:
                await task
            return dict(await self.job.finish())
        raise RuntimeError(f"unknown job step {step!r}")

    async def _close_job(self) -> None:
        if self.job_task is not None and not self.job_task.done():
            self.job_task.cancel()
            await asyncio.gather(self.job_task, return_exceptions=True)
        if self.job is not None:
            try:
                await self.job.close()
            except Exception:
                pass
        self.job, self.job_task = None, None


async def _worker_main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 28)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout.buffer
    state = WorkerState()
    while not state.closed:
        line = await reader.readline()
        if not line:
            break
        out.write((json.dumps(await state.handle(json.loads(line))) + "\n").encode())
        out.flush()


if __name__ == "__main__":
    asyncio.run(_worker_main())
