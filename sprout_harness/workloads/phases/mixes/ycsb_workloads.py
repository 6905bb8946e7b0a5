"""The six YCSB core workloads (A-F) as data, and a deterministic operation stream for each.

Definitions follow YCSB's `workloads/workload[a-f]` files and `CoreWorkload` defaults:
recordcount 1000, operationcount 1000, fieldcount 10, fieldlength 100, readallfields
true, writeallfields false (an update writes one field), insertorder hashed (key
"user" + fnvhash64(keynum)), scan length uniform in [1, 100].

| workload | mix                              | request distribution |
|----------|----------------------------------|----------------------|
| A        | read 0.50 / update 0.50          | zipfian              |
| B        | read 0.95 / update 0.05          | zipfian              |
| C        | read 1.00                        | zipfian              |
| D        | read 0.95 / insert 0.05          | latest               |
| E        | scan 0.95 / insert 0.05          | zipfian (scan start) |
| F        | read 0.50 / read-modify-write 0.50 | zipfian            |

"zipfian" is YCSB's ScrambledZipfianGenerator over [0, recordcount + expected new keys),
where expected new keys = operationcount * insert proportion * 2; a drawn key not yet
inserted is drawn again, as in `CoreWorkload.nextKeynum`.
"""

from __future__ import annotations

import base64
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Literal

from sprout_harness.load.distributions import (
    AcknowledgedCounterGenerator,
    DiscreteGenerator,
    LatestGenerator,
    ScrambledZipfianGenerator,
    UniformGenerator,
    ZipfianGenerator,
    fnvhash64,
    rng_for,
)

OpKind = Literal["read", "update", "insert", "scan", "readmodifywrite"]
Distribution = Literal["zipfian", "uniform", "latest"]


@dataclass(frozen=True)
class YcsbSpec:
    """One core workload: operation proportions, request distribution, record shape."""

    name: str
    proportions: dict[str, float]  # op kind -> proportion (sums to 1)
    request_distribution: Distribution
    record_count: int = 1000
    operation_count: int = 1000
    field_count: int = 10
    field_length: int = 100
    min_scan_length: int = 1
    max_scan_length: int = 100
    scan_length_distribution: Literal["uniform", "zipfian"] = "uniform"
    ordered_inserts: bool = False  # YCSB insertorder=hashed by default
    description: str = ""

    def with_options(self, **changes: Any) -> YcsbSpec:
        """A copy with other counts or knobs (e.g. `record_count=100_000`)."""
        return replace(self, **changes)

    @property
    def insert_proportion(self) -> float:
        return self.proportions.get("insert", 0.0)


WORKLOADS: dict[str, YcsbSpec] = {
    "a": YcsbSpec(
        "ycsb-a",
        {"read": 0.5, "update": 0.5},
        "zipfian",
        description="update heavy: session store recording recent actions",
    ),
    "b": YcsbSpec("ycsb-b", {"read": 0.95, "update": 0.05}, "zipfian", description="read mostly: photo tagging"),
    "c": YcsbSpec("ycsb-c", {"read": 1.0}, "zipfian", description="read only: user profile cache"),
    "d": YcsbSpec("ycsb-d", {"read": 0.95, "insert": 0.05}, "latest", description="read latest: user status updates"),
    "e": YcsbSpec(
        "ycsb-e", {"scan": 0.95, "insert": 0.05}, "zipfian", description="short ranges: threaded conversations"
    ),
    "f": YcsbSpec(
        "ycsb-f", {"read": 0.5, "readmodifywrite": 0.5}, "zipfian", description="read-modify-write: user database"
    ),
}


def workload_spec(name: str, **options: Any) -> YcsbSpec:
    """`workload_spec("a")` or `("ycsb-a")`, with optional overrides (`record_count=...`)."""
    key = name.lower().removeprefix("ycsb-").removeprefix("workload")
    spec = WORKLOADS.get(key)
    if spec is None:
        raise ValueError(f"unknown YCSB workload {name!r}; known: {', '.join(s.name for s in WORKLOADS.values())}")
    return spec.with_options(**options) if options else spec


@dataclass(frozen=True, slots=True)
class YcsbOperation:
    """One operation: `op`, its key (and key number); `fields` for update/insert/rmw; `scan_length` for scans."""

    op: OpKind
    key: str
    keynum: int
    fields: dict[str, str] | None = None
    read_fields: tuple[str, ...] | None = None  # None: all fields (readallfields=true)
    scan_length: int = 0


