"""Build a SproutConfig from plain data, and check it: every error names the field path,
the bad value and what is allowed."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Union

from sprout_harness.config.schema import ROLES, PhaseConfig, SproutConfig
from sprout_harness.config.thresholds import check_patterns, parse_thresholds
from sprout_harness.contracts.errors import ConfigError, StackError, did_you_mean

_NONE = type(None)
MAX_REPEAT = 100
MAX_WARMUP = 10


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is _NONE:
        return "null"
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(tp, getattr(tp, "__name__", str(tp)))


def coerce(value: Any, tp: Any, path: str) -> Any:
    """Check `value` against type hint `tp` (int, float, str, bool, X | None, list[X], dict[str, X], dataclasses)."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and _NONE in args:
            return None
        errors = []
        for a in args:
            if a is _NONE:
                continue
            try:
                return coerce(value, a, path)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(f"got {_short(value)}; expected {_type_name(tp)}", path)
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise ConfigError(f"got {_short(value)}; expected a list", path)
        return [coerce(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp) or (str, Any)
        if not isinstance(value, dict):
            raise ConfigError(f"got {_short(value)}; expected a mapping", path)
        return {str(k): coerce(v, val_tp, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ConfigError(f"got {_short(value)}; expected {_type_name(tp)}", path)


def build_dataclass(cls: type, data: Any, path: str) -> Any:
    """`cls(**data)` with every field type-checked and unknown keys rejected."""
    if isinstance(data, str) and cls is PhaseConfig:
        data = {"name": data}  # `phases: [create, fetch]` shorthand
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"got {_short(data)}; expected a mapping", path or "config")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
    unknown = sorted(set(map(str, data)) - known)
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise ConfigError(f"unknown field{did_you_mean(unknown[0], known)}; allowed fields here: "
                          f"{', '.join(sorted(known))}", where)
    kwargs = {k: coerce(v, hints[k], f"{path}.{k}" if path else k) for k, v in data.items()}
    return cls(**kwargs)


def build_config(raw: dict[str, Any], check_stack: bool = False) -> SproutConfig:
    cfg = build_dataclass(SproutConfig, raw, "")
    validate_config(cfg, check_stack=check_stack)
    return cfg


def _require(ok: bool, path: str, message: str) -> None:
    if not ok:
        raise ConfigError(message, path)


def validate_config(cfg: SproutConfig, check_stack: bool = False) -> None:
    """Semantic checks (ranges, names known to the catalog); `check_stack` also loads the stack."""
    from sprout_harness.workloads import catalog, datasets

    topo = cfg.topology
    _require(topo.durable >= 1, "topology.durable", f"got {topo.durable}; at least 1 durable node is needed")
    _require(topo.ephemeral >= 0, "topology.ephemeral", f"got {topo.ephemeral}; must be >= 0")
    _require(bool(topo.connector), "topology.connector", "must name a connector (e.g. inprocess, websocket)")
    seen: set[int] = set()
    for i, link in enumerate(topo.links):
        p = f"topology.links[{i}]"
        _require(0 <= link.ephemeral < topo.ephemeral, f"{p}.ephemeral",
                 f"got {link.ephemeral}; must be an ephemeral index in 0..{topo.ephemeral - 1}"
                 if topo.ephemeral else f"got {link.ephemeral}; topology.ephemeral is 0, so no links can be set")
        _require(link.ephemeral not in seen, f"{p}.ephemeral", f"ephemeral {link.ephemeral} already has a link entry")
        seen.add(link.ephemeral)
        if link.durable is not None:
            _require(0 <= link.durable < topo.durable, f"{p}.durable",
                     f"got {link.durable}; must be a durable index in 0..{topo.durable - 1}")
    _require(cfg.storage.pool_size >= 1, "storage.pool_size", f"got {cfg.storage.pool_size}; must be >= 1")
    _require(bool(cfg.storage.engine), "storage.engine", "must name a storage engine")
    _require(bool(cfg.policy.id), "policy.id", "must name a policy agent")
    _require(cfg.seed >= 0, "seed", f"got {cfg.seed}; must be >= 0")
    r = cfg.runner
    _require(r.sync_timeout_s > 0, "runner.sync_timeout_s", f"got {r.sync_timeout_s}; must be > 0")
    _require(r.check_timeout_s > 0, "runner.check_timeout_s", f"got {r.check_timeout_s}; must be > 0")
    _require(r.seed_batch_size >= 1, "runner.seed_batch_size", f"got {r.seed_batch_size}; must be >= 1")
    _require(1 <= r.repeat <= MAX_REPEAT, "runner.repeat",
             f"got {r.repeat}; must be 1..{MAX_REPEAT} runs (5 is what a rank test at alpha 0.01 needs)")
    _require(0 <= r.warmup <= MAX_WARMUP, "runner.warmup", f"got {r.warmup}; must be 0..{MAX_WARMUP} warm-up runs")

    kinds = datasets.kinds()
    for kind, size in cfg.datasets.items():
        _require(kind in kinds, f"datasets.{kind}",
                 f"unknown dataset kind{did_you_mean(kind, kinds)}; allowed: {', '.join(kinds)}")
        _require(isinstance(size, int) and size >= 0, f"datasets.{kind}", f"got {_short(size)}; must be an integer >= 0")

    suites = catalog.suites()
    _require(cfg.suite in suites, "suite",
             f"got {cfg.suite!r}{did_you_mean(cfg.suite, suites)}; known suites: {', '.join(sorted(suites))}")
    if not cfg.phases:
        cfg.phases = [PhaseConfig(name=p.name, target=p.target, params=dict(p.params), label=p.label)
                      for p in suites[cfg.suite].phases]
    phases = catalog.phases()
    all_knobs: set[str] = set()
    for spec in phases.values():
        all_knobs |= catalog.knob_names(spec)
    for key in cfg.workload:
        _require(key in all_knobs, f"workload.{key}",
                 f"unknown knob{did_you_mean(key, all_knobs)}; knobs of the registered phases: "
                 f"{', '.join(sorted(all_knobs))}")
    labels: set[str] = set()
    for i, ph in enumerate(cfg.phases):
        p = f"phases[{i}]"
        _require(ph.name in phases, f"{p}.name", f"got {ph.name!r}{did_you_mean(ph.name, phases)}; known phases: "
                 f"{', '.join(sorted(phases))}")
        spec = phases[ph.name]
        _require(ph.target in ROLES, f"{p}.target", f"got {ph.target!r}; allowed: {', '.join(ROLES)}")
        _require(ph.target in spec.targets, f"{p}.target",
                 f"phase {ph.name!r} cannot target {ph.target!r}; allowed: {', '.join(spec.targets)}")
        if ph.target == "ephemeral":
            _require(topo.ephemeral >= 1, f"{p}.target",
                     f"phase {ph.name!r} targets ephemeral nodes but topology.ephemeral is 0; add ephemerals or target durable")
        _require(ph.title not in labels, f"{p}.label",
                 f"{ph.title!r} appears twice; give one of them a distinct `label`")
        labels.add(ph.title)
        shared = {k: v for k, v in cfg.workload.items() if k in catalog.knob_names(spec)}
        catalog.build_knobs(spec, shared, "workload")
        catalog.build_knobs(spec, {**shared, **ph.params}, f"{p}.params")

    if cfg.thresholds:
        # a pattern that can match nothing would let a gate pass silently; refuse it before the run
        check_patterns(parse_thresholds(cfg.thresholds),
                       [(ph.title, catalog.metric_patterns(phases[ph.name])) for ph in cfg.phases])

    if check_stack:
        from sprout_harness import plugins
        from sprout_harness.topology.runner import stack_settings

        try:
            factory = plugins.resolve_stack(cfg.stack.name)
        except StackError as exc:
            raise ConfigError(str(exc), "stack.name") from None
        check = getattr(factory, "validate", None)
        if callable(check):
            check(stack_settings(cfg))
