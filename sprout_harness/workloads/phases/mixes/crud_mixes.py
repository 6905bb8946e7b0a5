"""CRUD operation mixes: weights, named presets, a pool of live keys, a deterministic op stream.

Presets (create / read / update / delete, in percent):

| preset        | create | read | update | delete | writes : reads |
|---------------|--------|------|--------|--------|----------------|
| `write-heavy` | 30     | 10   | 50     | 10     | 90 : 10        |
| `read-heavy`  | 4      | 90   | 5      | 1      | 10 : 90        |
| `balanced`    | 25     | 25   | 25     | 25     | 75 : 25        |

`balanced` weighs the four operations equally. Creates outweigh deletes in the other two
presets so the dataset does not drain during a long run.

Keys come from the system under test (a create returns the new id), so a `KeyPool` holds
the ids that exist: the executor adds an id once its create succeeded; a delete takes its
key out of the pool when the operation is generated, so no later operation targets it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from sprout_harness.load.distributions import DiscreteGenerator, ScrambledZipfianGenerator, rng_for

CrudKind = Literal["create", "read", "update", "delete"]
KINDS: tuple[CrudKind, ...] = ("create", "read", "update", "delete")


@dataclass(frozen=True)
class CrudMix:
    """Relative weights of the four operations (any non-negative numbers, not all zero)."""

    create: float
    read: float
    update: float
    delete: float
    name: str = "custom"

    def __post_init__(self) -> None:
        ws = self.weights()
        bad = {k: w for k, w in ws.items() if not isinstance(w, (int, float)) or w < 0}
        if bad:
            raise ValueError(f"crud mix {self.name!r}: weights must be numbers >= 0, got {bad}")
        if sum(ws.values()) <= 0:
            raise ValueError(f"crud mix {self.name!r}: at least one weight must be positive")

    def weights(self) -> dict[str, float]:
        return {"create": self.create, "read": self.read, "update": self.update, "delete": self.delete}

    def fractions(self) -> dict[str, float]:
        ws = self.weights()
        total = sum(ws.values())
        return {k: w / total for k, w in ws.items()}


PRESETS: dict[str, CrudMix] = {
    "write-heavy": CrudMix(30, 10, 50, 10, "write-heavy"),
    "read-heavy": CrudMix(4, 90, 5, 1, "read-heavy"),
    "balanced": CrudMix(25, 25, 25, 25, "balanced"),
}


def crud_mix(spec: str | Mapping[str, float] | CrudMix) -> CrudMix:
    """A preset name, a `{create, read, update, delete}` weight mapping, or a CrudMix."""
    if isinstance(spec, CrudMix):
        return spec
    if isinstance(spec, str):
        mix = PRESETS.get(spec)
        if mix is None:
            raise ValueError(f"unknown crud preset {spec!r}; presets: {', '.join(PRESETS)} (or give weights)")
        return mix
    unknown = set(spec) - set(KINDS)
    if unknown:
        raise ValueError(f"crud mix: unknown operations {sorted(unknown)}; use {', '.join(KINDS)}")
    return CrudMix(*(spec.get(k, 0) for k in KINDS), name="custom")


class KeyPool:
    """Ids that exist, with O(1) add, remove and random choice (swap-remove list + index)."""

    def __init__(self, keys: list[str] | None = None) -> None:
        self._keys: list[str] = []
        self._pos: dict[str, int] = {}
        for k in keys or ():
            self.add(k)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._pos

    def add(self, key: str) -> None:
        if key not in self._pos:
            self._pos[key] = len(self._keys)
            self._keys.append(key)

    def discard(self, key: str) -> None:
        i = self._pos.pop(key, None)
        if i is None:
            return
        last = self._keys.pop()
        if i < len(self._keys):
            self._keys[i] = last
            self._pos[last] = i

    def at(self, index: int) -> str:
        return self._keys[index]


@dataclass(frozen=True, slots=True)
class CrudOperation:
    """One CRUD operation: `key` for read/update/delete, `props` for create/update."""

    op: CrudKind
    key: str | None = None
    props: dict[str, Any] | None = None


class CrudWorkload:
    """Deterministic stream of CRUD operations over a `KeyPool`.

    `key_distribution` "uniform" picks any live key; "zipfian" hashes a scrambled zipfian
    draw onto the pool (a few keys are hot; positions shift as keys are deleted). An
    operation needing a key while the pool is empty becomes a create."""

    def __init__(
        self,
        mix: str | Mapping[str, float] | CrudMix,
        pool: KeyPool,
        *,
        seed: int = 0,
        key_distribution: Literal["uniform", "zipfian"] = "uniform",
        field_count: int = 4,
    ) -> None:
        self.mix = crud_mix(mix)
        self.pool = pool
        self._ops: DiscreteGenerator[CrudKind] = DiscreteGenerator(
            list(self.mix.weights().items()), rng_for(seed, "crud-op")
        )  # type: ignore[arg-type]
        self._rng = rng_for(seed, "crud-key")
        self._vals = rng_for(seed, "crud-value")
        if key_distribution == "zipfian":
            self._zipf: ScrambledZipfianGenerator | None = ScrambledZipfianGenerator(0, 2**40, self._rng)
        elif key_distribution == "uniform":
            self._zipf = None
        else:
            raise ValueError(f"crud key distribution {key_distribution!r}: use uniform or zipfian")
        self.field_count = field_count
        self._seq = 0
        self.drawn: Counter[str] = Counter()  # operation kinds as the weighted draw gave them
        self.converted = 0  # draws that needed a key while the pool was empty: run as creates

    def _index(self) -> int:
        n = len(self.pool)
        return (self._zipf.next_value() if self._zipf is not None else int(self._rng.random() * n)) % n

    def props(self) -> dict[str, Any]:
        """Document properties: a sequence number, a category and numbers to query on."""
        self._seq += 1
        r = self._vals
        p: dict[str, Any] = {"seq": self._seq, "cat": f"c{r.randrange(10)}", "n": r.randrange(1_000_000)}
        for i in range(max(0, self.field_count - 3)):
            p[f"f{i}"] = r.random()
        return p

    def next_operation(self) -> CrudOperation:
        op = self._ops.next_value()
        self.drawn[op] += 1
        if op == "create" or not len(self.pool):
            self.converted += op != "create"
            return CrudOperation("create", None, self.props())
        key = self.pool.at(self._index())
        if op == "read":
            return CrudOperation("read", key)
        if op == "update":  # partial update: one property
            return CrudOperation("update", key, {"n": self._vals.randrange(1_000_000)})
        self.pool.discard(key)
        return CrudOperation("delete", key)


def drawn_kinds(mix: str | Mapping[str, float] | CrudMix, seed: int, n: int) -> Counter[str]:
    """The kinds of the first `n` operations a `CrudWorkload` of `seed` draws (before an empty
    pool turns a draw into a create): what a worker that drew `n` must report."""
    ops: DiscreteGenerator[str] = DiscreteGenerator(list(crud_mix(mix).weights().items()), rng_for(seed, "crud-op"))
    return Counter(ops.next_value() for _ in range(n))


__all__ = ["CrudMix", "CrudOperation", "CrudWorkload", "KINDS", "KeyPool", "PRESETS", "crud_mix", "drawn_kinds"]
