"""Shared payloads, sizes, seeded randomness and fixtures for every asv benchmark module.

Every figure is meant to be read as a ratio to its anchor, so both sides use the *same*
payloads: `album_docs(n, seed)` (dicts), `album_payloads(n, seed)` (the same dicts
orjson-encoded to exactly 100 bytes, with their keys) and `album_props(n)` (the same as
entity properties). They come from the harness (`sprout_harness.workloads.anchors`), whose
asv phases and raw anchors use them too.

Sizes follow `SPROUT_BENCH_SCALE` (`tiny` for tests, `quick`, `full` = default): use
`scale()` (one table, `SCALES`) rather than literals so the integration tests can shrink
every workload at once. Random draws go through `rng(seed)` (fixed seeds: a figure is
measured on the same data in every run and commit).

Conventions for benchmark modules (asv 0.6 / asv-runner 0.3):
- every figure is lower-is-better: `track_` methods return latencies or time per op with
  `unit` set (`UNIT_US`), never throughput;
- a workload that reports several figures runs once in `setup_cache` (not parameterized;
  its return value is pickled and must not be None) and `track_` methods read its results;
- a combination that cannot run here raises `NotImplementedError` in `setup` -> shown as n/a
  (`postgres_dsn_or_skip()`, `require()`); `setup_cache` records the reason instead of raising
  (see `Skipped`), because a failing `setup_cache` fails every benchmark that shares it;
- the benchmark *files* come from the working tree but the *project* is installed per
  commit, so import project modules inside functions via `require()`: older commits that lack
  a module then show n/a instead of breaking discovery of the whole suite.
"""

from __future__ import annotations

import importlib
import os
import random
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence, overload

if TYPE_CHECKING:
    import numpy as np

ENV_SCALE = "SPROUT_BENCH_SCALE"
ENV_PG_DSN = "SPROUT_PG_DSN"
COLLECTION = "albums"
DEFAULT_SEED = 20261126
UNIT_US = "us"


# --- sizes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """Workload sizes for one `SPROUT_BENCH_SCALE` level, every module's in one table."""

    name: str
    # the anchors and the album-payload workloads
    records: int  # records per batch (puts, inserts, creates)
    samples: int  # latency samples per distribution (round trips, hops)
    repeats: int  # independent repetitions of a batch; the median is reported
    album_batch: int  # entities per create call in the album-payload workloads
    # the workload families (bench_*)
    dataset: int  # seeded albums / pets
    create: int  # entities of the harness's create phase
    get_ops: int
    fetch_ops: int
    live_subscribers: int
    live_ops: int
    writer_ops: int
    churn_subscribers: int
    churn_cycles: int
    lag_samples: int
    idle_queries: int
    fanout_commits: int  # commits per fan-out measurement (bench_fanout)
    wire_connections: int  # WebSocket connections at the last step of bench_realtime
    # a gate (paired measurements): samples per gated figure, store ops per measurement
    gate_repeats: int
    gate_records: int
    gate_gets: int
    gate_lag_updates: int
    monitor_ops: int  # gets and writes of the monitored run (monitor_overhead)


SCALES: dict[str, Scale] = {
    "tiny": Scale(
        "tiny",
        records=200,
        samples=200,
        repeats=2,
        album_batch=100,
        dataset=300,
        create=300,
        get_ops=100,
        fetch_ops=24,
        live_subscribers=2,
        live_ops=10,
        writer_ops=200,
        churn_subscribers=2,
        churn_cycles=1,
        lag_samples=30,
        idle_queries=20,
        fanout_commits=30,
        wire_connections=20,
        gate_repeats=3,
        gate_records=200,
        gate_gets=100,
        gate_lag_updates=20,
        monitor_ops=400,
    ),
    "quick": Scale(
        "quick",
        records=2_000,
        samples=1_000,
        repeats=3,
        album_batch=500,
        dataset=600,
        create=600,
        get_ops=200,
        fetch_ops=36,
        live_subscribers=3,
        live_ops=20,
        writer_ops=400,
        churn_subscribers=3,
        churn_cycles=1,
        lag_samples=100,
        idle_queries=40,
        fanout_commits=100,
        wire_connections=200,
        gate_repeats=9,
        gate_records=1000,
        gate_gets=1000,
        gate_lag_updates=60,
        monitor_ops=3_000,
    ),
    "full": Scale(
        "full",
        records=10_000,
        samples=5_000,
        repeats=5,
        album_batch=500,
        dataset=3000,
        create=4000,
        get_ops=1000,
        fetch_ops=200,
        live_subscribers=4,
        live_ops=150,
        writer_ops=3000,
        churn_subscribers=6,
        churn_cycles=4,
        lag_samples=1000,
        idle_queries=200,
        fanout_commits=300,
        wire_connections=1000,
        gate_repeats=15,
        gate_records=2000,
        gate_gets=1000,
        gate_lag_updates=100,
        monitor_ops=10_000,
    ),
}


def scale() -> Scale:
    """The sizes selected by `SPROUT_BENCH_SCALE` (default `full`)."""
    name = os.environ.get(ENV_SCALE, "full").strip().lower() or "full"
    try:
        return SCALES[name]
    except KeyError:
        raise ValueError(f"{ENV_SCALE}={name!r} is not one of {sorted(SCALES)}") from None


