"""Build a SproutConfig from plain data, and check it: every error names the field path,
the bad value and what is allowed. The phases and their knobs are checked against the
workload catalog, the stack's parameters through the stack's own `validate`."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import socket
import types
import typing
from typing import Any, Union

from sprout_harness import plugins
from sprout_harness.config.schema import ROLES, PhaseConfig, PlacementConfig, SproutConfig
from sprout_harness.config.settings import stack_settings
from sprout_harness.config.text import name as _name
from sprout_harness.config.text import short as _short
from sprout_harness.contracts.errors import ConfigError, StackError, did_you_mean
from sprout_harness.metrics.threshold_rules import check_patterns, parse_thresholds
from sprout_harness.workloads import catalog, datasets
from sprout_harness.workloads.catalog import PhaseSpec
from sprout_harness.workloads.knobs import ENTITY_BYTES

_NONE = type(None)
MAX_REPEAT = 100
MAX_WARMUP = 10
# Upper bounds of the config's sizes (docs/configuration.md, "Bounds"): a config that passes
# `validate` must not be able to exhaust the machine before the first phase starts.
MAX_DURABLE = 64
MAX_EPHEMERAL = 1000
MAX_DATASET = 10_000_000  # entities of one kind seeded on each durable node
MAX_POOL_SIZE = 1000
MAX_SEED_BATCH = 100_000
MAX_TIMEOUT_S = 86_400.0
MAX_SEED = 2**63 - 1
SEEDED_ROW_BYTES = ENTITY_BYTES
MEMORY_SHARE = 0.5
"""Share of the machine's memory the seeded datasets may be estimated to take."""


