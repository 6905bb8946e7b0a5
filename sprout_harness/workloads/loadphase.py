"""What the operation-mix phases (`crud`, `ycsb-a` … `ycsb-f`) share.

- `LoadKnobs`: the worker knobs every mix phase has (workers, warmup, ramp-up, duration or
  operation count, `rate` for the open loop, `arrival`), turned into a `LoadConfig`;
- `drive(ctx, knobs, execute, next_op)`: runs `sprout_harness/load/driver.py` on the
  phase's recorder, wires the runner's stop request to a graceful driver stop, and records
  the load figures (mode, target and achieved rate, late, dropped) as counters and a check;
- `History`: the expected-state model at operation granularity, used to check reads that
  run concurrently with writes to the same entity.

How `History` judges a read (each property of an entity is a register, and so is its
existence): every write is recorded with the perf_counter interval [start, end] of the
stack call that made it; a read of interval [rs, re] may return the value of any write
that started before `re` and is not certainly overwritten before `rs` — i.e. no other
write of the same register both started after it ended and ended before `rs`. With no
concurrent writers this is exactly "the last acknowledged value"; with overlapping writes
it is every value a linearizable store could return. A write whose call failed keeps an
open interval (it may or may not have applied). The same rule, at the end of the run,
gives the values the final state may hold.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Mapping, Protocol, Sequence, TypeVar

from sprout_harness.contracts.client import Client, Doc
from sprout_harness.contracts.errors import ConfigError
from sprout_harness.contracts.query import Cond, Order, QuerySpec
from sprout_harness.load.driver import LoadConfig, LoadDriver, LoadResult
from sprout_harness.workloads.context import PhaseContext
from sprout_harness.workloads.knobs import knob
from sprout_harness.workloads.reference import sort_key

EXISTS = "\x00exists"  # the register holding whether the entity exists (not a property name)
_MISSING = object()
_ADVANCE_EVERY = 64


@dataclass
class LoadKnobs:
    """Worker knobs shared by the operation-mix phases (docs/load-generation.md)."""

    workers: int = knob(4, "concurrent clients; in open loop the bound on operations running at once", min=1)
    processes: int = knob(
        0,
        "client workers the mix is split over, each with its own connections, key share and seeded "
        "stream (worker processes, or Ray actors per runner.placement); 0: in this process",
        min=0,
        max=64,
    )
    operations: int = knob(2000, "measured operations (0: no count limit, then duration_s must be > 0)", min=0)
    duration_s: float = knob(0.0, "length of the measured window in seconds (0: no time limit)", min=0)
    warmup_s: float = knob(0.0, "seconds run after ramp-up but left out of the figures", min=0)
    ramp_up_s: float = knob(0.0, "seconds over which workers start (closed loop) or the rate rises (open loop)", min=0)
    rate: float | None = knob(None, "target ops/s of all workers together: open loop; null: closed loop")
    arrival: str = knob(
        "fixed", "open-loop timeline: fixed spacing or poisson (seeded exponential gaps)", choices=("fixed", "poisson")
    )
    late_tolerance_ms: float = knob(
        1.0, "open loop: an operation starting later than this after its intended time is late", min=0
    )
    max_outstanding: int = knob(
        10_000, "open loop: operations queued + running; one falling due beyond it is dropped", min=1
    )

    def validate(self, path: str) -> None:
        if self.operations == 0 and self.duration_s == 0:
            raise ConfigError(
                "got operations 0 and duration_s 0; set operations >= 1 or duration_s > 0, else the phase never ends",
                f"{path}.operations",
            )
        if self.rate is not None and not self.rate > 0:
            raise ConfigError(f"got {self.rate!r}; must be > 0 ops/s (or null for the closed loop)", f"{path}.rate")

    def load_config(self, seed: int) -> LoadConfig:
        return LoadConfig(
            workers=self.workers,
            operations=self.operations or None,
            duration_s=self.duration_s or None,
            warmup_s=self.warmup_s,
            ramp_up_s=self.ramp_up_s,
            rate=self.rate,
            arrival=self.arrival,  # type: ignore[arg-type]
            seed=seed,
            late_tolerance_s=self.late_tolerance_ms / 1e3,
            max_outstanding=self.max_outstanding,
        )


class Lane(Protocol):
    """One durable group's share of a mix (see `lane_turns`, `verify_final_states`): its
    group's index and model, the ids it started from and the history that judges it."""

    group: int
    model: Any
    initial_ids: list[str]
    history: History

    async def execute(self, op: Any) -> None: ...


L = TypeVar("L", bound=Lane)


class LaneOp:
    """An operation and the lane it belongs to; `op` names its kind, as the driver expects."""

    __slots__ = ("op", "lane", "inner")

    def __init__(self, lane: Lane, inner: Any) -> None:
        self.op, self.lane, self.inner = inner.op, lane, inner


