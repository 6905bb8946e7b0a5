"""Reads: get-by-id and fetch over the harness's predicate mix (every answer checked against
the reference evaluator), the anchors' album payloads read by id (a ratio to raw plyvel
gets), and a `time_` benchmark of one get on a prepared loam LevelDB node.

The workload runs once per commit and parameter combination in `setup_cache` (shared by
`FetchPredicates` and `GetById`: one function, so asv keys them to one cache). Lower is better.
"""

from __future__ import annotations

import asyncio
import atexit
from typing import Any

from ._common import album_props, cache_or_skip, require, rng, scale
from ._topology import CACHE_TIMEOUT, FamilyBenchmark, run_family

FAMILIES = ("equality", "range", "in", "and_or", "order_limit")


def _run() -> Any:
    sz = scale()
    return run_family(
        datasets={"albums": sz.dataset, "pets": 0},
        phases=[
            ("fetch", {"collection": "albums", "get_ops": sz.get_ops, "fetch_ops": sz.fetch_ops, "concurrency": 4}),
            (
                "asv-albums-get",
                {"count": sz.records, "batch_size": sz.album_batch, "repeats": sz.repeats, "gets": sz.get_ops},
            ),
        ],
    )


def _setup_cache(self: Any) -> Any:
    return cache_or_skip(_run)


_setup_cache.timeout = CACHE_TIMEOUT  # type: ignore[attr-defined]


class FetchPredicates(FamilyBenchmark):
    """The harness's `fetch` phase: gets by id and fetches per predicate family, 4 in flight."""

    phase = "fetch"
    setup_cache = _setup_cache

    def track_get_p50(self, cache: Any, *p: Any) -> float:
        """ms, median get-by-id latency (4 in flight)."""
        return self.fig("latency", "get", "p50")

    def track_get_p99(self, cache: Any, *p: Any) -> float:
        return self.fig("latency", "get", "p99")

    def track_fetch_p99(self, cache: Any, *p: Any) -> float:
        """ms, 99th percentile latency of a fetch, every predicate family together."""
        return self.fig("latency", "fetch:all", "p99")


def _family_tracker(family: str, pct: str) -> Any:
    def track(self: FetchPredicates, cache: Any, *p: Any) -> float:
        return self.fig("latency", f"fetch:{family}", pct)

    track.__name__ = f"track_fetch_{family}_{pct}"
    track.__doc__ = f"ms, {pct} latency of a fetch with a `{family}` predicate."
    return track


# p50 per predicate family (p99 over all of them above): every parameterized track_ method
# costs asv one process per combination, so the suite keeps to the figures that are read.
for _family in FAMILIES:
    setattr(FetchPredicates, f"track_fetch_{_family}_p50", _family_tracker(_family, "p50"))


class GetById(FamilyBenchmark):
    """The anchors' album payloads read by id in random order, one at a time (us per get)."""

    phase = "asv-albums-get"
    unit = "us"
    setup_cache = _setup_cache

    def track_get(self, cache: Any, *p: Any) -> float:
        """us per get through the harness's client (loam: the adapter's Doc conversion included);
        anchor: AnchorLevelDB.track_get_random."""
        return self.extra("get_us")


class NodeGetById(FamilyBenchmark):
    """The same gets through the stack's `native_get` hook: its own API under the client,
    no harness Doc conversion (loam: its node API under the adapter). What the `leveldb-get`
    target measures; n/a for a stack without the hook."""

    phase = "asv-albums-get"
    unit = "us"
    setup_cache = _setup_cache

    def setup(self, cache: Any, stack: str, connector: str, ephemerals: int) -> None:
        super().setup(cache, stack, connector, ephemerals)
        if not self.has_extra("native_get_us"):
            raise NotImplementedError(f"{stack}: the stack has no native_get hook (direct reads)")

    def track_get(self, cache: Any, *p: Any) -> float:
        """us per get through the stack's native_get hook; anchor: AnchorLevelDB.track_get_random."""
        return self.extra("native_get_us")


# --- a time_ benchmark on a prepared node (module-level: asv re-runs setup before every call) ---

_PREPARED: dict[str, Any] = {}
GETS_PER_CALL = 100


def _prepared_leveldb_node() -> dict[str, Any]:
    """A loam durable node on LevelDB built by the harness's stack factory, holding the album
    payloads; built once per process, closed at exit."""
    if _PREPARED:
        return _PREPARED
    plugins = require("sprout_harness.plugins")
    stack_mod = require("sprout_harness.contracts.stack")
    try:
        factory = plugins.resolve_stack("loam")
    except Exception as exc:
        raise NotImplementedError(f"loam stack: {exc}") from None
    settings = stack_mod.StackSettings(
        name="loam",
        storage={"engine": "leveldb"},
        policy={"id": "permissive"},
        topology={"durable": 1, "ephemeral": 0, "links": []},
    )
    loop = asyncio.new_event_loop()
    stack = factory(settings)
    loop.run_until_complete(stack.start())
    client = loop.run_until_complete(stack.durable(0, stack.context("durable", 0)))
    docs = album_props(scale().records)
    ids: list[str] = []
    for i in range(0, len(docs), 500):
        ids += loop.run_until_complete(client.create("albums", docs[i : i + 500])).ids
    order = rng(7).sample(ids, min(len(ids), GETS_PER_CALL))

    async def gets() -> None:
        for id_ in order:
            if await client.get("albums", id_) is None:
                raise AssertionError(f"loam lost album {id_}")

    def close() -> None:
        try:
            loop.run_until_complete(client.close())
            loop.run_until_complete(stack.close())
        finally:
            settings.run_cleanups()
            loop.close()

    atexit.register(close)
    _PREPARED.update(loop=loop, gets=gets)
    return _PREPARED


class GetByIdLevelDB:
    """`time_get_by_id_x100`: 100 gets by id (random ids) on a loam LevelDB durable node
    prepared once per process, through the harness's client, in one event-loop turn."""

    timeout = 120

    def setup(self) -> None:
        self.prepared = _prepared_leveldb_node()

    def time_get_by_id_x100(self) -> None:
        self.prepared["loop"].run_until_complete(self.prepared["gets"]())