def memory_bytes() -> int:
    """This machine's physical memory (bytes)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a small machine
        return 4 << 30


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
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


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
        return {str(k): coerce(v, val_tp, f"{path}.{_name(k)}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        # integral floats are refused too (one rule for every integer field and knob):
        # 1e3 in YAML is text and 1.0e+3 a float, and neither is what the field counts in
        if isinstance(value, float) or (isinstance(value, str) and _looks_numeric(value)):
            raise ConfigError(
                f"got {_short(value)}; expected an integer written as digits, e.g. 1000 (no decimal point or exponent)",
                path,
            )
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            try:
                return float(value)
            except OverflowError:  # an int beyond a float's range
                pass
        elif isinstance(value, str) and _looks_numeric(value):
            raise ConfigError(
                f"got {_short(value)}; YAML reads that as text: write a number with a decimal "
                "point, e.g. 1.0e+3 or 1000",
                path,
            )
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ConfigError(f"got {_short(value)}; expected {_type_name(tp)}", path)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def build_dataclass(cls: type, data: Any, path: str) -> Any:
    """`cls(**data)` with every field type-checked and unknown keys rejected."""
    if isinstance(data, str) and cls is PhaseConfig:
        data = {"name": data}  # `phases: [create, fetch]` shorthand
    if data is None and path:
        # `stack: null` would silently mean the defaults; leaving the field out says that
        raise ConfigError("got null; expected a mapping (leave the field out for its defaults)", path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"got {_short(data)}; expected a mapping", path or "config")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
    unknown = sorted((k for k in data if not isinstance(k, str) or k not in known), key=str)
    if unknown:
        key = _name(unknown[0])
        where = f"{path}.{key}" if path else key
        raise ConfigError(
            f"unknown field{did_you_mean(key, known)}; allowed fields here: {', '.join(sorted(known))}", where
        )
    kwargs = {k: coerce(v, hints[k], f"{path}.{k}" if path else k) for k, v in data.items()}
    return cls(**kwargs)


def build_config(raw: dict[str, Any], check_stack: bool = False) -> SproutConfig:
    cfg = build_dataclass(SproutConfig, raw, "")
    validate_config(cfg, check_stack=check_stack)
    return cfg


def resolve_stack_name(cfg: SproutConfig, required: bool = True) -> None:
    """An empty `stack.name` becomes the one installed stack; with none or several installed
    it stays empty, and is an error when `required` (the dry run, the run itself)."""
    if cfg.stack.name:
        return
    installed = [e.name for e in plugins.stack_entries()]
    if len(installed) == 1:
        cfg.stack.name = installed[0]
        return
    _require(
        not required,
        "stack.name",
        f"must name the stack to measure; installed: {', '.join(installed)}"
        if installed
        else f"must name the stack to measure; no stack is installed under the entry point group {plugins.GROUP!r}: "
        "install one, or give an import path 'package.module:attr'",
    )


MAX_WORKERS = 1024
"""Upper bound of `runner.placement.workers` (actors per fleet)."""


def _check_placement(pl: PlacementConfig) -> None:
    p = "runner.placement"
    _require(pl.engine in ("local", "ray"), f"{p}.engine", f"got {_short(pl.engine)}; allowed: local, ray")
    _require(
        0 <= pl.workers <= MAX_WORKERS,
        f"{p}.workers",
        f"got {_short(pl.workers)}; must be 0..{MAX_WORKERS} actors (0: the phase's `processes`)",
    )
    if pl.engine == "local":
        _require(pl.address is None, f"{p}.address", "only the ray engine takes an address")
        return
    if importlib.util.find_spec("ray") is None:
        raise ConfigError("ray needs the 'ray' extra: pip install 'sprout-harness[ray]'", f"{p}.engine")
    _require(bool(pl.address), f"{p}.address", "the Ray cluster's head, HOST:PORT (e.g. 10.0.0.5:6379)")
    host, _, port = str(pl.address).removeprefix("ray://").rpartition(":")
    _require(
        bool(host) and port.isdigit() and 0 < int(port) < 65536,
        f"{p}.address",
        f"got {_short(pl.address)}; write HOST:PORT of the Ray head",
    )
    try:  # an unreachable cluster is a config error now, not a failed phase later
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        raise ConfigError(
            f"no Ray cluster answers at {pl.address} ({exc.strerror or exc}); start one "
            "(`ray start --head`) or fix the address",
            f"{p}.address",
        ) from None


def _check_phase_memory(phases: list[tuple[int, str, str, str]], seeded: int) -> None:
    """The entities the phases add, with the seeded ones, within the datasets' budget (what
    several phases share, such as the YCSB table, counted once: their largest estimate)."""
    held: dict[str, tuple[int, str, str]] = {}
    for size, path, title, key in phases:
        if key not in held or size > held[key][0]:  # ties: the first phase that holds it
            held[key] = (size, path, title)
    total = seeded + sum(b for b, _, _ in held.values())
    budget = memory_bytes() * MEMORY_SHARE
    if not held or total <= budget:
        return
    biggest, path, title = max(held.values())
    raise ConfigError(
        f"{title} would hold about {biggest / 2**30:.1f} GiB of entities ({total / 2**30:.1f} GiB with the "
        f"datasets and other phases), more than half this machine's {memory_bytes() / 2**30:.1f} GiB; "
        "create or load fewer",
        f"{path}.params",
    )


def run_stack_validate(factory: Any, settings: Any, name: str) -> None:
    """The factory's optional `validate(settings)`: its ConfigError as it is; anything else it
    raises is a broken contract, one line naming the stack and the hook."""
    check = getattr(factory, "validate", None)
    if not callable(check):
        return
    try:
        check(settings)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"stack {name!r}: validate raised {type(exc).__name__}: {exc}; a stack's validate must raise "
            "ConfigError for a setting it refuses",
            "stack.name",
        ) from None


def _require(ok: bool, path: str, message: str) -> None:
    if not ok:
        raise ConfigError(message, path)


def validate_config(cfg: SproutConfig, check_stack: bool = False) -> None:
    """Semantic checks (ranges, names known to the catalog); `check_stack` also loads the stack."""
    topo = cfg.topology
    # Sizes first: later checks (and the stack's) iterate over them.
    _require(
        1 <= topo.durable <= MAX_DURABLE,
        "topology.durable",
        f"got {_short(topo.durable)}; must be 1..{MAX_DURABLE} durable nodes",
    )
    _require(
        0 <= topo.ephemeral <= MAX_EPHEMERAL,
        "topology.ephemeral",
        f"got {_short(topo.ephemeral)}; must be 0..{MAX_EPHEMERAL} ephemeral nodes "
        "(thousands of clients: the connection-scaling phases open them in worker processes)",
    )
    _require(
        topo.connector is None or bool(topo.connector),
        "topology.connector",
        "must name one of the stack's connectors, or be left out for the stack's first",
    )
    seen: set[int] = set()
    for i, link in enumerate(topo.links):
        p = f"topology.links[{i}]"
        _require(
            0 <= link.ephemeral < topo.ephemeral,
            f"{p}.ephemeral",
            f"got {link.ephemeral}; must be an ephemeral index in 0..{topo.ephemeral - 1}"
            if topo.ephemeral
            else f"got {link.ephemeral}; topology.ephemeral is 0, so no links can be set",
        )
        _require(link.ephemeral not in seen, f"{p}.ephemeral", f"ephemeral {link.ephemeral} already has a link entry")
        seen.add(link.ephemeral)
        if link.durable is not None:
            _require(
                0 <= link.durable < topo.durable,
                f"{p}.durable",
                f"got {link.durable}; must be a durable index in 0..{topo.durable - 1}",
            )
    pool = cfg.storage.pool_size
    _require(
        pool is None or 1 <= pool <= MAX_POOL_SIZE,
        "storage.pool_size",
        f"got {_short(pool)}; must be 1..{MAX_POOL_SIZE}, or left out for the stack's default",
    )
    _require(
        cfg.storage.engine is None or bool(cfg.storage.engine),
        "storage.engine",
        "must name one of the stack's storage engines, or be left out for its default",
    )
    _require(
        cfg.policy.id is None or bool(cfg.policy.id),
        "policy.id",
        "must name one of the stack's policy agents, or be left out for its default",
    )
    for key in ("engine", "path", "dsn", "pool_size"):  # both reach the stack as storage[key]
        _require(key not in cfg.storage.params, f"storage.params.{key}", f"set storage.{key} instead")
    _require("id" not in cfg.policy.params, "policy.params.id", "set policy.id instead")
    if not cfg.stack.name:
        resolve_stack_name(cfg, required=False)  # required below, after the config's own checks
    _require(0 <= cfg.seed <= MAX_SEED, "seed", f"got {_short(cfg.seed)}; must be 0..2**63-1")
    r = cfg.runner
    for name in ("sync_timeout_s", "check_timeout_s"):
        v = getattr(r, name)
        _require(0 < v <= MAX_TIMEOUT_S, f"runner.{name}", f"got {_short(v)}; must be > 0 and <= {MAX_TIMEOUT_S:g} s")
    _require(
        1 <= r.seed_batch_size <= MAX_SEED_BATCH,
        "runner.seed_batch_size",
        f"got {_short(r.seed_batch_size)}; must be 1..{MAX_SEED_BATCH}",
    )
    _require(
        1 <= r.repeat <= MAX_REPEAT,
        "runner.repeat",
        f"got {r.repeat}; must be 1..{MAX_REPEAT} runs (5 is what a rank test at alpha 0.01 needs)",
    )
    _require(0 <= r.warmup <= MAX_WARMUP, "runner.warmup", f"got {r.warmup}; must be 0..{MAX_WARMUP} warm-up runs")
    _check_placement(r.placement)

    kinds = datasets.kinds()
    for kind, size in cfg.datasets.items():
        _require(
            kind in kinds,
            f"datasets.{kind}",
            f"unknown dataset kind{did_you_mean(kind, kinds)}; allowed: {', '.join(kinds)}",
        )
        _require(
            isinstance(size, int) and 0 <= size <= MAX_DATASET,
            f"datasets.{kind}",
            f"got {_short(size)}; must be an integer 0..{MAX_DATASET:,}",
        )
    rows = sum(cfg.datasets.values()) * topo.durable
    budget = memory_bytes() * MEMORY_SHARE
    _require(
        rows * SEEDED_ROW_BYTES <= budget,
        "datasets",
        f"{rows:,} seeded entities in all (each dataset on each of {topo.durable} durable node(s)) need about "
        f"{rows * SEEDED_ROW_BYTES / 2**30:.1f} GiB, more than half this machine's "
        f"{memory_bytes() / 2**30:.1f} GiB; seed fewer",
    )

    suites = catalog.suites()
    _require(
        cfg.suite in suites,
        "suite",
        f"got {cfg.suite!r}{did_you_mean(cfg.suite, suites)}; known suites: {', '.join(sorted(suites))}",
    )
    if not cfg.phases:
        cfg.phases = [
            PhaseConfig(name=p.name, target=p.target, params=dict(p.params), label=p.label)
            for p in suites[cfg.suite].phases
        ]
    phases = catalog.phases()
    all_knobs: set[str] = set()
    for spec in phases.values():
        all_knobs |= catalog.knob_names(spec)
    for key in cfg.workload:
        _require(
            key in all_knobs,
            f"workload.{key}",
            f"unknown knob{did_you_mean(key, all_knobs)}; knobs of the registered phases: "
            f"{', '.join(sorted(all_knobs))}",
        )
    labels: set[str] = set()
    phase_memory: list[tuple[int, str, str, str]] = []  # (bytes, path, title, what it holds) per estimate
    for i, ph in enumerate(cfg.phases):
        p = f"phases[{i}]"
        _require(
            ph.name in phases,
            f"{p}.name",
            f"got {ph.name!r}{did_you_mean(ph.name, phases)}; known phases: {', '.join(sorted(phases))}",
        )
        spec = phases[ph.name]
        _require(ph.target in ROLES, f"{p}.target", f"got {ph.target!r}; allowed: {', '.join(ROLES)}")
        _require(
            ph.target in spec.targets,
            f"{p}.target",
            f"phase {ph.name!r} cannot target {ph.target!r}; allowed: {', '.join(spec.targets)}",
        )
        if ph.target == "ephemeral":
            _require(
                topo.ephemeral >= 1,
                f"{p}.target",
                f"phase {ph.name!r} targets ephemeral nodes but topology.ephemeral is 0; add ephemerals or target durable",
            )
        _require(
            ph.title not in labels, f"{p}.label", f"{ph.title!r} appears twice; give one of them a distinct `label`"
        )
        labels.add(ph.title)
        shared = {k: v for k, v in cfg.workload.items() if k in catalog.knob_names(spec)}
        build_knobs(spec, shared, "workload")
        knobs = build_knobs(spec, {**shared, **ph.params}, f"{p}.params")
        estimate, key = getattr(knobs, "memory_bytes", None), getattr(knobs, "memory_key", None)
        if callable(estimate):
            phase_memory.append((int(estimate()), p, ph.title, key() if callable(key) else p))
    _check_phase_memory(phase_memory, rows * SEEDED_ROW_BYTES)

    if cfg.thresholds:
        # a pattern that can match nothing would let a gate pass silently; refuse it before the run
        check_patterns(
            parse_thresholds(cfg.thresholds),
            [(ph.title, catalog.metric_patterns(phases[ph.name])) for ph in cfg.phases],
        )

    if check_stack:
        resolve_stack_name(cfg)
        try:
            factory = plugins.resolve_stack(cfg.stack.name)
        except StackError as exc:
            raise ConfigError(str(exc), "stack.name") from None
        run_stack_validate(factory, stack_settings(cfg), cfg.stack.name)


def phase_knobs(cfg: SproutConfig) -> list[tuple[PhaseConfig, dict[str, Any], dict[str, Any]]]:
    """Per phase of a validated config: the knob values the config sets (`workload` and the
    phase's `params`, after --set) and the rest at their defaults, all type-converted."""
    phases = catalog.phases()
    out = []
    for i, ph in enumerate(cfg.phases):
        spec = phases[ph.name]
        given = {k: v for k, v in cfg.workload.items() if k in catalog.knob_names(spec)} | ph.params
        knobs = dataclasses.asdict(build_knobs(spec, given, f"phases[{i}].params"))
        out.append(
            (ph, {k: v for k, v in knobs.items() if k in given}, {k: v for k, v in knobs.items() if k not in given})
        )
    return out


MAX_KNOB = 100_000_000
"""Upper bound of an integer knob that declares none (docs/configuration.md, "Bounds")."""


def build_knobs(spec: PhaseSpec, values: dict[str, Any], path: str) -> Any:
    """The phase's knob dataclass from `values`, type- and range-checked (errors name `path.knob`)."""
    hints = typing.get_type_hints(spec.knobs)
    names = catalog.knob_names(spec)
    kwargs = {}
    for key, value in values.items():
        p = f"{path}.{key}"
        if key not in names:
            raise ConfigError(
                f"phase {spec.name!r} has no such knob{did_you_mean(key, names)}; "
                f"its knobs: {', '.join(sorted(names))}",
                p,
            )
        v = coerce(value, hints[key], p)
        meta = next(f.metadata for f in dataclasses.fields(spec.knobs) if f.name == key)
        if meta.get("choices") and v not in meta["choices"]:
            raise ConfigError(f"got {v!r}; allowed: {', '.join(map(str, meta['choices']))}", p)
        if meta.get("min") is not None and isinstance(v, (int, float)) and v < meta["min"]:
            raise ConfigError(f"got {v!r}; must be >= {meta['min']}", p)
        high = meta.get("max")
        if high is None and isinstance(v, int) and not isinstance(v, bool):
            high = MAX_KNOB  # counts a phase loops over or allocates: bounded even when undeclared
        if high is not None and isinstance(v, (int, float)) and v > high:
            raise ConfigError(f"got {_short(v)}; must be <= {high:,}", p)
        kwargs[key] = v
    knobs = spec.knobs(**kwargs)
    check = getattr(knobs, "validate", None)
    if callable(check):
        check(path)
    return knobs
