"""ycsb-a … ycsb-f — the six YCSB core workloads, from `ycsb_workloads.py`'s published definitions.

Each phase first loads `record_count` records (`key` plus `field0..N`) into `collection`
unless an earlier YCSB phase of the run already did (then it continues on that table, as
YCSB runs workloads over one loaded table); the load is not measured. The load driver then
runs the workload's operation stream, closed loop or open loop at `rate`, on every durable
group in turn: through its durable node, or through each of its ephemerals in turn
(`target: ephemeral`); each group has its own table, stream and history. Keys map to the ids the stack assigned at insert. Latency per op kind:
`read`, `update`, `insert`, `scan`, `readmodifywrite` (the read and the write together).

Operations: read = get by id (all fields); update = partial update of one field; insert =
create (its key becomes readable once acknowledged: YCSB's AcknowledgedCounterGenerator);
scan (E) = `where id >= <start id> order by id limit <scan length>` — YCSB's scan from
the start key, in the stack's key (id) order; read-modify-write (F) = read, then update.

Checks: every read returned an acknowledged (or concurrent) value (`loadphase.History`);
every scan returned a correct ordered slice — ids ascending from the start key, no
acknowledged record missing inside the slice (or after it, when short), nothing whose
insert had not begun, values as written; the final state equals every acknowledged
write; no operation failed.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from dataclasses import dataclass
from typing import Any

from sprout_harness.contracts.errors import ConfigError, Unsupported
from sprout_harness.contracts.query import Cond, Order, QuerySpec
from sprout_harness.workloads import datasets
from sprout_harness.workloads.catalog import PhaseSpec, register_phase
from sprout_harness.workloads.context import PhaseContext, chunks
from sprout_harness.workloads.knobs import ENTITY_BYTES, knob
from sprout_harness.workloads.loadphase import (
    History,
    LoadKnobs,
    ReadStats,
    defer,
    drive,
    lane_clients,
    lane_turns,
    verify_final_states,
)
from sprout_harness.workloads.phases.mixes import remote
from sprout_harness.workloads.phases.mixes.ycsb_workloads import (
    WORKLOADS,
    YcsbOperation,
    YcsbWorkload,
    drawn_kinds,
    workload_spec,
)

KEY_FIELD = "key"


@dataclass
class YcsbKnobs(LoadKnobs):
    collection: str = knob("usertable", "collection holding the YCSB table (not a dataset kind)")
    record_count: int = knob(1000, "records loaded before the first YCSB phase of the run", min=1)
    field_count: int = knob(10, "fields per record", min=1)
    field_length: int = knob(100, "characters per field value", min=1)
    max_scan_length: int = knob(100, "ycsb-e: scan lengths are uniform in 1..max_scan_length", min=1)
    request_distribution: str = knob(
        "default", "override the workload's request distribution", choices=("default", "zipfian", "uniform", "latest")
    )
    load_batch_size: int = knob(500, "records per create call while loading (not measured)", min=1)

    def memory_bytes(self) -> int:
        """What the loaded table costs the run: each record's fields on top of an entity."""
        return self.record_count * (ENTITY_BYTES + self.field_count * (self.field_length + 64))

    def memory_key(self) -> str:
        """Every YCSB phase of a run shares one table: validation counts it once."""
        return f"ycsb table {self.collection}"

    def validate(self, path: str) -> None:
        super().validate(path)
        if self.collection in datasets.kinds():
            raise ConfigError(
                f"got {self.collection!r}, a dataset kind; the YCSB table needs its own collection (e.g. usertable)",
                f"{path}.collection",
            )


