"""Shared machinery of the workload benchmarks: the topology matrix, one harness run per
parameter combination, and the figures kept from it.

Each workload module (create, fetch, live_limit, writers, churn) runs its family once per
commit: its `setup_cache` calls `run_family`, which builds a config per parameter combination, runs it through the harness's topology runner
(`sprout_harness.topology.runner.run_sync`: stack factories, seeding, sync barrier,
phases with their own checks, teardown) and keeps plain figures (`figures()`): asv pickles
the cache, so no histograms or live objects cross into it.

The matrix (`PARAMS` / `PARAM_NAMES`): stack x connector x ephemeral count.
- stack: every variant of every selected stack (`sprout_harness.asvtools.variants`: a
  stack factory's `benchmark_variants`, or one durable-only variant named after its entry
  point). The stacks are every installed one, or those `SPROUT_ASV_STACKS` (comma-separated)
  or the project's `sprout-asv.json` (see `sprout_harness.asvsuite.configure`) name.
  Installing a stack adds its rows.
- connector: every connector some variant is benchmarked over. With 0 ephemerals there is
  nothing to connect: the durable-only run is listed under the first connector, the others
  are n/a.
- ephemerals 0 (phases target the durable node), 1 or 4 (phases target the ephemerals).
Combinations that make no sense, or that cannot run here (no `SPROUT_PG_DSN`, a stack
not installed, a commit that predates the harness), are n/a (`NotImplementedError` in
`setup`). A run whose phase status is not "ok" (a check failed: a lost write, a stale
window, a missed notification...) is a *failure* of that combination, raised in `setup`.

The phases are the harness's own (its workload catalog: `create`, `fetch`, ... and the
`asv-*` phases of `sprout_harness.workloads.asv_phases`); sizes come from `_common.scale()`.
Everything from the project is imported lazily through `require()`, so older commits show
n/a instead of breaking discovery of the suite; a phase that an older commit's catalog
lacks reads n/a while the family's other phases still run.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from . import LEGACY_VARIANTS, selected_stacks
from ._common import postgres_dsn_or_skip, require, skip_if_skipped

# What the benchmark queries filter and sort on, per dataset collection (a list is a
# compound key, filter first): each stack turns it into the indexes its storage takes.
QUERY_FIELDS: dict[str, list[str | list[str]]] = {
    "albums": ["genre", "year", "rating", ["genre", "rating"]],
    "pets": ["shelter", "species"],
}
EPHEMERALS = (0, 1, 4)
NO_CONNECTOR = "none"  # the connector value of every row when no stack builds ephemerals
NA, ERROR = "na", "error"
CACHE_TIMEOUT = 1200  # a whole family (every combination) at full scale, with margin

Key = tuple[str, str, int]


@dataclass(frozen=True)
class _Variant:
    """`sprout_harness.asvtools.variants.Variant` as this suite reads it (also for a harness
    that predates it: see `LEGACY_VARIANTS` in `__init__`)."""

    name: str
    stack: str
    storage: dict[str, Any] = field(default_factory=dict)
    connectors: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    policy: dict[str, Any] = field(default_factory=dict)
    stack_params: dict[str, Any] = field(default_factory=dict)
    broken: str | None = None


def _installed_variants() -> tuple[_Variant, ...]:
    """The selected stacks' variants (`selected_stacks()`: SPROUT_ASV_STACKS, else the
    sprout-asv.json of `configure()`, else every installed stack); asv discovery imports this
    module once per run."""
    try:
        variants = require("sprout_harness.asvtools.variants")
    except NotImplementedError:  # a harness that predates the variants module
        return tuple(_Variant(**{**v, "connectors": tuple(v.get("connectors", ()))}) for v in LEGACY_VARIANTS)
    return tuple(
        _Variant(
            v.name,
            v.stack,
            dict(v.storage),
            tuple(v.connectors),
            tuple(v.needs),
            dict(v.policy),
            dict(v.stack_params),
            v.broken,
        )
        for v in variants.installed(QUERY_FIELDS, selected_stacks())
    )


VARIANTS = {v.name: v for v in _installed_variants()}
STACKS = tuple(VARIANTS)
CONNECTORS = tuple(dict.fromkeys(c for v in VARIANTS.values() for c in v.connectors)) or (NO_CONNECTOR,)
PARAM_NAMES = ["stack", "connector", "ephemerals"]
PARAMS = [list(STACKS), list(CONNECTORS), list(EPHEMERALS)]


# --- the matrix ------------------------------------------------------------------------------


def first_variant_over(connector: str) -> str:
    """The variant a one-row family measures: the first of the axis (not broken) that is
    benchmarked over `connector` connections; none is n/a."""
    for name, v in VARIANTS.items():
        if connector in v.connectors and v.broken is None:
            return name
    raise NotImplementedError(f"no variant of the selected stacks is benchmarked over {connector!r} connections")


def not_applicable(stack: str, connector: str, ephemerals: int) -> str | None:
    """Why a combination makes no sense (n/a), or None."""
    v = VARIANTS[stack]
    if ephemerals and connector not in v.connectors:
        if not v.connectors:
            return f"{stack} builds no ephemeral nodes (durable only): n/a with ephemerals"
        return f"{stack} is benchmarked over {', '.join(v.connectors)}, not {connector}"
    if ephemerals == 0 and connector != CONNECTORS[0]:
        return f"no ephemerals, nothing to connect: the durable-only run is listed under connector={CONNECTORS[0]}"
    return None


def combinations(stacks: Sequence[str] = STACKS) -> list[Key]:
    """The combinations of `PARAMS` that make sense, restricted to `stacks`."""
    return [
        (s, c, e)
        for s, c, e in itertools.product(STACKS, CONNECTORS, EPHEMERALS)
        if s in stacks and not_applicable(s, c, e) is None
    ]


# Cells that make no sense, for asv to skip without running `setup` (it would print a
# "skipped" block per cell and benchmark method); `setup` still refuses them.
SKIP_PARAMS = [
    (s, c, e) for s, c, e in itertools.product(STACKS, CONNECTORS, EPHEMERALS) if not_applicable(s, c, e) is not None
]


def config_dict(key: Key, datasets: dict[str, int], phases: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The harness config (as YAML would give it) for one combination."""
    stack, connector, ephemerals = key
    v = VARIANTS[stack]
    if v.broken is not None:
        raise NotImplementedError(v.broken)
    storage: dict[str, Any] = {k: (dict(x) if isinstance(x, dict) else x) for k, x in v.storage.items()}
    if "postgres" in v.needs:
        storage["dsn"] = postgres_dsn_or_skip()
    target = "ephemeral" if ephemerals else "durable"
    topology: dict[str, Any] = {"durable": 1, "ephemeral": ephemerals}
    if ephemerals:
        topology["connector"] = connector
    config: dict[str, Any] = {
        "name": f"asv-{stack}-{connector}-{ephemerals}",
        "seed": 42,
        "stack": {"name": v.stack, **({"params": dict(v.stack_params)} if v.stack_params else {})},
        "topology": topology,
        "datasets": dict(datasets),
        "phases": [{"name": p, "target": target, "label": p, "params": dict(params)} for p, params in phases],
        # Checks wait for convergence with a deadline; a healthy stack converges in ms, and a
        # failing one should not stall the suite (SPROUT_BENCH_CHECK_TIMEOUT: tests lower it).
        "runner": {"check_timeout_s": float(os.environ.get("SPROUT_BENCH_CHECK_TIMEOUT", "3")), "sync_timeout_s": 60.0},
    }
    if storage:
        config["storage"] = storage
    if v.policy:
        config["policy"] = dict(v.policy)
    return config


