"""YCSB request distributions, after the published definitions.

Sources: Cooper et al., "Benchmarking Cloud Serving Systems with YCSB" (SoCC 2010), and
YCSB's core generators (site.ycsb.generator: CounterGenerator, UniformLongGenerator,
ZipfianGenerator, ScrambledZipfianGenerator, SkewedLatestGenerator, DiscreteGenerator;
site.ycsb.Utils.fnvhash64). The zipfian sampler is the algorithm of Gray et al.,
"Quickly Generating Billion-Record Synthetic Databases" (SIGMOD 1994), as YCSB has it.

Every generator draws from its own `random.Random`, so a seed fixes the whole
sequence. Generators return key *numbers*; `YcsbWorkload` turns them into key names.
"""

from __future__ import annotations

import math
import random
from typing import Generic, Sequence, TypeVar

import numpy as np

ZIPFIAN_CONSTANT = 0.99
# YCSB's ScrambledZipfianGenerator draws from a zipfian over 10^10 items (then hashes
# into the key space); zeta(10^10, 0.99) is precomputed there, as here.
SCRAMBLED_ITEM_COUNT = 10_000_000_000
SCRAMBLED_ZETAN = 26.46902820178302

_FNV_OFFSET_BASIS_64 = 0xCBF29CE484222325
_FNV_PRIME_64 = 1099511628211
_MASK64 = (1 << 64) - 1

T = TypeVar("T")


def rng_for(seed: int | str, stream: str) -> random.Random:
    """An independent, reproducible random stream per (seed, purpose)."""
    return random.Random(f"{seed}/{stream}")  # str seeds are hashed with SHA-512: stable across runs


def fnvhash64(val: int) -> int:
    """YCSB's `Utils.fnvhash64`: FNV-1a over the 8 low-order bytes, as a Java long, then `Math.abs`."""
    h = _FNV_OFFSET_BASIS_64
    for _ in range(8):
        h ^= val & 0xFF
        val >>= 8
        h = (h * _FNV_PRIME_64) & _MASK64
    if h >= 1 << 63:  # Java's signed long
        h -= 1 << 64
    return abs(h)


def zeta(n: int, theta: float, start: int = 0, initial: float = 0.0) -> float:
    """sum_{i=start+1}^{n} 1/i^theta + initial (YCSB's incremental `zeta(st, n, theta, initialsum)`)."""
    total = initial
    chunk = 1 << 20
    for lo in range(start + 1, n + 1, chunk):  # vectorised in chunks: 10^7 items in well under a second
        i = np.arange(lo, min(n, lo + chunk - 1) + 1, dtype=np.float64)
        total += float(np.sum(i**-theta))
    return total


class CounterGenerator:
    """Sequential numbers from `start` (YCSB's insert key sequence). `last_value` is the last one handed out."""

    def __init__(self, start: int = 0) -> None:
        self._next = start

    def next_value(self) -> int:
        v = self._next
        self._next += 1
        return v

    @property
    def last_value(self) -> int:
        return self._next - 1


class AcknowledgedCounterGenerator(CounterGenerator):
    """A counter whose `last_value` only advances over a contiguous run of acknowledged values.

    YCSB's workload D reads "latest" keys from this counter so a reader never picks a key
    whose insert is still in flight."""

    def __init__(self, start: int = 0) -> None:
        super().__init__(start)
        self._limit = start - 1
        self._acked: set[int] = set()

    def acknowledge(self, value: int) -> None:
        self._acked.add(value)
        while self._limit + 1 in self._acked:
            self._limit += 1
            self._acked.discard(self._limit)

    @property
    def last_value(self) -> int:
        return self._limit


class UniformGenerator:
    """Integers uniform in [lb, ub] inclusive (YCSB's UniformLongGenerator)."""

    def __init__(self, lb: int, ub: int, rng: random.Random) -> None:
        if ub < lb:
            raise ValueError(f"uniform generator: upper bound {ub} < lower bound {lb}")
        self.lb, self.ub, self._rng = lb, ub, rng

    def next_value(self) -> int:
        return self.lb + int(self._rng.random() * (self.ub - self.lb + 1))