class _Table:
    """The YCSB table as the phase knows it: key -> id, and every id's insert interval (for scans)."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.inserted: dict[str, tuple[int, int]] = {}  # id -> (start, end) of its acknowledged insert
        self.sorted_ids: list[str] = []

    def add(self, key: str, id_: str, start: int, end: int) -> None:
        self.ids[key] = id_
        self.inserted[id_] = (start, end)
        bisect.insort(self.sorted_ids, id_)


class _Checks:
    """Verdicts and counts shared by every lane of the phase."""

    def __init__(self) -> None:
        self.reads, self.scans = ReadStats(), ReadStats()
        self.rows_scanned = 0
        self.records_loaded = 0
        self.load_s = 0.0


class _Lane:
    """One durable group's share of the workload: its clients (the durable node, or each of
    its ephemerals in turn; the unmeasured load goes through the first), its own table,
    operation stream and the history that judges it."""

    def __init__(
        self, ctx: PhaseContext, k: YcsbKnobs, letter: str, group: int, checks: _Checks, share: tuple[int, int] = (0, 1)
    ) -> None:
        self.ctx, self.k, self.group, self.checks = ctx, k, group, checks
        self.coll = k.collection
        self.clients, self.next_client = lane_clients(ctx, group)
        self.model = ctx.models[group]
        self.existing = self.model.docs(self.coll)
        record_count = len(self.existing) or k.record_count
        opts: dict[str, Any] = dict(
            record_count=record_count,
            field_count=k.field_count,
            field_length=k.field_length,
            max_scan_length=k.max_scan_length,
            operation_count=k.operations or max(1000, int(k.duration_s * 2000)),
        )
        if k.request_distribution != "default":
            opts["request_distribution"] = k.request_distribution
        self.spec = workload_spec(letter, **opts)
        # group 0 draws exactly the stream a one-group run draws
        seed = self.workload_seed = f"{ctx.seed}:{ctx.title}" + (f":{group}" if group else "")
        self.workload = YcsbWorkload(
            self.spec,
            seed=seed,  # type: ignore[arg-type]
            acknowledge_mode="on-ack",
            key_stride=share[1],
            key_offset=share[0],
        )
        self.table = _Table()
        self.late_scans: list[tuple[Any, ...]] = []
        self.initial_ids: list[str] = []
        model, coll = self.model, self.coll
        self.history = History(lambda id_: model.get(coll, id_))

    async def prepare(self) -> None:
        """Load the table (unmeasured) or check the one earlier phases left."""
        ctx, coll, workload = self.ctx, self.coll, self.workload
        record_count = self.spec.record_count
        if self.existing:
            by_key = {d.props.get(KEY_FIELD): d.id for d in self.existing}
            missing = [workload.key_name(i) for i in range(record_count) if workload.key_name(i) not in by_key]
            ctx.require(
                "the YCSB table left by earlier phases is intact",
                not missing and len(by_key) == len(self.existing),
                f"group {self.group}: {len(missing)} of keys user(0..{record_count - 1}) missing, "
                f"e.g. {missing[:2]}; {len(self.existing) - len(by_key)} duplicate keys",
            )
        else:
            await self._load()
            by_key = {row[KEY_FIELD]: id_ for id_, row in self.model.data[coll].items()}
        for key, id_ in by_key.items():
            self.table.add(key, id_, -1, -1)
        self.initial_ids = list(self.model.data.get(coll, {}))

    async def _load(self) -> None:
        client, k = self.clients[0], self.k
        n = 0
        t0 = time.perf_counter()
        for batch in chunks(list(self.workload.records()), k.load_batch_size):
            rows = [{KEY_FIELD: key, **fields} for key, fields in batch]
            ack = await client.create(k.collection, rows)
            if len(ack.ids) != len(rows):
                self.ctx.require(
                    "every record load acknowledged",
                    False,
                    f"group {self.group}: {len(ack.ids)} ids for {len(rows)} records",
                )
            for id_, row in zip(ack.ids, rows):
                self.model.put(k.collection, id_, row)
            n += len(rows)
        self.checks.records_loaded += n
        self.checks.load_s += time.perf_counter() - t0

    def judge_read(self, token: int, id_: str, props: Any, rs: int, re: int) -> None:
        self.checks.reads.add(*self.history.judge(id_, props, rs, re))
        self.history.forget(token)

    def judge_scan(
        self, token: int, start_id: str, limit: int, docs: list[Any], rs: int, re: int, final: bool = False
    ) -> None:
        table, history = self.table, self.history
        ids = [d.id for d in docs]
        unknown = [i for i in ids if i not in table.inserted]
        if unknown and not final:  # an insert still unacknowledged when the scan returned: judge at the end
            self.late_scans.append((token, start_id, limit, docs, rs, re))
            return
        history.forget(token)
        problem = ""
        if len(ids) > limit:
            problem = f"{len(ids)} rows for limit {limit}"
        elif (ids and ids[0] < start_id) or any(b <= a for a, b in zip(ids, ids[1:])):
            problem = f"ids not ascending from the start key {start_id}: {ids[:4]}"
        elif unknown:
            problem = f"ids no insert ever returned: {unknown[:2]}"
        else:
            begun_late = [i for i in ids if table.inserted[i][0] >= re]
            if begun_late:
                problem = f"rows whose insert began after the scan returned: {begun_late[:2]}"
        if not problem:
            got = set(ids)
            last = ids[-1] if len(ids) == limit else None
            j = bisect.bisect_left(table.sorted_ids, start_id)
            while j < len(table.sorted_ids):
                i = table.sorted_ids[j]
                if last is not None and i > last:
                    break
                if i not in got and table.inserted[i][1] < rs:
                    problem = f"scan from {start_id} limit {limit} skipped {i}, acknowledged before the scan began"
                    break
                j += 1
        ambiguous = False
        if not problem:
            for d in docs:
                ok, amb, detail = history.judge(d.id, d.props, rs, re)
                ambiguous |= amb
                if not ok:
                    problem = detail
                    break
        self.checks.scans.add(not problem, ambiguous, problem)

    async def read(self, op: YcsbOperation, client: Any) -> None:
        id_ = self.table.ids[op.key]
        history = self.history
        token, rs = history.begin_read()
        try:
            doc = await client.get(self.coll, id_)
        except BaseException:
            history.forget(token)
            raise
        defer(self.judge_read, token, id_, None if doc is None else doc.props, rs, history.clock())

    async def update(self, op: YcsbOperation, client: Any) -> None:
        assert op.fields is not None
        id_ = self.table.ids[op.key]
        h = self.history.begin_write(id_, op.fields)
        await client.update(self.coll, id_, op.fields)
        self.history.end_write(h)

    async def execute(self, op: YcsbOperation) -> None:
        kind = op.op
        client, history = self.next_client(), self.history
        clock = history.clock
        if kind == "read":
            await self.read(op, client)
        elif kind == "update":
            await self.update(op, client)
        elif kind == "readmodifywrite":  # both halves through the same client
            await self.read(op, client)
            await self.update(op, client)
        elif kind == "insert":
            row = {KEY_FIELD: op.key, **(op.fields or {})}
            start = clock()
            ack = await client.create(self.coll, [row])
            end = clock()
            (id_,) = ack.ids
            history.record_create(id_, row, start, end)
            self.table.add(op.key, id_, start, end)
            self.workload.acknowledge(op)
        elif kind == "scan":
            start_id = self.table.ids[op.key]
            q = QuerySpec(Cond("id", ">=", start_id), order_by=(Order("id"),), limit=op.scan_length, kind="scan")
            token, rs = history.begin_read()
            try:
                docs = await client.fetch(self.coll, q)
            except BaseException:
                history.forget(token)
                raise
            self.checks.rows_scanned += len(docs)
            defer(self.judge_scan, token, start_id, op.scan_length, docs, rs, clock())
        else:
            raise ValueError(f"unknown YCSB operation {kind!r}")


class YcsbRun:
    """The workload over every durable group of `ctx` (a lane each): prepared (the table
    loaded or checked), driven, then judged. A client worker (`remote.py`) runs one on its
    share of the table: key numbers `share[0]` modulo `share[1]`."""

    def __init__(self, ctx: PhaseContext, k: YcsbKnobs, letter: str, share: tuple[int, int] = (0, 1)) -> None:
        self.ctx, self.k = ctx, k
        self.checks = _Checks()
        groups = sorted({n.group for n in ctx.targets})
        self.lanes = [_Lane(ctx, k, letter, g, self.checks, share) for g in groups]
        self.spec = self.lanes[0].spec

    async def prepare(self) -> None:
        for lane in self.lanes:
            await lane.prepare()

    def describe(self) -> dict[str, Any]:
        spec, k = self.spec, self.k
        return {
            "workload": spec.name,
            "proportions": spec.proportions,
            "request_distribution": spec.request_distribution,
            "record_count": spec.record_count,
            "field_count": spec.field_count,
            "field_length": spec.field_length,
            "collection": k.collection,
            "groups": len(self.lanes),
            "clients": sum(len(lane.clients) for lane in self.lanes),
        }

    async def drive(self) -> None:
        next_op, execute = lane_turns(self.lanes, lambda lane: lane.workload.next_operation())
        await drive(self.ctx, self.k, execute, next_op, self.ctx.seed)
        await asyncio.sleep(0)  # let deferred verdicts run
        for lane in self.lanes:
            for args in lane.late_scans:
                lane.judge_scan(*args, final=True)

    def record(self) -> None:
        ctx, spec, checks = self.ctx, self.spec, self.checks
        if "read" in spec.proportions or "readmodifywrite" in spec.proportions:
            checks.reads.record(ctx, "reads", "every read returned the value of an acknowledged (or concurrent) write")
        if "scan" in spec.proportions:
            ctx.recorder.count("rows_scanned", checks.rows_scanned)
            checks.scans.record(ctx, "scans", "every scan returned the ordered slice from its start key")

    def drawn(self) -> list[tuple[str, dict[str, int]]]:
        """Per lane: its stream's seed and the operation kinds it drew."""
        return [(lane.workload_seed, dict(lane.workload.drawn)) for lane in self.lanes]

    def expected_drawn(self, seed: str, n: int) -> dict[str, int]:
        """The kinds the first `n` draws of a stream of `seed` give."""
        return dict(drawn_kinds(self.spec, seed, n))

    def shares(self, group: int, workers: int) -> list[list[Any]]:
        """Group `group`'s table split over `workers` by key number (`k % workers`), as `[id,
        props]`; a worker's inserts continue its own numbers, so one may have run ahead."""
        data = self.ctx.models[group].data.get(self.k.collection, {})
        workload = self.lanes[0].workload
        out: list[list[Any]] = [[] for _ in range(workers)]
        keys: dict[Any, str] = {props.get(KEY_FIELD): id_ for id_, props in data.items()}
        limit, keynum = workers * (len(keys) + 1), 0
        while keys and keynum < limit:
            found = keys.pop(workload.key_name(keynum), None)
            if found is not None:
                out[keynum % workers].append([found, data[found]])
            keynum += 1
        self.ctx.require(
            "every record of the YCSB table has a key number",
            not keys,
            f"group {group}: {len(keys)} records whose key is none of user(0..{limit - 1}), e.g. {list(keys)[:2]}",
        )
        return out