# --- running ---------------------------------------------------------------------------------


def _ms(ns: float) -> float:
    return float(ns) / 1e6


def figures(result: Any) -> dict[str, Any]:
    """Plain figures of a RunResult: per phase, p50/p99 (ms) of every op and lag, wall time,
    counters and numeric extras. Raises for a phase that did not pass (see `entry`)."""
    out: dict[str, Any] = {}
    for ph in result.phases:
        if ph.status == "unsupported":
            out[ph.name] = {"status": NA, "reason": ph.reason or "unsupported"}
            continue
        if ph.status != "ok":
            failed = "; ".join(f"{c.name}: {c.detail}" for c in ph.failed_checks)[:600]
            errors = "; ".join(f"{k} x{e.count}: {e.samples[:1]}" for k, e in ph.errors.items())[:400]
            raise RuntimeError(
                f"phase {ph.name} {ph.status}: {ph.reason or ''}"
                + (f"; failed checks: {failed}" if failed else "")
                + (f"; errors: {errors}" if errors else "")
            )
        summaries: dict[str, dict[str, dict[str, float]]] = {}
        latencies = dict(ph.latencies)
        fetches = [h for op, h in latencies.items() if op.startswith("fetch:")]
        if fetches:  # every predicate family together
            merged = type(fetches[0])()
            for h in fetches:
                merged.merge(h)
            latencies["fetch:all"] = merged
        for group, hists in (("latency", latencies), ("lag", ph.lags)):
            summaries[group] = {}
            for op, h in hists.items():
                s = h.summary()
                if s.get("count", 0):
                    summaries[group][op] = {
                        "p50": _ms(s["p50"]),
                        "p99": _ms(s["p99"]),
                        "mean": _ms(s["mean"]),
                        "count": int(s["count"]),
                    }
        out[ph.name] = {
            "status": "ok",
            **summaries,
            "wall_s": ph.wall_ns / 1e9,
            "counters": dict(ph.counters),
            "extra": {
                k: float(v)
                for k, v in ph.extra.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            },
        }
    return out


