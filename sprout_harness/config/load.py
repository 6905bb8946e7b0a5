"""Read a YAML config, apply `--set path=value` overrides, and build a validated SproutConfig."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable

import yaml

from sprout_harness.config.schema import SproutConfig
from sprout_harness.contracts.errors import ConfigError, did_you_mean

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def find_config(name_or_path: str) -> Path:
    """A path as given, or the name of a reference config in configs/ (with or without .yaml)."""
    p = Path(name_or_path)
    if p.exists():
        return p
    for cand in (CONFIG_DIR / name_or_path, CONFIG_DIR / f"{name_or_path}.yaml"):
        if cand.exists():
            return cand
    names = sorted(c.stem for c in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"config file {name_or_path!r} not found{did_you_mean(Path(name_or_path).stem, names)}; "
                      f"give a path to a YAML file or a reference config: {', '.join(names) or 'none'}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = find_config(str(path))
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{p}: not valid YAML{where}: {problem}") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of fields, got {type(data).__name__}")
    data.setdefault("name", p.stem)
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """'a.b.c=value' -> (['a','b','c'], value parsed as a YAML scalar/flow value)."""
    path, sep, raw = item.partition("=")
    path = path.strip()
    if not sep or not path:
        raise ConfigError(f"--set {item!r}: expected path=value, e.g. topology.ephemeral=2")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path.split("."), value


def apply_overrides(raw: dict[str, Any], sets: Iterable[str]) -> dict[str, Any]:
    """Set each `path=value` in a copy of `raw`.

    Mappings are entered by key (missing keys are created; validation rejects unknown ones);
    lists by index or, for `phases`, by phase label/name (`phases.fetch.params.rounds=5`).
    """
    out = copy.deepcopy(raw)
    for item in sets:
        parts, value = parse_override(item)
        node: Any = out
        for i, key in enumerate(parts):
            last = i == len(parts) - 1
            where = ".".join(parts[: i + 1])
            if isinstance(node, list):
                idx = _list_index(node, key, where)
                if last:
                    node[idx] = value
                else:
                    if isinstance(node[idx], str):  # a bare phase name: expand to a mapping
                        node[idx] = {"name": node[idx]}
                    node = node[idx]
            elif isinstance(node, dict):
                if last:
                    node[key] = value
                else:
                    if node.get(key) is None:
                        node[key] = {}
                    node = node[key]
            else:
                raise ConfigError(f"--set {item!r}: {'.'.join(parts[:i])} is a {type(node).__name__}, not a mapping or list")
    return out


def _list_index(node: list, key: str, where: str) -> int:
    if key.lstrip("-").isdigit():
        idx = int(key)
        if -len(node) <= idx < len(node):
            return idx % len(node)
        raise ConfigError(f"--set {where}: index {idx} out of range (the list has {len(node)} items)")
    matches = [
        i for i, it in enumerate(node)
        if it == key or (isinstance(it, dict) and key in (it.get("label"), it.get("name")))
    ]
    if len(matches) == 1:
        return matches[0]
    names = [it if isinstance(it, str) else (it.get("label") or it.get("name")) for it in node if isinstance(it, (str, dict))]
    if not matches:
        raise ConfigError(f"--set {where}: no item named {key!r} (items: {', '.join(map(str, names))})")
    raise ConfigError(f"--set {where}: {key!r} names several items; use an index or give them labels")


def load_config(path: str | Path, sets: Iterable[str] = (), check_stack: bool = False) -> SproutConfig:
    """Load, override and validate; raises ConfigError naming the field path."""
    from sprout_harness.config.validate import build_config

    raw = apply_overrides(load_yaml(path), sets)
    return build_config(raw, check_stack=check_stack)


def config_from_dict(raw: dict[str, Any], sets: Iterable[str] = (), check_stack: bool = False) -> SproutConfig:
    from sprout_harness.config.validate import build_config

    return build_config(apply_overrides(raw, sets), check_stack=check_stack)