def _worker_mix(letter: str) -> Any:
    def build(ctx: PhaseContext, knobs: dict[str, Any], share: tuple[int, int]) -> YcsbRun:
        """A client worker's share of the workload (`remote.MixJob`): key numbers `share[0]`
        modulo `share[1]`, its records those in its models."""
        return YcsbRun(ctx, YcsbKnobs(**knobs), letter, share)

    return build


WORKER_MIXES = {letter: _worker_mix(letter) for letter in "abcdf"}


async def run_ycsb(ctx: PhaseContext, k: YcsbKnobs, letter: str) -> None:
    if k.processes and letter not in WORKER_MIXES:
        raise Unsupported(f"ycsb-{letter} on workers (processes > 0): a scan's slice crosses the workers' key shares")
    mix = YcsbRun(ctx, k, letter)
    if k.processes:
        for lane in mix.lanes:  # load the table (unmeasured) unless an earlier phase did; a
            if not lane.existing:  # table left by workers is checked by each on its share
                await lane.prepare()
    else:
        await mix.prepare()
    checks = mix.checks
    if checks.records_loaded:
        ctx.recorder.extra["ycsb_load_s"] = round(checks.load_s, 3)
    ctx.recorder.count("records_loaded", checks.records_loaded)
    ctx.recorder.extra["ycsb"] = mix.describe()
    if k.processes:
        await remote.run_on_workers(ctx, k, mix, f"{__name__}:WORKER_MIXES.{letter}")
        return
    await mix.drive()
    mix.record()
    await verify_final_states(ctx, mix.lanes, k.collection)


def _phase(letter: str) -> PhaseSpec:
    spec = WORKLOADS[letter]
    ops = " / ".join(f"{op} {p:.0%}" for op, p in spec.proportions.items())

    async def run(ctx: PhaseContext, k: YcsbKnobs) -> None:
        await run_ycsb(ctx, k, letter)

    needs = ["create", "get", "fetch"]
    if "update" in spec.proportions or "readmodifywrite" in spec.proportions:
        needs.append("update")
    if "scan" in spec.proportions:
        needs.append("order_by")
    return register_phase(
        PhaseSpec(
            name=spec.name,
            summary=f"YCSB workload {letter.upper()} ({spec.description}): {ops}, {spec.request_distribution}; "
            f"{'scans' if 'scan' in spec.proportions else 'reads'} and final state checked",
            run=run,
            knobs=YcsbKnobs,
            needs=tuple(needs),
            targets=("durable", "ephemeral"),
            metrics=tuple(spec.proportions),  # one latency per operation kind
        )
    )


PHASES = {letter: _phase(letter) for letter in "abcdef"}

__all__ = ["KEY_FIELD", "PHASES", "YcsbKnobs", "YcsbRun", "run_ycsb"]