def lane_turns(
    lanes: Sequence[L], next_of: Callable[[L], Any]
) -> tuple[Callable[[], LaneOp], Callable[[LaneOp], Awaitable[None]]]:
    """`next_op` and `execute` for `drive` over several lanes: the lanes take turns, so each
    durable group gets its share of the operations, each from its own stream (`next_of`)."""
    turn = itertools.cycle(lanes).__next__

    def next_op() -> LaneOp:
        lane = turn()
        return LaneOp(lane, next_of(lane))

    async def execute(op: LaneOp) -> None:
        await op.lane.execute(op.inner)

    return next_op, execute


def lane_clients(ctx: PhaseContext, group: int) -> tuple[list[Any], Callable[[], Any]]:
    """The phase's target nodes in `group` (its durable node, or its ephemerals), and a
    function that hands out their clients in turn."""
    clients = [n.client for n in ctx.targets if n.group == group]
    return clients, itertools.cycle(clients).__next__


async def drive(
    ctx: PhaseContext, k: LoadKnobs, execute: Callable[[Any], Awaitable[None]], next_op: Callable[[], Any], seed: int
) -> LoadResult:
    """Run the load driver over `execute`; records the load figures and checks its accounting.

    Closed loop: the driver yields the event loop between operations so W workers take
    turns even on a stack whose calls never suspend, and a latency is the service time from
    issue to completion. Open loop: latency runs from the intended start time, whatever the
    interleaving (no coordinated omission).
    """
    cfg = k.load_config(seed)
    closed = cfg.rate is None
    done = [0]
    driver: LoadDriver | None = None

    async def run_op(op: Any) -> None:
        if ctx.stop_requested and driver is not None:
            driver.stop()
        await execute(op)
        done[0] += 1
        if done[0] % _ADVANCE_EVERY == 0:
            ctx.advance(_ADVANCE_EVERY)

    driver = LoadDriver(run_op, next_op, cfg, ctx.recorder)
    res = await driver.run()
    ctx.advance(done[0] % _ADVANCE_EVERY)
    if ctx.stop_requested:
        raise asyncio.CancelledError("stop requested")
    rec = ctx.recorder
    rec.count("achieved_rate_ops_s", round(res.achieved_rate))
    if res.target_rate is not None:
        rec.count("target_rate_ops_s", round(res.target_rate))
    if closed:
        name = f"closed-loop, {res.workers} workers: every issued operation completed"
        ok = res.completed == res.issued and res.cancelled == 0
        detail = f"{res.issued} issued, {res.completed} completed, {res.cancelled} cancelled"
    else:
        name = (
            f"open-loop at {res.target_rate:g} ops/s ({res.arrival} arrivals): every scheduled operation "
            "completed, or is counted dropped or unstarted"
        )
        ok = res.issued == res.completed + res.unstarted + res.cancelled and res.cancelled == 0
        detail = (
            f"{res.issued} issued = {res.completed} completed + {res.unstarted} unstarted + "
            f"{res.cancelled} cancelled? ({res.dropped} dropped, {res.late} late)"
        )
    ctx.check(name, ok, detail)
    ctx.check(
        "no operation failed",
        res.errors == 0,
        f"{res.errors} of {res.completed} operations raised; see the phase's errors",
    )
    return res


# --- the expected-state history ----------------------------------------------------------


class _Write:
    __slots__ = ("value", "start", "end")

    def __init__(self, value: Any, start: int, end: int | None) -> None:
        self.value = value
        self.start = start
        self.end = end


def same_value(a: Any, b: Any) -> bool:
    if a is _MISSING or b is _MISSING:
        return a is b
    if type(a) is type(b):
        return a == b
    return sort_key(a) == sort_key(b)