@dataclass
class YcsbWorkload:
    """Operation stream of one spec: `records()` for the load phase, `next_operation()` for the run.

    `acknowledge` controls when an insert's key becomes readable: "immediate" (at
    generation: fully deterministic) or "on-ack" (after `acknowledge(op)`, as YCSB's
    AcknowledgedCounterGenerator, for concurrent workers that must not read a key whose
    insert is still in flight)."""

    spec: YcsbSpec
    seed: int = 0
    acknowledge_mode: Literal["immediate", "on-ack"] = "immediate"
    # a share of a table that several clients split: key number k of this stream is the
    # table's key number k * key_stride + key_offset (1, 0: the whole table)
    key_stride: int = 1
    key_offset: int = 0
    _ops: DiscreteGenerator[str] = field(init=False, repr=False)
    drawn: Counter[str] = field(init=False, repr=False, default_factory=Counter)

    def __post_init__(self) -> None:
        s = self.spec
        if s.record_count < 1:
            raise ValueError(f"{s.name}: record_count must be >= 1, got {s.record_count}")
        total = sum(s.proportions.values())
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"{s.name}: operation proportions sum to {total}, not 1: {s.proportions}")
        self._ops = DiscreteGenerator(sorted(s.proportions.items()), rng_for(self.seed, "operation"))
        # inserts continue after the loaded records, which count as acknowledged
        self.insert_sequence = AcknowledgedCounterGenerator(s.record_count)
        expected_new = int(s.operation_count * s.insert_proportion * 2.0)
        rng = rng_for(self.seed, "key")
        if s.request_distribution == "zipfian":
            self._keys: Any = ScrambledZipfianGenerator(0, s.record_count + expected_new - 1, rng)
        elif s.request_distribution == "uniform":
            self._keys = UniformGenerator(0, s.record_count - 1, rng)
        elif s.request_distribution == "latest":
            self._keys = LatestGenerator(self.insert_sequence, rng)
        else:
            raise ValueError(f"{s.name}: unknown request distribution {s.request_distribution!r}")
        srng = rng_for(self.seed, "scan")
        self._scan = (
            UniformGenerator(s.min_scan_length, s.max_scan_length, srng)
            if s.scan_length_distribution == "uniform"
            else ZipfianGenerator(s.min_scan_length, s.max_scan_length, srng)
        )
        self._field = UniformGenerator(0, s.field_count - 1, rng_for(self.seed, "field"))
        self._value_rng = rng_for(self.seed, "value")
        self.field_names = tuple(f"field{i}" for i in range(s.field_count))

    # --- keys and values -----------------------------------------------------------

    def key_name(self, keynum: int) -> str:
        """YCSB's `buildKeyName`: "user" + the number, hashed unless inserts are ordered (the
        table's key number, when this stream has a share of it)."""
        keynum = keynum * self.key_stride + self.key_offset
        return "user" + str(keynum if self.spec.ordered_inserts else fnvhash64(keynum))

    def _value(self) -> str:
        n = self.spec.field_length
        return base64.b64encode(self._value_rng.randbytes((n * 3 + 3) // 4)).decode()[:n]

    def _all_fields(self) -> dict[str, str]:
        return {f: self._value() for f in self.field_names}

    def records(self) -> Iterator[tuple[str, dict[str, str]]]:
        """The load phase: (key, fields) for key numbers 0 .. record_count-1."""
        for k in range(self.spec.record_count):
            yield self.key_name(k), self._all_fields()

    # --- run phase -------------------------------------------------------------------

    def _next_keynum(self) -> int:
        limit = self.insert_sequence.last_value
        while True:  # CoreWorkload.nextKeynum: draw again past the last inserted key
            k = self._keys.next_value()
            if k <= limit:
                return k

    def next_operation(self) -> YcsbOperation:
        """The next operation of the stream (deterministic for a seed in "immediate" mode)."""
        op = self._ops.next_value()
        self.drawn[op] += 1
        if op == "insert":
            k = self.insert_sequence.next_value()
            if self.acknowledge_mode == "immediate":
                self.insert_sequence.acknowledge(k)
            return YcsbOperation("insert", self.key_name(k), k, fields=self._all_fields())
        k = self._next_keynum()
        key = self.key_name(k)
        if op == "read":
            return YcsbOperation("read", key, k)
        if op == "update":
            return YcsbOperation("update", key, k, fields={self.field_names[self._field.next_value()]: self._value()})
        if op == "readmodifywrite":
            return YcsbOperation(
                "readmodifywrite", key, k, fields={self.field_names[self._field.next_value()]: self._value()}
            )
        if op == "scan":
            return YcsbOperation("scan", key, k, scan_length=self._scan.next_value())
        raise ValueError(f"{self.spec.name}: unknown operation {op!r}")

    def acknowledge(self, op: YcsbOperation) -> None:
        """Mark an insert done ("on-ack" mode): its key may now be read."""
        if op.op == "insert":
            self.insert_sequence.acknowledge(op.keynum)


def drawn_kinds(spec: YcsbSpec, seed: int | str, n: int) -> Counter[str]:
    """The kinds of the first `n` operations a `YcsbWorkload` of `spec` and `seed` draws."""
    ops: DiscreteGenerator[str] = DiscreteGenerator(sorted(spec.proportions.items()), rng_for(seed, "operation"))
    return Counter(ops.next_value() for _ in range(n))


__all__ = ["drawn_kinds", "WORKLOADS", "YcsbOperation", "YcsbSpec", "YcsbWorkload", "workload_spec"]
