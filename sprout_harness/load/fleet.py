"""Many client connections, each holding live queries: in this process or in worker processes.

A `ConnectionSet` opens connections with a stack hook, subscribes live queries on them and
records, per subscription, the values of one counter field seen in its notifications
(so a scenario can check which commits reached which subscription) and one lag histogram
(receipt time - the commit's `commit_ns`). `LocalFleet` runs one in this process;
`WorkerFleet` spreads connections over worker processes (`python -m
sprout_harness.load.fleet`), each a small client runner that rebuilds the stack's factory
by import path (the plugin mechanism) and calls its `connect_address(address, index)`
hook — it never imports a stack package by name. Workers talk JSON lines over stdin/stdout.

Lag in worker processes uses the same clock: `time.perf_counter_ns` is CLOCK_MONOTONIC on
Linux, one clock for every process of the machine.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from typing import Any, Awaitable, Callable

from sprout_harness import plugins
from sprout_harness.contracts.client import Client, Notification
from sprout_harness.contracts.query import AllOf, AnyOf, Cond, InList, Not, Order, Pred, QuerySpec
from sprout_harness.metrics.histogram import Histogram

OpenClient = Callable[[int], Awaitable[Client]]


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
    return {"where": pred_to_json(q.where), "order_by": [[o.field, o.descending] for o in q.order_by],
            "limit": q.limit, "kind": q.kind}


def query_from_json(d: dict[str, Any]) -> QuerySpec:
    return QuerySpec(pred_from_json(d["where"]), tuple(Order(f, bool(desc)) for f, desc in d["order_by"]),
                     d["limit"], d["kind"])


# --- one process's connections ------------------------------------------------------------------


class ConnectionSet:
    """Connections and their subscriptions in one process (see the module docstring)."""

    def __init__(self, open_client: OpenClient, counter_field: str, first_index: int = 0) -> None:
        self.open_client = open_client
        self.counter_field = counter_field
        self.first_index = first_index
        self.clients: list[Client] = []
        self.subs: list[Any] = []
        self.seen: list[list[int]] = []
        self.lag = Histogram()
        self.notifications = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None

    async def open(self, n: int, concurrency: int) -> dict[str, Any]:
        """Open `n` more connections, `concurrency` at a time; `connect` = per-connection open time."""
        hist, errors = Histogram(), []
        sem = asyncio.Semaphore(max(1, concurrency))
        opened: list[tuple[int, Client]] = []

        async def one(i: int) -> None:
            async with sem:
                t0 = time.perf_counter_ns()
                try:
                    c = await self.open_client(self.first_index + i)
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
        return {"connect": hist, "failures": len(errors), "errors": errors[:5], "wall_ns": wall,
                "open": len(self.clients)}

    def _callback(self, s: int) -> Callable[[Notification], None]:
        field = self.counter_field
        seen = self.seen[s]

        def on_notify(n: Notification) -> None:
            now = time.perf_counter_ns()
            if n.kind != "change":
                return
            if n.commit_ns is not None:
                self.lag.record(max(0, now - n.commit_ns))
            self.notifications += 1
            if self.first_ns is None:
                self.first_ns = now
            self.last_ns = now
            for d in (*n.added, *n.updated):
                v = d.props.get(field)
                if type(v) is int:
                    seen.append(v)

        return on_notify

    async def subscribe(self, specs: list[tuple[int, str, QuerySpec]], concurrency: int) -> dict[str, Any]:
        """Subscribe `(connection, collection, query)` each; `initial` = time to initial result."""
        hist, errors = Histogram(), []
        results: list[list[str] | None] = [None] * len(specs)
        sem = asyncio.Semaphore(max(1, concurrency))
        base = len(self.subs)
        self.subs.extend([None] * len(specs))
        self.seen.extend([] for _ in specs)

        async def one(k: int, conn: int, coll: str, q: QuerySpec) -> None:
            async with sem:
                t0 = time.perf_counter_ns()
                try:
                    sub = await self.clients[conn].subscribe(coll, q, self._callback(base + k))
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    return
                hist.record(time.perf_counter_ns() - t0)
                self.subs[base + k] = sub
                results[k] = [d.id for d in sub.results]

        await asyncio.gather(*(one(k, *spec) for k, spec in enumerate(specs)))
        return {"initial": hist, "failures": len(errors), "errors": errors[:5], "results": results}

    def collect(self) -> dict[str, Any]:
        """Lag and counts since the last collect (then reset); `seen` per subscription (kept)."""
        out = {"lag": self.lag, "notifications": self.notifications, "first_ns": self.first_ns,
               "last_ns": self.last_ns, "seen": [list(s) for s in self.seen]}
        self.lag, self.notifications, self.first_ns, self.last_ns = Histogram(), 0, None, None
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
        for c in self.clients:
            fn = getattr(c, "close", None)
            if fn is not None:
                try:
                    await fn()
                except Exception:
                    pass
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

    async def collect(self) -> dict[str, Any]:
        return self.set.collect()

    async def client_rss(self) -> int:
        return 0

    async def close(self) -> None:
        await self.set.close()


class WorkerError(RuntimeError):
    pass


class _Worker:
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
            raise WorkerError(f"client worker {self.index} exited during {msg['op']!r}: "
                              f"{err.decode(errors='replace').strip()[-800:] or 'no output'}")
        reply = json.loads(line)
        if "error" in reply:
            raise WorkerError(f"client worker {self.index}: {msg['op']}: {reply['error']}")
        return reply


class WorkerFleet:
    """Connections spread round-robin over `processes` worker processes."""

    def __init__(self, processes: int, stack_path: str, address: dict[str, Any], counter_field: str,
                 timeout_s: float = 300.0) -> None:
        self.processes = processes
        self.stack_path = stack_path
        self.address = address
        self.counter_field = counter_field
        self.timeout_s = timeout_s
        self.workers: list[_Worker] = []
        self.conn_owner: list[tuple[int, int]] = []  # global connection -> (worker, local index)
        self.sub_owner: list[tuple[int, int]] = []
        self._per_worker_conns = [0] * processes
        self._per_worker_subs = [0] * processes

    async def start(self) -> None:
        for i in range(self.processes):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sprout_harness.load.fleet",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                limit=1 << 28)
            w = _Worker(proc, i)
            self.workers.append(w)
            await w.call({"op": "init", "stack": self.stack_path, "address": self.address,
                          "field": self.counter_field, "first_index": i * 1_000_000}, self.timeout_s)

    async def open(self, n: int, concurrency: int) -> dict[str, Any]:
        share = [n // self.processes + (1 if i < n % self.processes else 0) for i in range(self.processes)]
        per = max(1, concurrency // self.processes)
        replies = await asyncio.gather(*(w.call({"op": "open", "n": k, "concurrency": per}, self.timeout_s)
                                         for w, k in zip(self.workers, share)))
        hist, failures, errors, wall = Histogram(), 0, [], 0
        for i, r in enumerate(replies):
            hist.merge(Histogram.from_dict(r["connect"]))
            failures += r["failures"]
            errors += r["errors"]
            wall = max(wall, r["wall_ns"])
            for local in range(self._per_worker_conns[i], r["open"]):
                self.conn_owner.append((i, local))
            self._per_worker_conns[i] = r["open"]
        return {"connect": hist, "failures": failures, "errors": errors[:5], "wall_ns": wall,
                "open": len(self.conn_owner)}

    async def subscribe(self, specs: list[tuple[int, str, QuerySpec]], concurrency: int) -> dict[str, Any]:
        per_worker: list[list[tuple[int, list[Any]]]] = [[] for _ in self.workers]
        for k, (conn, coll, q) in enumerate(specs):
            w, local = self.conn_owner[conn]
            per_worker[w].append((k, [local, coll, query_to_json(q)]))
        per = max(1, concurrency // self.processes)
        replies = await asyncio.gather(*(
            w.call({"op": "subscribe", "specs": [s for _, s in items], "concurrency": per}, self.timeout_s)
            for w, items in zip(self.workers, per_worker)))
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
        replies = await asyncio.gather(*(w.call({"op": "counts"}, self.timeout_s) for w in self.workers))
        return [replies[w]["counts"][local] for w, local in self.sub_owner]

    async def collect(self) -> dict[str, Any]:
        replies = await asyncio.gather(*(w.call({"op": "collect"}, self.timeout_s) for w in self.workers))
        lag, n = Histogram(), 0
        firsts = [r["first_ns"] for r in replies if r["first_ns"] is not None]
        lasts = [r["last_ns"] for r in replies if r["last_ns"] is not None]
        for r in replies:
            lag.merge(Histogram.from_dict(r["lag"]))
            n += r["notifications"]
        seen = [replies[w]["seen"][local] for w, local in self.sub_owner]
        return {"lag": lag, "notifications": n, "first_ns": min(firsts) if firsts else None,
                "last_ns": max(lasts) if lasts else None, "seen": seen}

    async def client_rss(self) -> int:
        replies = await asyncio.gather(*(w.call({"op": "rss"}, self.timeout_s) for w in self.workers))
        return sum(r["rss"] for r in replies)

    async def close(self) -> None:
        for w in self.workers:
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
        self.workers = []


def stack_import_path(stack: Any) -> str:
    """`module:Class` of a stack object: what a worker process imports to rebuild its factory."""
    cls = type(stack)
    return f"{cls.__module__}:{cls.__qualname__}"


# --- the worker process -------------------------------------------------------------------------


def _jsonable(out: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.to_dict() if isinstance(v, Histogram) else v) for k, v in out.items()}


async def _worker_main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 28)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout.buffer
    cs: ConnectionSet | None = None

    def reply(d: dict[str, Any]) -> None:
        out.write((json.dumps(d) + "\n").encode())
        out.flush()

    while True:
        line = await reader.readline()
        if not line:
            break
        msg = json.loads(line)
        op = msg["op"]
        try:
            if op == "init":
                factory = plugins.resolve_stack(msg["stack"])
                connect = getattr(factory, "connect_address", None)
                if not callable(connect):
                    raise RuntimeError(f"stack {msg['stack']!r} has no connect_address hook")
                address = msg["address"]
                cs = ConnectionSet(lambda i, c=connect, a=address: c(a, i), msg["field"], msg["first_index"])
                reply({"ok": True, "pid": os.getpid()})
            elif op == "open":
                assert cs is not None
                reply(_jsonable(await cs.open(msg["n"], msg["concurrency"])))
            elif op == "subscribe":
                assert cs is not None
                specs = [(c, coll, query_from_json(q)) for c, coll, q in msg["specs"]]
                reply(_jsonable(await cs.subscribe(specs, msg["concurrency"])))
            elif op == "counts":
                assert cs is not None
                reply({"counts": cs.counts()})
            elif op == "collect":
                assert cs is not None
                reply(_jsonable(cs.collect()))
            elif op == "rss":
                reply({"rss": measured_rss_bytes()})
            elif op == "close":
                if cs is not None:
                    await cs.close()
                reply({"ok": True})
                break
            else:
                reply({"error": f"unknown op {op!r}"})
        except Exception as exc:
            reply({"error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    asyncio.run(_worker_main())
