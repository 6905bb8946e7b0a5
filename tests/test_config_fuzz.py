"""Property-based config fuzzing: a valid config with one field set to a hostile value (wrong
type, huge or negative number, unknown name, deep nesting, control characters), or a file of
garbage bytes. `sprout validate` either accepts it or refuses it with exactly one line
naming a field, exit 2; never a traceback, a hang or another exit code."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sprout_harness.config import load_yaml
from support.cli import ROOT, invoke

BASE = load_yaml(ROOT / "configs" / "leveldb-ephemeral.yaml")


# Every field path of the base config (and a few it leaves to defaults), as key lists.
def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(BASE) + [
    ("runner", "seed_batch_size"),
    ("storage", "pool_size"),
    ("storage", "params", "sync"),
    ("policy", "params"),
    ("stack", "params", "request_timeout"),
    ("thresholds",),
    ("workload", "ops"),
    ("nonsense",),
]

hostile = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**30, -1, 0, 2**63, 1e15, 1e308, float("inf"), float("nan"), -0.0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["x" * 5000, "\x1b[31mred", "\x00", "../../etc", "os:system", "1e12"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.recursive(st.integers(), lambda c: st.lists(c, max_size=2), max_leaves=40),
)


def _set(cfg: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = cfg
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
    node[path[-1]] = value


def _assert_clean(result: Any) -> None:
    out = result.stdout + result.stderr
    assert "Traceback" not in out, out
    assert result.exit_code in (0, 2), (result.exit_code, out[-500:])
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-500:]
        assert len(lines[0]) <= 520 and "\x1b" not in lines[0]


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), value=hostile)
def test_one_hostile_field_is_accepted_or_one_line(tmp_path: Path, path: tuple[Any, ...], value: Any) -> None:
    cfg = copy.deepcopy(BASE)
    _set(cfg, path, value)
    f = tmp_path / "fuzz.yaml"
    f.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    _assert_clean(invoke("validate", str(f)))


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_garbage_bytes_are_one_line(tmp_path: Path, data: bytes) -> None:
    f = tmp_path / "garbage.yaml"
    f.write_bytes(data)
    result = invoke("validate", str(f))
    _assert_clean(result)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), text=st.text(max_size=30))
def test_set_overrides_are_accepted_or_one_line(path: tuple[Any, ...], text: str) -> None:
    dotted = ".".join(str(k) for k in path)
    _assert_clean(invoke("validate", "leveldb-ephemeral", "--set", f"{dotted}={text}"))
