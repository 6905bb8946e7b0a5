"""The workload catalog: phases and suites, registered by name.

A phase module calls `register_phase(PhaseSpec(...))` at import; a suite is a named,
ordered list of phase steps (`register_suite`). Built-in modules are listed in
`BUILTIN_MODULES`; other packages add theirs through the entry point group
`sprout_harness.workloads` (each entry point names a module to import). See docs/suites.md.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Awaitable, Callable

from sprout_harness.contracts.errors import ConfigError, did_you_mean

ENTRY_POINT_GROUP = "sprout_harness.workloads"
BUILTIN_MODULES = (
    "sprout_harness.workloads.phases.core.create",
    "sprout_harness.workloads.phases.core.fetch",
    "sprout_harness.workloads.phases.core.live_limit",
    "sprout_harness.workloads.phases.core.writers",
    "sprout_harness.workloads.phases.core.churn",
    "sprout_harness.workloads.phases.mixes.crud",
    "sprout_harness.workloads.phases.mixes.ycsb",
    "sprout_harness.workloads.phases.queries.simple",
    "sprout_harness.workloads.phases.queries.complex",
    "sprout_harness.workloads.phases.queries.sorted",
    "sprout_harness.workloads.phases.queries.paginated",
    "sprout_harness.workloads.phases.queries.large",
    "sprout_harness.workloads.phases.realtime.connection_scaling",
    "sprout_harness.workloads.phases.realtime.subscription_scaling",
    "sprout_harness.workloads.phases.realtime.event_throughput",
    "sprout_harness.workloads.phases.realtime.filtered_subscriptions",
    "sprout_harness.workloads.phases.triggers",
    "sprout_harness.workloads.phases.isolation",
    "sprout_harness.workloads.asv_phases",
    "sprout_harness.workloads.suites",
)


@dataclass(frozen=True)
class PhaseSpec:
    """A catalog entry.

    `run(ctx, knobs)` does the work and validates it through `ctx` (see workloads/context.py);
    `knobs` is its knob dataclass; `needs` lists Capabilities fields it requires (missing ->
    the phase reports "unsupported"); `targets` the roles it may run on. `metrics` are fnmatch
    globs of the metric names the phase records within itself (`create_batch`, `fetch:*`,
    `lag.notify`), which `sprout validate` matches `thresholds:` patterns against; None means
    undeclared (any name may appear). The runner adds `connector.*` to every phase.
    """

    name: str
    summary: str
    run: Callable[[Any, Any], Awaitable[None]]
    knobs: type
    needs: tuple[str, ...] = ()
    targets: tuple[str, ...] = ("durable", "ephemeral")
    needs_ephemeral_capability: bool = False
    metrics: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SuiteStep:
    name: str
    target: str = "durable"
    params: dict[str, Any] = field(default_factory=dict)
    label: str | None = None  # report name, needed when a suite runs one phase twice on one role


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    summary: str
    phases: tuple[SuiteStep, ...]


# The runner records every connector message of the running phase as `connector.<type>`.
RUNNER_METRICS = ("connector.*",)

_PHASES: dict[str, PhaseSpec] = {}
_SUITES: dict[str, SuiteSpec] = {}
_LOADED = False


def register_phase(spec: PhaseSpec) -> PhaseSpec:
    if not dataclasses.is_dataclass(spec.knobs):
        raise TypeError(f"phase {spec.name!r}: knobs must be a dataclass")
    _PHASES[spec.name] = spec
    return spec


def register_suite(spec: SuiteSpec) -> SuiteSpec:
    _SUITES[spec.name] = spec
    return spec


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for mod in BUILTIN_MODULES:
        importlib.import_module(mod)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        importlib.import_module(ep.value.partition(":")[0])


def phases() -> dict[str, PhaseSpec]:
    _load()
    return dict(_PHASES)


def suites() -> dict[str, SuiteSpec]:
    _load()
    return dict(_SUITES)


def get_phase(name: str) -> PhaseSpec:
    all_ = phases()
    if name not in all_:
        raise ConfigError(f"unknown phase {name!r}{did_you_mean(name, all_)}; known phases: {', '.join(sorted(all_))}")
    return all_[name]


def metric_patterns(spec: PhaseSpec) -> tuple[str, ...] | None:
    """Globs of every metric name a run of `spec` can record within its phase (the phase's
    own and the runner's), or None when the phase does not declare them."""
    if spec.metrics is None:
        return None
    return (*spec.metrics, *RUNNER_METRICS)


def knob_names(spec: PhaseSpec) -> set[str]:
    return {f.name for f in dataclasses.fields(spec.knobs)}


def knob_docs(spec: PhaseSpec) -> list[tuple[str, Any, str]]:
    """(name, default, help) for each knob, for `sprout list` and docs."""
    out = []
    for f in dataclasses.fields(spec.knobs):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append((f.name, default, f.metadata.get("help", "")))
    return out