def entry(key: Key, datasets: dict[str, int], phases: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Run one combination: {"status": "ok", "phases": ...}, or status "na" / "error" with a reason.

    A phase missing from the installed commit's workload catalog (a commit that predates
    it) is left out of the run and reads n/a; the others still run."""
    stack = key[0]
    try:
        config = require("sprout_harness.config")
        runner = require("sprout_harness.topology.runner")
        plugins = require("sprout_harness.plugins")
        catalog = require("sprout_harness.workloads.catalog")
        try:
            plugins.resolve_stack(VARIANTS[stack].stack)
        except Exception as exc:  # not installed in this environment (or this commit)
            raise NotImplementedError(f"{stack}: {exc}") from None
        known = catalog.phases()
        absent = [name for name, _ in phases if name not in known]
        present = [(name, knobs) for name, knobs in phases if name in known]
        if absent and not present:
            raise NotImplementedError(f"phases {', '.join(absent)} are not in this commit's workload catalog")
        raw = config_dict(key, datasets, present)
    except NotImplementedError as exc:
        return {"status": NA, "reason": str(exc)}
    where = "/".join(map(str, key))
    t0 = time.perf_counter()
    try:
        cfg = config.config_from_dict(raw)
        result = runner.run_sync(cfg)
        if result.status not in ("ok", "failed"):
            raise RuntimeError(f"run {result.status}: {result.reason}")
        figs = figures(result)
    except Exception as exc:
        return {"status": ERROR, "reason": f"{where}: {type(exc).__name__}: {exc}"}
    for name in absent:
        figs[name] = {"status": NA, "reason": f"phase {name} is not in this commit's workload catalog"}
    return {"status": "ok", "phases": figs, "seconds": time.perf_counter() - t0}


def run_family(
    datasets: dict[str, int],
    phases: Sequence[tuple[str, dict[str, Any]]],
    stacks: Sequence[str] = STACKS,
    log: Callable[[str], None] | None = None,
) -> dict[Key, dict[str, Any]]:
    """`entry()` for every sensible combination (the rest are n/a in `FamilyBenchmark.setup`)."""
    out = {}
    for key in combinations(stacks):
        out[key] = entry(key, datasets, phases)
        if log is not None or os.environ.get("SPROUT_BENCH_VERBOSE"):
            (log or print)(
                f"{key}: {out[key]['status']} {out[key].get('seconds', 0):.1f}s {out[key].get('reason', '')}"
            )
    return out


class FamilyBenchmark:
    """Base of the workload classes: the matrix, n/a and failures in `setup`, figure lookup.

    Subclasses define `setup_cache` themselves (asv keys the cache by the defining module
    and line, so a shared definition here would make every family share one cache).
    """

    params = PARAMS
    param_names = PARAM_NAMES
    skip_params = SKIP_PARAMS
    unit = "ms"
    timeout = CACHE_TIMEOUT
    phase = ""  # the phase the track_ methods read by default

    def setup(self, cache: Any, stack: str, connector: str, ephemerals: int) -> None:
        skip_if_skipped(cache)
        why = not_applicable(stack, connector, ephemerals)
        if why is not None:
            raise NotImplementedError(why)
        got = cache.get((stack, connector, ephemerals))
        if got is None:
            raise NotImplementedError(f"{stack}/{connector}/{ephemerals}: not run")
        if got["status"] == NA:
            raise NotImplementedError(got["reason"])
        if got["status"] == ERROR:
            raise RuntimeError(got["reason"])  # a failing check or a crash: fail loudly
        self.phases = got["phases"]

    def phase_figures(self, phase: str | None = None) -> dict[str, Any]:
        ph = self.phases[phase or self.phase]
        if ph["status"] != "ok":
            raise NotImplementedError(ph.get("reason", "unsupported"))
        return ph

    def fig(self, group: str, op: str, pct: str, phase: str | None = None) -> float:
        """p50/p99 (ms) of `op` in `group` ("latency" or "lag") of a phase."""
        ph = self.phase_figures(phase)
        try:
            return ph[group][op][pct]
        except KeyError:
            raise RuntimeError(
                f"phase {phase or self.phase}: no {group} figure for {op!r} (has: {sorted(ph.get(group, {}))})"
            ) from None

    def has_extra(self, name: str, phase: str | None = None) -> bool:
        return name in self.phase_figures(phase).get("extra", {})

    def extra(self, name: str, phase: str | None = None) -> float:
        ph = self.phase_figures(phase)
        try:
            return ph["extra"][name]
        except KeyError:
            raise RuntimeError(
                f"phase {phase or self.phase}: no figure {name!r} (has: {sorted(ph['extra'])})"
            ) from None
