"""The workload benchmark families of the asv suite, stack-neutral and installed with the harness.

A project's `benchmarks/` package re-exports them (`from sprout_harness.asvsuite.create import *`)
so asv discovers them under the project's own module names (`bench_create.CreateBatched...`:
asv names a benchmark after the module it finds the class in, not the one defining it).
`sprout asv init` writes such a package; sprout's own `benchmarks/` is one too.

Modules: `create`, `fetch`, `live_limit`, `writers`, `churn` (the topology matrix of
`_topology`: stack x connector x ephemerals), `fanout` and `realtime` (one durable-only row
of the first variant benchmarked over the connector they need). Sizes come from
`_common.scale()` (`SPROUT_BENCH_SCALE`: tiny, quick, full).

Which stacks form the `stack` axis: `SPROUT_ASV_STACKS` (comma-separated stack or variant
names) if set, else the `stacks` list of the JSON file given to `configure()` (the project's
`sprout-asv.json`, next to its asv.conf.json), else every installed stack.
"""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any

ENV_STACKS = "SPROUT_ASV_STACKS"
CONFIG_NAME = "sprout-asv.json"
ENV_HARNESS_VERSION = "SPROUT_HARNESS_VERSION"

# Variants (dicts of `_topology._Variant` fields) for a harness that predates
# `sprout_harness.asvtools.variants`: set by a loader that runs this package against such a
# harness, before the family modules are imported.
LEGACY_VARIANTS: tuple[dict[str, Any], ...] = ()

_config: dict[str, Any] = {}


def configure(path: str | os.PathLike[str]) -> None:
    """Read the project's suite config (`sprout-asv.json`: `{"stacks": [...]}`), if it exists.

    Call it from the project's `benchmarks/__init__.py`, before asv imports the family
    modules (they read the stack axis when imported). A missing file selects every
    installed stack; an unreadable one raises (asv then reports the discovery error)."""
    pinned = os.environ.get(ENV_HARNESS_VERSION)
    if pinned:  # set by the asv.conf.json of `sprout asv init`: the harness measured is the pinned one
        try:
            got = metadata.version("sprout-harness")
        except metadata.PackageNotFoundError:
            got = "none"
        if got != pinned:
            raise RuntimeError(f"asv.conf.json pins sprout-harness {pinned}, this environment has {got}")
    p = Path(path)
    _config.clear()
    if not p.exists():
        return
    try:
        data = json.loads(p.read_text())
    except ValueError as exc:
        raise ValueError(f"{p}: not valid JSON: {exc}") from None
    stacks = data.get("stacks") if isinstance(data, dict) else None
    if stacks is not None and not (isinstance(stacks, list) and all(isinstance(s, str) for s in stacks)):
        raise ValueError(f"{p}: 'stacks' must be a list of stack names")
    _config.update(data, path=str(p))


def selected_stacks() -> list[str] | None:
    """The stack or variant names the axis is restricted to, or None for every installed stack."""
    env = os.environ.get(ENV_STACKS, "").strip()
    if env:
        return [s.strip() for s in env.split(",") if s.strip()]
    stacks = _config.get("stacks")
    return list(stacks) if stacks else None
