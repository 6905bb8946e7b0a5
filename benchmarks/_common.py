"""Shared payloads, sizes and fixtures for every asv benchmark module (anchors and loam alike).

Every loam figure is meant to be read as a ratio to its anchor, so both sides must use the
*same* payloads: `album_docs(n, seed)` (dicts) and `album_payloads(n, seed)` (the same dicts
orjson-encoded to exactly `PAYLOAD_BYTES` bytes, with their `album_key` keys).

Sizes follow `SPROUT_BENCH_SCALE` (`tiny` for tests, `quick`, `full` = default): use
`scale()` rather than literals so the integration tests can shrink every workload at once.

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

import functools
import importlib
import os
import random
import shutil
import statistics
import string
import tempfile
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Sequence

import orjson

ENV_SCALE = "SPROUT_BENCH_SCALE"
ENV_PG_DSN = "SPROUT_PG_DSN"
PAYLOAD_BYTES = 100
COLLECTION = "albums"
DEFAULT_SEED = 20261126
UNIT_US = "us"


# --- sizes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """Workload sizes for one `SPROUT_BENCH_SCALE` level."""

    name: str
    records: int  # records per batch (puts, inserts, creates)
    samples: int  # latency samples per distribution (round trips, hops)
    repeats: int  # independent repetitions of a batch; the median is reported


SCALES: dict[str, Scale] = {
    "tiny": Scale("tiny", records=200, samples=200, repeats=2),
    "quick": Scale("quick", records=2_000, samples=1_000, repeats=3),
    "full": Scale("full", records=10_000, samples=5_000, repeats=5),
}


def scale() -> Scale:
    """The sizes selected by `SPROUT_BENCH_SCALE` (default `full`)."""
    name = os.environ.get(ENV_SCALE, "full").strip().lower() or "full"
    try:
        return SCALES[name]
    except KeyError:
        raise ValueError(f"{ENV_SCALE}={name!r} is not one of {sorted(SCALES)}") from None


# --- payloads ----------------------------------------------------------------------------

_WORDS = (
    "amber blue cedar delta ember fern glass harbor iris juniper kelp lumen moss north "
    "ochre pine quartz river slate tide umber violet willow xenon yarrow zephyr"
).split()


def album_key(i: int) -> bytes:
    """Key of album number `i` (fixed width, so key order = insertion order)."""
    return b"album/%08d" % i


def album_id(i: int) -> str:
    """Entity id of album number `i` (the string form of `album_key`'s suffix)."""
    return f"alb{i:08d}"


@functools.lru_cache(maxsize=16)
def album_docs(n: int, seed: int = DEFAULT_SEED) -> tuple[dict[str, Any], ...]:
    """`n` deterministic album dicts, each orjson-encoding to exactly PAYLOAD_BYTES bytes.

    Treat the result as read-only: it is cached and shared between callers.
    """
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        doc: dict[str, Any] = {
            "id": album_id(i),
            "artist": rng.choice(_WORDS).title(),
            "year": rng.randint(1955, 2025),
            "tracks": rng.randint(1, 30),
            "rating": rng.randint(0, 50) / 10,
            "title": "",
        }
        pad = PAYLOAD_BYTES - len(orjson.dumps(doc))
        doc["title"] = "".join(rng.choice(string.ascii_lowercase) for _ in range(pad))
        docs.append(doc)
    return tuple(docs)


@functools.lru_cache(maxsize=16)
def album_payloads(n: int, seed: int = DEFAULT_SEED) -> tuple[tuple[bytes, bytes], ...]:
    """`n` (key, value) pairs: `album_key(i)` and the orjson encoding of `album_docs(n, seed)[i]`."""
    return tuple((album_key(i), orjson.dumps(doc)) for i, doc in enumerate(album_docs(n, seed)))


def shuffled(items: Sequence[Any], seed: int = DEFAULT_SEED) -> list[Any]:
    """A deterministic permutation of `items` (random-order reads)."""
    out = list(items)
    random.Random(seed ^ 0x5EED).shuffle(out)
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
    return [percentile(samples[i * size:(i + 1) * size if i < n - 1 else len(samples)], q) for i in range(n)]


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