# --- randomness and payloads -------------------------------------------------------------


@overload
def rng(seed: int = ..., *, numpy: Literal[False] = ...) -> random.Random: ...
@overload
def rng(seed: int = ..., *, numpy: Literal[True]) -> np.random.Generator: ...
def rng(seed: int = DEFAULT_SEED, *, numpy: bool = False) -> random.Random | np.random.Generator:
    """The seeded generator every benchmark module draws from: `random.Random(seed)`, or
    numpy's `default_rng(seed)` with `numpy=True`. Fixed seeds keep the data of a figure
    the same from run to run and commit to commit."""
    if numpy:
        import numpy as np

        return np.random.default_rng(seed)
    return random.Random(seed)


def _anchors() -> ModuleType:
    return require("sprout_harness.workloads.anchors")


def album_docs(n: int, seed: int | None = None) -> tuple[dict[str, Any], ...]:
    """`n` deterministic album dicts of 100 encoded bytes (read-only: cached and shared)."""
    a = _anchors()
    return a.album_docs(n, a.ALBUM_SEED if seed is None else seed)


def album_payloads(n: int, seed: int | None = None) -> tuple[tuple[bytes, bytes], ...]:
    """`n` (key, value) pairs: each album's key and its orjson encoding."""
    a = _anchors()
    return a.album_payloads(n, a.ALBUM_SEED if seed is None else seed)


def album_props(n: int) -> list[dict[str, Any]]:
    """`album_docs(n)` as entity properties (`id` renamed `no`: same encoded size)."""
    return _anchors().album_props(n)


def shuffled(items: Sequence[Any], seed: int = DEFAULT_SEED) -> list[Any]:
    """A deterministic permutation of `items` (random-order reads)."""
    out = list(items)
    rng(seed ^ 0x5EED).shuffle(out)
    return out


# --- skipping ----------------------------------------------------------------------------


def postgres_dsn_or_skip() -> str:
    """The DSN in SPROUT_PG_DSN; raises NotImplementedError (asv shows n/a) when it is unset."""
    dsn = os.environ.get(ENV_PG_DSN, "").strip()
    if not dsn:
        raise NotImplementedError(
            f"no PostgreSQL for this run: set {ENV_PG_DSN} (`make bench-asv` starts a throwaway cluster)"
        )
    require("psycopg")
    return dsn


def require(module: str) -> ModuleType:
    """Import `module` or raise NotImplementedError (n/a): e.g. a commit that predates it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise NotImplementedError(f"{module} is not importable in this environment: {exc}") from None


@dataclass(frozen=True)
class Skipped:
    """What `setup_cache` returns for a workload that cannot run; `setup` re-raises it as n/a."""

    reason: str

    def raise_(self) -> None:
        raise NotImplementedError(self.reason)


def skip_if_skipped(cache: Any) -> None:
    """Call first in `setup(self, cache)`: turns a `Skipped` cache (or entry) into n/a."""
    if isinstance(cache, Skipped):
        cache.raise_()


def cache_or_skip(build: Callable[[], Any]) -> Any:
    """Run `build()` for `setup_cache`, turning NotImplementedError into a `Skipped` value."""
    try:
        return build()
    except NotImplementedError as exc:
        return Skipped(str(exc))


# --- measuring ---------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (`q` in 0..100) of a non-empty sample."""
    if not samples:
        raise ValueError("percentile of an empty sample")
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def asv_samples(values: Sequence[float]) -> dict[str, Any]:
    """What a `track_` method returns so that asv keeps *samples* and statistics for it.

    asv's runner (asv/runner.py, `_run_benchmark_single_param`) treats a benchmark result that
    is a dict with `samples` and `number` as a timing result: `Results.add_result` then
    computes the median (the value shown and stored), a 99 % confidence interval and
    quartiles from the samples, and `asv continuous`/`compare` test a change for significance
    (Mann-Whitney U with >= 7 samples a side, else non-overlapping 99 % CIs) before applying
    the factor. A plain float gets none of that: the factor alone decides. Samples are kept
    to 4 significant digits (asv prints values of unknown units unrounded).
    """
    if not values:
        raise ValueError("no samples")
    return {"samples": [float(f"{v:.4g}") for v in values], "number": 1}


def chunked_percentiles(samples: Sequence[float], q: float, chunks: int) -> list[float]:
    """The `q` percentile of each of `chunks` consecutive slices of `samples`: a percentile
    figure as several samples (the spread between slices is what asv's test needs)."""
    n = max(1, min(chunks, len(samples)))
    size = len(samples) // n
    return [percentile(samples[i * size : (i + 1) * size if i < n - 1 else len(samples)], q) for i in range(n)]


def median_us_per_op(run_batch: Callable[[], int], repeats: int) -> float:
    """Median over `repeats` of (seconds of one `run_batch()` call / ops it reports), in us/op."""
    per_op = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ops = run_batch()
        per_op.append((time.perf_counter() - t0) / ops * 1e6)
    return statistics.median(per_op)


class TempDir:
    """A temp directory removed on `cleanup()` (benchmarks run in short-lived processes)."""

    def __init__(self, prefix: str = "sprout-bench-") -> None:
        self.path = tempfile.mkdtemp(prefix=prefix)

    def sub(self, name: str) -> str:
        return os.path.join(self.path, name)

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
