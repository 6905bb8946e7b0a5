"""Reads: the `fetch` family of `sprout_harness.asvsuite` (get-by-id and fetch over the
harness's predicate mix; the anchors' album payloads read by id, a ratio to raw plyvel gets,
through the client and through the `native_get` hook), and sprout's own `time_` benchmark of
one get on a prepared loam LevelDB node.
"""

from __future__ import annotations

import asyncio
import atexit
from typing import Any

from sprout_harness.asvsuite.fetch import *  # noqa: F403

from ._common import album_props, require, rng, scale

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