class History:
    """Per-entity registers of timed writes; see the module docstring for the rule.

    `initial(id)` gives an entity's props before the phase (None: it did not exist); it is
    read lazily, the first time the phase touches the entity.
    """

    def __init__(
        self, initial: Callable[[str], Mapping[str, Any] | None], clock: Callable[[], int] = time.perf_counter_ns
    ) -> None:
        self._initial = initial
        self.clock = clock
        self.regs: dict[str, dict[str, list[_Write]]] = {}
        self._created: dict[str, tuple[Mapping[str, Any], int, int]] = {}  # not yet materialised in regs
        self._reads: dict[int, int] = {}  # token -> read start (reads not yet judged)
        self._token = 0

    # -- registers ------------------------------------------------------------------

    def _start_state(self, id_: str) -> tuple[Mapping[str, Any] | None, int, int]:
        """(props, start, end): an entity's first state and the interval of the write that made it."""
        created = self._created.get(id_)
        if created is not None:
            return created
        return self._initial(id_), -1, -1

    def _entity(self, id_: str) -> dict[str, list[_Write]]:
        regs = self.regs.get(id_)
        if regs is None:
            props, start, end = self._start_state(id_)
            self._created.pop(id_, None)
            if start < 0:
                regs = {EXISTS: [_Write(props is not None, -1, -1)]}
            else:
                regs = {EXISTS: [_Write(False, -1, -1), _Write(True, start, end)]}
            for name, v in (props or {}).items():
                regs[name] = [_Write(v, start, end)]
            self.regs[id_] = regs
        return regs

    def begin_write(
        self, id_: str, values: Mapping[str, Any], start: int | None = None
    ) -> list[tuple[list[_Write], _Write]]:
        """Record a write about to be sent (call right before the stack call)."""
        regs = self._entity(id_)
        t = self.clock() if start is None else start
        handles = []
        for name, v in values.items():
            reg = regs.get(name)
            if reg is None:
                reg = regs[name] = [_Write(_MISSING, -1, -1)]
            w = _Write(v, t, None)
            reg.append(w)
            handles.append((reg, w))
        return handles

    def end_write(self, handles: list[tuple[list[_Write], _Write]], end: int | None = None) -> None:
        """The write was acknowledged: close its interval and drop what no reader can see any more."""
        t = self.clock() if end is None else end
        horizon = min(self._reads.values(), default=t)
        for reg, w in handles:
            w.end = t
            self._prune(reg, horizon)

    def abandon_write(self, handles: list[tuple[list[_Write], _Write]]) -> None:
        """The write certainly did not apply (e.g. rejected because the entity was deleted)."""
        for reg, w in handles:
            if w in reg:
                reg.remove(w)

    def known_ids(self) -> set[str]:
        """Every entity this history has a write of (or a create it was told about)."""
        return set(self.regs) | set(self._created)

    def record_create(self, id_: str, values: Mapping[str, Any], start: int, end: int) -> None:
        """An entity created by the phase (its id known only from the ack); registers come lazily."""
        self._created[id_] = (values, start, end)

    @staticmethod
    def _prune(reg: list[_Write], horizon: int) -> None:
        s = max((w.start for w in reg if w.end is not None and w.end < horizon), default=None)
        if s is not None and len(reg) > 1:
            reg[:] = [w for w in reg if w.end is None or w.end >= s]

    @staticmethod
    def _candidates(reg: list[_Write], rs: int, re: int) -> list[Any]:
        if len(reg) == 1:  # the common case: one write, nothing can supersede it
            w = reg[0]
            return [w.value] if w.start < re else []
        s = max((w.start for w in reg if w.end is not None and w.end < rs), default=None)
        return [w.value for w in reg if w.start < re and not (s is not None and w.end is not None and w.end < s)]

    # -- reads ----------------------------------------------------------------------

    def begin_read(self) -> tuple[int, int]:
        """(token, start): call right before the stack call; `judge` / `forget` the token later."""
        self._token += 1
        t = self.clock()
        self._reads[self._token] = t
        return self._token, t

    def forget(self, token: int) -> None:
        self._reads.pop(token, None)

    def judge(self, id_: str, props: Mapping[str, Any] | None, rs: int, re: int) -> tuple[bool, bool, str]:
        """(ok, ambiguous, detail) for a read of `id_` that returned `props` (None: not found).

        `ambiguous`: more than one value was acceptable for some register (a concurrent write)."""
        if id_ not in self.regs:  # not written since its first state: must read as that state
            initial, _, end = self._start_state(id_)
            if end < rs and (
                props == initial if props is not None and initial is not None else props is None and initial is None
            ):
                return True, False, ""
        regs = self._entity(id_)
        ex = self._candidates(regs[EXISTS], rs, re)
        ambiguous = len(set(ex)) > 1
        if props is None:
            if False in ex:
                return True, ambiguous, ""
            return False, ambiguous, f"{id_}: not found, but it exists (acknowledged create, no delete)"
        if True not in ex:
            return False, ambiguous, f"{id_}: returned, but its delete was acknowledged before the read began"
        extra = props.keys() - regs.keys()
        if extra:
            name = min(extra)
            return False, ambiguous, f"{id_}.{name}: got {props[name]!r}, never written"
        for name, reg in regs.items():
            if name == EXISTS:
                continue
            got = props.get(name, _MISSING)
            cands = self._candidates(reg, rs, re)
            if len(cands) > 1:
                ambiguous = True
            if not any(same_value(got, c) for c in cands):
                shown = [("<absent>" if c is _MISSING else c) for c in cands][:3]
                return (
                    False,
                    ambiguous,
                    (
                        f"{id_}.{name}: got {'<absent>' if got is _MISSING else repr(got)[:60]},"
                        f" acceptable: {[repr(c)[:60] for c in shown]}"
                    ),
                )
        return True, ambiguous, ""

    def judge_final(self, state: Mapping[str, Mapping[str, Any]], initial_ids: Iterable[str]) -> tuple[int, list[str]]:
        """Compare the stack's final state (id -> props) with every acknowledged write.

        Returns (entities compared, problems). Entities the phase never touched must equal
        their initial props."""
        t = self.clock()
        problems: list[str] = []
        ids = set(initial_ids) | set(self.regs) | set(self._created) | set(state)
        for id_ in sorted(ids):
            if id_ not in self.regs and self._start_state(id_)[0] is None:
                problems.append(f"{id_}: present in the stack but no create of it was acknowledged")
                continue
            ok, _, detail = self.judge(id_, state.get(id_), t, t)
            if not ok:
                problems.append(detail)
        return len(ids), problems