class ZipfianGenerator:
    """Zipfian over [min, max]: item `min` most popular, then `min+1`, ... (Gray et al. via YCSB).

    P(rank k) = 1 / (k^theta * zeta(n, theta)). `next_value(item_count)` lets the item
    count grow between calls (zeta is extended incrementally, as in YCSB)."""

    def __init__(
        self, lb: int, ub: int, rng: random.Random, theta: float = ZIPFIAN_CONSTANT, zetan: float | None = None
    ) -> None:
        if ub < lb:
            raise ValueError(f"zipfian generator: upper bound {ub} < lower bound {lb}")
        if not 0 < theta < 1:
            raise ValueError(f"zipfian constant must be in (0, 1), got {theta} (YCSB uses 0.99)")
        self.base = lb
        self.items = ub - lb + 1
        self.theta = theta
        self._rng = rng
        self.zeta2theta = zeta(2, theta)
        self.alpha = 1.0 / (1.0 - theta)
        self.zetan = zetan if zetan is not None else zeta(self.items, theta)
        self.count_for_zeta = self.items
        self.eta = self._eta(self.items)

    def _eta(self, n: int) -> float:
        return (1 - math.pow(2.0 / n, 1 - self.theta)) / (1 - self.zeta2theta / self.zetan)

    def next_value(self, item_count: int | None = None) -> int:
        n = self.items if item_count is None else item_count
        if n != self.count_for_zeta:
            if n > self.count_for_zeta:
                self.zetan = zeta(n, self.theta, self.count_for_zeta, self.zetan)
            else:  # YCSB refuses to shrink by default; recomputing is exact, only slower
                self.zetan = zeta(n, self.theta)
            self.count_for_zeta = n
            self.eta = self._eta(n)
        u = self._rng.random()
        uz = u * self.zetan
        if uz < 1.0:
            return self.base
        if uz < 1.0 + math.pow(0.5, self.theta):
            return self.base + 1
        # Gray's formula reaches n itself as u -> 1; the last rank is n - 1
        return self.base + min(int(n * math.pow(self.eta * u - self.eta + 1, self.alpha)), n - 1)


class ScrambledZipfianGenerator:
    """Zipfian popularity spread over [min, max] by hashing (YCSB's default for workloads A, B, C, E, F).

    Draws rank r from a zipfian over 10^10 items and returns `min + fnvhash64(r) % n`, so
    popular keys are scattered over the key space instead of clustered at its start."""

    def __init__(self, lb: int, ub: int, rng: random.Random, theta: float = ZIPFIAN_CONSTANT) -> None:
        if ub < lb:
            raise ValueError(f"scrambled zipfian generator: upper bound {ub} < lower bound {lb}")
        self.min, self.max = lb, ub
        self.item_count = ub - lb + 1
        zetan = SCRAMBLED_ZETAN if theta == ZIPFIAN_CONSTANT else None
        # With another constant, zeta over 10^10 items would take minutes: YCSB's own
        # fallback is the same slow computation; we bound it to the key space instead.
        items = SCRAMBLED_ITEM_COUNT if zetan is not None else max(self.item_count, 2)
        self._gen = ZipfianGenerator(0, items - 1, rng, theta, zetan)

    def next_value(self) -> int:
        return self.min + fnvhash64(self._gen.next_value()) % self.item_count


class LatestGenerator:
    """Skewed towards the most recently inserted keys (YCSB's SkewedLatestGenerator, workload D).

    Returns `last - z` where `last` is the counter's last value and z is zipfian over
    [0, last]: the newest key is the most popular."""

    def __init__(self, basis: CounterGenerator, rng: random.Random, theta: float = ZIPFIAN_CONSTANT) -> None:
        self.basis = basis
        self._zipf = ZipfianGenerator(0, max(basis.last_value, 1), rng, theta)

    def next_value(self) -> int:
        last = self.basis.last_value
        if last <= 0:
            return 0
        return max(0, last - self._zipf.next_value(last))


class DiscreteGenerator(Generic[T]):
    """Picks one of several values with given weights (YCSB's operation chooser)."""

    def __init__(self, choices: Sequence[tuple[T, float]], rng: random.Random) -> None:
        self.choices = [(v, float(w)) for v, w in choices if w > 0]
        if not self.choices:
            raise ValueError("discrete generator: no value has a positive weight")
        if any(w < 0 for _, w in choices):
            raise ValueError(f"discrete generator: negative weight in {list(choices)}")
        self.total = sum(w for _, w in self.choices)
        self._rng = rng

    def next_value(self) -> T:
        val = self._rng.random() * self.total
        for v, w in self.choices:
            if val < w:
                return v
            val -= w
        return self.choices[-1][0]


__all__ = [
    "AcknowledgedCounterGenerator",
    "CounterGenerator",
    "DiscreteGenerator",
    "LatestGenerator",
    "SCRAMBLED_ITEM_COUNT",
    "SCRAMBLED_ZETAN",
    "ScrambledZipfianGenerator",
    "UniformGenerator",
    "ZIPFIAN_CONSTANT",
    "ZipfianGenerator",
    "fnvhash64",
    "rng_for",
    "zeta",
]
