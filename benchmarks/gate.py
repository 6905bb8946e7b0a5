"""The pull-request gate: loam figures over a raw anchor measured right next to them, each
returned to asv as a *sample* of paired ratios so `asv continuous` can test it statistically.

Why (measured, docs/asv.md "The gate"): the absolute `track_` figures of this suite are single
values per commit. asv keeps no samples for them, so `asv continuous --factor 1.2` flags any
one-off wobble beyond 20 % (25 of 61 "slower" between two commits that differ only in a doc).
Two things are wrong with such a figure as a gate:

- it is one sample: asv cannot tell a shift from noise (it only tests benchmarks that carry
  samples; see `_samples`);
- it is absolute: a busier or slower machine (2 shared cores, other jobs) moves every figure
  of one commit's run together (the asyncio hop read 3.9 us quiet and 8.2 us busy).

So each gated figure here is a *ratio* (loam time per op / anchor time per op, lower is
better), and each of its `gate_repeats` samples pairs loam and its anchor measured right next
to each other in the same process and event loop, each side the fastest of `PASSES` passes
spread over the whole measurement: load that slows both cancels in the ratio, and a burst
that hits one pass does not make the sample. A `track_` method returns
`{"samples": [...], "number": 1}`: asv's runner (asv/runner.py,
`_run_benchmark_single_param`) treats any benchmark result that is a dict with `samples` and
`number` as a timing result, so `Results.add_result` computes stats (median, 99 % CI) from the
samples, `asv continuous` records them, and `asv compare`'s `_is_result_better` requires a
Mann-Whitney U difference (p < 0.002) on top of the factor. The value shown is the median.
With fewer than 7 samples per side that test can never reach p < 0.002 (two-sided exact
U test, complete separation at 6 + 6 gives p = 2/924), hence `gate_repeats` >= 9 in
`_common.SCALES` (15 at full scale).

The gated figures, all on loam's LevelDB engine (no PostgreSQL needed, so a pull request's
gate cannot turn n/a on a machine without it):

| benchmark | loam (per op) | anchor (per op), same process, right next to it |
|---|---|---|
| `GateLevelDB.track_create_vs_write_batch` | create of album payloads, batches of 500 | plyvel put in one write_batch, same payloads |
| `GateLevelDB.track_get_vs_plyvel_get` | get by id through the `native_get` hook: loam's node API (random ids) | plyvel get, same keys, random order |
| `GateNotifyLag.track_inprocess_lag_vs_queue_hop` | commit -> notification p50, 1 in-process ephemeral | asyncio queue hop |
| `GateNotifyLag.track_websocket_lag_vs_ws_one_way` | the same over WebSocket | websockets one-way latency p50 |

The absolute figures of the other modules stay on the page for the trend; they are not
gated (`sprout_harness.asvtools.continuous` selects `GATE_BENCH`: this module and the
statistically sampled `time_` benchmarks).
"""

from __future__ import annotations

import math
from typing import Any

from ._common import asv_samples, cache_or_skip, scale, skip_if_skipped
from ._topology import CACHE_TIMEOUT, ERROR, NA, entry

UNIT_RATIO = "ratio"
DURABLE = ("loam-leveldb", "inprocess", 0)
INPROCESS_1 = ("loam-leveldb", "inprocess", 1)
WEBSOCKET_1 = ("loam-leveldb", "websocket", 1)
# Sizes (`_common.SCALES`): `gate_repeats` samples (paired measurements) per gated figure
# and commit; `gate_records` / `gate_gets` / `gate_lag_updates` loam ops per measurement.
#: passes over all samples: each sample keeps its fastest pass per side (loam and anchor)
PASSES = 3


_samples = asv_samples


# --- the runs (the paired phases `asv-gate-leveldb`, `asv-gate-lag` are built-in phases of
# the harness's catalog: sprout_harness/workloads/asv_phases.py) ----------------------------


def _run() -> dict[tuple[str, str, int], Any]:
    sc = scale()
    passes = PASSES if sc.name != "tiny" else 1
    leveldb = {"repeats": sc.gate_repeats, "passes": passes, "count": sc.gate_records, "gets": sc.gate_gets,
               "batch_size": 500}
    lag = {"repeats": sc.gate_repeats, "passes": passes, "updates": sc.gate_lag_updates}
    return {
        DURABLE: entry(DURABLE, {"albums": 0, "pets": 0}, [("asv-gate-leveldb", leveldb)]),
        INPROCESS_1: entry(INPROCESS_1, {"albums": 0, "pets": 0}, [("asv-gate-lag", lag)]),
        WEBSOCKET_1: entry(WEBSOCKET_1, {"albums": 0, "pets": 0}, [("asv-gate-lag", lag)]),
    }


def _setup_cache(self: Any) -> Any:
    return cache_or_skip(_run)


_setup_cache.timeout = CACHE_TIMEOUT  # type: ignore[attr-defined]


class _Gate:
    unit = UNIT_RATIO
    timeout = CACHE_TIMEOUT
    setup_cache = _setup_cache

    def setup(self, cache: Any) -> None:
        skip_if_skipped(cache)
        self.cache = cache

    def _ratios(self, key: tuple[str, str, int], phase: str, name: str) -> dict[str, Any] | float:
        got = self.cache.get(key)
        if got is None:
            raise NotImplementedError(f"{key}: not run")
        if got["status"] == NA:
            raise NotImplementedError(got["reason"])
        if got["status"] == ERROR:
            raise RuntimeError(got["reason"])
        ph = got["phases"][phase]
        if ph["status"] != "ok":
            raise NotImplementedError(ph.get("reason", "unsupported"))
        if name == "get_ratio" and not ph["extra"].get("native_get", 1.0):
            return math.nan  # the stack has no native_get hook: n/a (setup is shared with the create ratio)
        values = [v for k, v in sorted(ph["extra"].items(), key=lambda kv: kv[0]) if k.startswith(name + "#")]
        if not values:
            raise RuntimeError(f"{'/'.join(map(str, key))} {phase}: no {name} samples")
        return _samples(values)


class GateLevelDB(_Gate):
    """loam on LevelDB (durable node, no ephemerals) over raw plyvel, paired per sample."""

    def track_create_vs_write_batch(self, cache: Any) -> dict[str, Any] | float:
        """loam us per created album payload / plyvel us per put in one write_batch."""
        return self._ratios(DURABLE, "asv-gate-leveldb", "create_ratio")

    def track_get_vs_plyvel_get(self, cache: Any) -> dict[str, Any] | float:
        """us per get by id through the stack's native_get hook (loam: its node API) /
        plyvel us per get, random order; n/a without the hook."""
        return self._ratios(DURABLE, "asv-gate-leveldb", "get_ratio")


class GateNotifyLag(_Gate):
    """Commit -> notification p50 on one ephemeral over the raw anchor of its connector."""

    def track_inprocess_lag_vs_queue_hop(self, cache: Any) -> dict[str, Any] | float:
        """in-process ephemeral: lag p50 / asyncio queue hop (measured right before)."""
        return self._ratios(INPROCESS_1, "asv-gate-lag", "lag_hop_ratio")

    def track_websocket_lag_vs_ws_one_way(self, cache: Any) -> dict[str, Any] | float:
        """WebSocket ephemeral: lag p50 / websockets one-way latency p50 (measured right before)."""
        return self._ratios(WEBSOCKET_1, "asv-gate-lag", "lag_ws_ratio")