@dataclass
class ReadStats:
    """Read verdicts of one phase (judged off the measured path)."""

    checked: int = 0
    ambiguous: int = 0
    wrong: int = 0
    first: str = ""

    def add(self, ok: bool, ambiguous: bool, detail: str) -> None:
        self.checked += 1
        self.ambiguous += ambiguous
        if not ok:
            self.wrong += 1
            if not self.first:
                self.first = detail

    def record(self, ctx: PhaseContext, what: str, check: str) -> None:
        """Counters `<what>_checked`, `<what>_concurrent_with_writes` and the check `check`."""
        ctx.recorder.count(f"{what}_checked", self.checked)
        ctx.recorder.count(f"{what}_concurrent_with_writes", self.ambiguous)
        ctx.check(check, self.wrong == 0, f"{self.wrong} of {self.checked} wrong, first: {self.first}")


def defer(fn: Callable[..., None], *args: Any) -> None:
    """Run a check after the current operation's latency has been taken (next loop iteration)."""
    asyncio.get_running_loop().call_soon(fn, *args)


#: entities per read when a whole collection is read in pages (see `fetch_collection`)
FETCH_PAGE = 500


async def fetch_collection(client: Client, collection: str, expected: int) -> list[Doc]:
    """Every entity of `collection`: one fetch when about `expected` entities fit one page,
    else pages in id order (`id > last ORDER BY id LIMIT n`, what ycsb-e's scans need of a
    stack too), so no reply outgrows a network connector's message limit."""
    if expected <= FETCH_PAGE:
        return list(await client.fetch(collection, QuerySpec(kind="all")))
    docs: list[Doc] = []
    last: str | None = None
    while True:
        where = None if last is None else Cond("id", ">", last)
        page = list(await client.fetch(collection, QuerySpec(where, (Order("id"),), FETCH_PAGE, kind="all-paged")))
        docs += page
        if len(page) < FETCH_PAGE:
            return docs
        if last is not None and not page[-1].id > last:  # a stack that ignores the order: never loop
            raise AssertionError(f"{collection}: a page in id order ended at {page[-1].id!r}, not after {last!r}")
        last = page[-1].id


async def verify_final_states(
    ctx: PhaseContext, lanes: Sequence[Lane], collection: str, *, own_only: bool = False
) -> list[list[str]]:
    """Fetch the whole collection of each lane's group, check it against the lane's history,
    and make it the group's expected state. Read from the durable node, the authority:
    through an ephemeral the whole collection can be more than one protocol message carries.

    `own_only` (a worker with a share of the keys): judge only the entities the lane started
    from or wrote; the ids judged are returned per lane, for the driver to check that every
    entity of the store is some worker's."""
    owned: list[list[str]] = []
    for lane in lanes:
        where = f"group {lane.group}: " if len(lanes) > 1 else ""
        expected = max(len(lane.model.data.get(collection, {})), ctx.datasets.get(collection, 0))
        docs = await fetch_collection(ctx.durables[lane.group].client, collection, expected)
        state = {d.id: dict(d.props) for d in docs}
        dupes = len(docs) - len(state)
        if own_only:
            mine = lane.history.known_ids() | set(lane.initial_ids)
            state = {i: p for i, p in state.items() if i in mine}
            owned.append(list(state))
        compared, problems = lane.history.judge_final(state, lane.initial_ids)
        ctx.recorder.count("final_entities", len(state))
        ctx.check(
            "every acknowledged create, update and delete is reflected in the final state",
            not problems and not dupes,
            where
            + (f"{dupes} duplicate ids; " if dupes else "")
            + f"{len(problems)} of {compared} entities wrong, e.g. {problems[:2]}",
        )
        lane.model.data[collection] = state
    return owned


__all__ = [
    "EXISTS",
    "FETCH_PAGE",
    "fetch_collection",
    "History",
    "Lane",
    "LaneOp",
    "LoadKnobs",
    "ReadStats",
    "defer",
    "drive",
    "lane_clients",
    "lane_turns",
    "same_value",
    "verify_final_states",
]
