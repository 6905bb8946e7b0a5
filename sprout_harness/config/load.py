"""Read a YAML config, apply `--set path=value` overrides, and build a validated SproutConfig."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable

import yaml

from sprout_harness.config.schema import SproutConfig
from sprout_harness.config.text import clip, short
from sprout_harness.config.validate import build_config
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
    raise ConfigError(
        f"config file {name_or_path!r} not found{did_you_mean(Path(name_or_path).stem, names)}; "
        f"give a path to a YAML file or a reference config: {', '.join(names) or 'none'}"
    )


MAX_CONFIG_BYTES = 1 << 20
"""A config file larger than this (1 MiB) is refused before it is parsed."""
MAX_DEPTH = 32
"""Nesting levels of mappings and lists a config may have."""
MAX_NODES = 100_000
"""Values (scalars, mappings and lists, YAML aliases counted each time they are used)."""


def _read_text(p: Path) -> str:
    """The file's text: at most MAX_CONFIG_BYTES, UTF-8 (a UTF-8 byte order mark is allowed)."""
    try:
        if p.is_dir():
            raise ConfigError(f"{clip(str(p))}: is a directory; give a YAML file")
        with p.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)  # bounded: /dev/zero or a huge file must not fill memory
    except OSError as exc:
        raise ConfigError(f"{clip(str(p))}: cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{clip(str(p))}: larger than {MAX_CONFIG_BYTES // 1024} KiB; a config is a short YAML "
            "file (is this the right file?)"
        )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(f"{clip(str(p))}: is UTF-16 text; save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{clip(str(p))}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the config as UTF-8"
        ) from None


def _check_shape(data: Any, where: str) -> None:
    """Refuse data nested deeper than MAX_DEPTH or with more than MAX_NODES values.

    Iterative, and counting aliased values each time they are reached, so a recursive
    alias or a "billion laughs" document is refused instead of hanging a later walk.
    """
    todo: list[tuple[Any, int]] = [(data, 0)]
    nodes = 0
    while todo:
        node, depth = todo.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise ConfigError(
                f"{where}: more than {MAX_NODES} values (YAML aliases count each time they are "
                "used); a config is a short file"
            )
        if isinstance(node, (dict, list)):
            if depth >= MAX_DEPTH:
                raise ConfigError(
                    f"{where}: nested more than {MAX_DEPTH} levels deep; a config is a few levels of mappings and lists"
                )
            items = node.values() if isinstance(node, dict) else node
            todo.extend((v, depth + 1) for v in items)
            if isinstance(node, dict):
                todo.extend((k, depth + 1) for k in node if not isinstance(k, str))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The config file's top-level mapping (its `name` defaults to the file name).

    Every problem is a ConfigError naming the file: missing, unreadable, too large, not
    UTF-8, not YAML, nested too deeply, empty, or not a mapping.
    """
    p = find_config(str(path))
    text = _read_text(p)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [""])[0]
        raise ConfigError(f"{clip(str(p))}: not valid YAML{where}: {clip(str(problem))}") from None
    except RecursionError:
        raise ConfigError(
            f"{clip(str(p))}: nested more than {MAX_DEPTH} levels deep; a config is a few levels of mappings and lists"
        ) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"{clip(str(p))}: a value YAML cannot convert: {clip(str(exc))}") from None
    if data is None or data == {}:
        raise ConfigError(
            f"{clip(str(p))}: the config is empty; it needs at least what to run, e.g. "
            "`suite: sprout` or `phases: [create, fetch]`"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{clip(str(p))}: the top level must be a mapping of fields, got {type(data).__name__}")
    _check_shape(data, clip(str(p)))
    data.setdefault("name", p.stem)
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """'a.b.c=value' -> (['a','b','c'], value parsed as a YAML scalar/flow value)."""
    path, sep, raw = item.partition("=")
    path = path.strip()
    if not sep or not path:
        raise ConfigError(f"--set {short(item)}: expected path=value, e.g. topology.ephemeral=2")
    parts = path.split(".")
    if not all(parts):
        raise ConfigError(
            f"--set {short(item)}: empty name in the path; write dot-separated names, "
            "e.g. phases.fetch.params.get_ops=10"
        )
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_CONFIG_BYTES:
        raise ConfigError(f"--set {clip(path)}: the value is larger than {MAX_CONFIG_BYTES // 1024} KiB")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML: the text itself (validation says whether a string fits)
    except (RecursionError, ValueError) as exc:
        raise ConfigError(
            f"--set {clip(path)}: a value YAML cannot read "
            f"({'nested too deeply' if isinstance(exc, RecursionError) else clip(str(exc))})"
        ) from None
    _check_shape(value, f"--set {clip(path)}")
    return parts, value


def apply_overrides(raw: dict[str, Any], sets: Iterable[str]) -> dict[str, Any]:
    """Set each `path=value` in a copy of `raw`.

    Mappings are entered by key (missing keys are created; validation rejects unknown ones);
    lists by index (0-based, never negative) or, for `phases`, by phase label/name
    (`phases.fetch.params.rounds=5`).
    """
    out = copy.deepcopy(raw)
    for item in sets:
        parts, value = parse_override(item)
        node: Any = out
        for i, key in enumerate(parts):
            last = i == len(parts) - 1
            where = ".".join(parts[: i + 1])
            if isinstance(node, list):
                idx = _list_index(node, key, clip(where))
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
                raise ConfigError(
                    f"--set {short(item)}: {clip('.'.join(parts[:i]))} is a {type(node).__name__}, "
                    "not a mapping or list"
                )
    return out


def _list_index(node: list, key: str, where: str) -> int:
    if key.startswith("-") and key[1:].isascii() and key[1:].isdigit():
        # Python's "from the end" would silently edit another item than the user counted
        raise ConfigError(
            f"--set {where}: negative index {clip(key)}; lists are indexed from 0 "
            f"(this one has {len(node)} items: 0..{len(node) - 1}), or name a phase by label/name"
        )
    if key.isascii() and key.isdigit():
        idx = int(key) if len(key) <= 18 else len(node)  # a 5000-digit index is out of range, not an int() error
        if idx < len(node):
            return idx
        raise ConfigError(f"--set {where}: index {clip(key)} out of range (the list has {len(node)} items)")
    matches = [
        i
        for i, it in enumerate(node)
        if it == key or (isinstance(it, dict) and key in (it.get("label"), it.get("name")))
    ]
    if len(matches) == 1:
        return matches[0]
    names = [
        it if isinstance(it, str) else (it.get("label") or it.get("name")) for it in node if isinstance(it, (str, dict))
    ]
    if not matches:
        raise ConfigError(f"--set {where}: no item named {short(key)} (items: {clip(', '.join(map(str, names)))})")
    raise ConfigError(f"--set {where}: {short(key)} names several items; use an index or give them labels")


def load_config(path: str | Path, sets: Iterable[str] = (), check_stack: bool = False) -> SproutConfig:
    """Load, override and validate; raises ConfigError naming the field path."""
    raw = apply_overrides(load_yaml(path), sets)
    return build_config(raw, check_stack=check_stack)


def config_from_dict(raw: dict[str, Any], sets: Iterable[str] = (), check_stack: bool = False) -> SproutConfig:
    return build_config(apply_overrides(raw, sets), check_stack=check_stack)
