"""Thresholds (k6-style `thresholds:`): the expression grammar, glob overlap, `sprout validate`
refusing patterns that match nothing, evaluation on real runs, the console and HTML
presentation, and every phase's metric declaration checked against what it really records."""

from __future__ import annotations

import fnmatch
import io
import itertools
import json
import math
import re
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from sprout_harness.cli import cli
from sprout_harness.config import load_config
from sprout_harness.config.load import config_from_dict
from sprout_harness.contracts.errors import ConfigError
from sprout_harness.metrics.results import RunResult, load_run
from sprout_harness.metrics.threshold_rules import (
    STATS,
    UNITS_NS,
    ChecksRule,
    MetricRule,
    common_match,
    field_path,
    parse_expression,
    parse_thresholds,
)
from sprout_harness.metrics.thresholds import NO_MATCH, evaluate, statistic
from sprout_harness.reports import json_report
from sprout_harness.reports import thresholds as threshold_report
from sprout_harness.reports.html import render_html
from sprout_harness.topology.runner import run_sync
from sprout_harness.workloads import catalog
from support.stacks import DictStack

ROOT = Path(__file__).resolve().parents[1]
PATTERN = "*/lag.notify"


def _error(fn, *args) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        fn(*args)
    text = str(info.value)
    assert "\n" not in text
    return text


# -- the expression grammar ---------------------------------------------------------------------

numbers = st.one_of(
    st.integers(0, 10**6).map(str),
    st.floats(0, 1e6, allow_nan=False, allow_infinity=False).map(lambda f: f"{f:.6g}"),
    st.integers(0, 999).map(lambda i: f".{i}"),
)
spaces = st.sampled_from(["", " ", "  "])


@given(
    op=st.sampled_from(["<", "<=", ">", ">="]),
    num=numbers,
    unit=st.sampled_from(sorted(UNITS_NS)),
    a=spaces,
    b=spaces,
    c=spaces,
)
def test_valid_time_bounds_parse_to_ns(op, num, unit, a, b, c):
    got_op, bound = parse_expression(f"{a}{op}{b}{num}{c}{unit}{a}", "p99", "x")
    assert got_op == op and math.isclose(bound, float(num) * UNITS_NS[unit], rel_tol=1e-12)


@given(op=st.sampled_from(["<", "<=", ">", ">="]), n=st.integers(0, 10**9), b=spaces)
def test_count_bounds_are_bare_numbers(op, n, b):
    assert parse_expression(f"{op}{b}{n}", "count", "x") == (op, float(n))
    assert "drop the unit" in _error(parse_expression, f"{op} {n}ms", "count", "x")


@given(
    garbage=st.one_of(
        st.text().filter(lambda s: not any(ch.isdigit() for ch in s)),
        st.builds(
            lambda n, u: f"< {n}{u}",
            st.integers(0, 99),
            st.sampled_from(["parsecs", "m", "h", "min", "sec", "MS", "Ms", "nsec"]),
        ),
        st.builds(lambda n, u: f"{n}{u}", st.integers(0, 99), st.sampled_from(sorted(UNITS_NS))),
        st.integers(),
        st.floats(),
        st.none(),
        st.lists(st.integers(), max_size=2),
    )
)
def test_garbage_is_one_line_naming_the_field(garbage):
    path = field_path(PATTERN, "p99")
    text = _error(parse_thresholds, {PATTERN: {"p99": garbage}})
    assert text.startswith(f"{path}: got ") and 'write a bound like "< 5ms"' in text


def test_error_messages_name_the_field_and_the_fix():
    assert field_path(PATTERN, "p99") == 'thresholds."*/lag.notify".p99'
    assert _error(parse_thresholds, {PATTERN: {"p99": "5 parsecs"}}) == (
        'thresholds."*/lag.notify".p99: got \'5 parsecs\'; write a bound like "< 5ms" (units ns, us, ms, s)'
    )
    assert "give the bound a unit" in _error(parse_thresholds, {PATTERN: {"p99": "< 5"}})
    assert "must be >= 0" in _error(parse_thresholds, {PATTERN: {"p99": "< -1ms"}})
    for bad in ("< nan ms", "< inf s", "< 1e400ns", "< 1e300s"):
        assert "finite" in _error(parse_thresholds, {PATTERN: {"max": bad}}), bad
    text = _error(parse_thresholds, {PATTERN: {"p98": "< 5ms"}})
    assert text.startswith('thresholds."*/lag.notify".p98: unknown statistic') and "allowed: p50" in text
    assert "did you mean 'mean'" in _error(parse_thresholds, {PATTERN: {"maen": "< 5ms"}})
    assert _error(parse_thresholds, {PATTERN: "< 5ms"}).startswith(
        "thresholds.\"*/lag.notify\": got '< 5ms'; expected a mapping of statistic -> bound"
    )
    assert "no statistic given" in _error(parse_thresholds, {PATTERN: {}})
    assert "empty pattern" in _error(parse_thresholds, {"": {"p99": "< 1ms"}})
    assert _error(parse_thresholds, ["x"]).startswith("thresholds: got ['x']; expected a mapping")
    for bad in (1.0, "100", "101%", "-1%", "all"):
        assert _error(parse_thresholds, {"checks": bad}).startswith(f"thresholds.checks: got {bad!r}")


def test_rules_keep_the_order_written():
    t = parse_thresholds({"a/*": {"p99": "< 5ms", "count": ">= 3"}, "checks": "99.5%", "b": {"mean": "<= 2us"}})
    assert t.rules == (
        MetricRule("a/*", "p99", "<", 5e6, "< 5ms"),
        MetricRule("a/*", "count", ">=", 3.0, ">= 3"),
        ChecksRule(0.995, "99.5%"),
        MetricRule("b", "mean", "<=", 2e3, "<= 2us"),
    )
    assert set(STATS) == {"p50", "p90", "p95", "p99", "p999", "max", "mean", "min", "count"}
    assert parse_thresholds({"x": {"p50": "< 3µs"}}).rules[0].bound == 3000.0


# -- do two globs share a string? -----------------------------------------------------------------

ATOMS = ["a", "b", "/", "*", "?", "[ab]", "[!a]", "[a-b]", "[!/]", "["]
ALPHABET = "ab/[c"  # every character the atoms name, and one they do not
atoms = st.lists(st.sampled_from(ATOMS), max_size=3)


def _segment_match(s: str, q: str) -> bool:
    """`s` matches `q` with `*` and `?` never reading `/` (the atoms hold no literal `.`, so
    every `.` of fnmatch's regex is a wildcard)."""
    return re.fullmatch(fnmatch.translate(q).replace(".", "[^/]"), s) is not None


@given(pa=atoms, qa=atoms, segment=st.booleans())
def test_common_match_is_sound_and_complete(pa, qa, segment):
    p, q = "".join(pa), "".join(qa)

    def both(s: str) -> bool:
        return fnmatchcase(s, p) and (_segment_match(s, q) if segment else fnmatchcase(s, q))

    witness = common_match(p, q, q_segment=segment)
    if witness is not None:
        assert both(witness), (p, q, witness)
        return
    # a shortest common string reads one character per step of one pattern or the other
    for n in range(len(pa) + len(qa) + 1):
        for s in map("".join, itertools.product(ALPHABET, repeat=n)):
            assert not both(s), (p, q, s)


def test_common_match_examples():
    assert common_match("*/lag.notify", "live-limit@durable/lag.notify") == "live-limit@durable/lag.notify"
    assert common_match("create@*/create_batch", "create@durable/create_*") is not None
    assert common_match("crate@*/create_batch", "create@durable/create_batch") is None
    # a declared `connector.*` never stands for "connector./lag.notify"
    assert common_match("*/lag.notify", "create@durable/connector.*") is not None
    assert common_match("*/lag.notify", "create@durable/connector.*", q_segment=True) is None
    assert common_match("[!c]*", "create@durable/*") is None


# -- `sprout validate`: patterns must match something the configured phases produce -------------

BASE = {
    "name": "thr",
    "stack": {"name": "loam"},
    "storage": {"engine": "memory"},
    "datasets": {"albums": 200, "pets": 200},
    "phases": ["create", "fetch", "live-limit"],
}


def _validate(tmp_path: Path, thresholds: object, *extra: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "thr.yaml"
    path.write_text(yaml.safe_dump({**BASE, "thresholds": thresholds}, allow_unicode=True))
    return CliRunner().invoke(cli, ["validate", str(path), *extra], catch_exceptions=False)


def _one_error(result) -> str:  # type: ignore[no-untyped-def]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_validate_accepts_patterns_the_suite_produces(tmp_path):
    ok = {
        "create@*/create_batch": {"p50": "< 2ms"},
        PATTERN: {"p99": "< 5ms"},
        "*/fetch:*": {"max": "< 1s"},
        "live-limit@durable/lag.window_refill": {"count": ">= 1"},
        "*/connector.*": {"p99": "< 1ms"},
        "*": {"p50": "< 1s"},
        "checks": "100%",
    }
    r = _validate(tmp_path, ok)
    assert r.exit_code == 0, r.output


def test_validate_refuses_a_pattern_that_matches_nothing(tmp_path):
    line = _one_error(_validate(tmp_path, {"crate@*/create_batch": {"p50": "< 2ms"}}))
    assert line.startswith('error: thresholds."crate@*/create_batch": matches no metric of the configured phases')
    assert "did you mean 'create@durable/create_batch'" in line and "create@durable/create_batch" in line
    for pattern in ("*/lag.notfy", "writers@durable/update", "create@durable/connector.*/x", "Create@*"):
        assert f'thresholds."{pattern}": matches no metric' in _one_error(
            _validate(tmp_path, {pattern: {"p99": "< 1s"}})
        )


def test_validate_reports_grammar_errors_through_the_cli(tmp_path):
    line = _one_error(_validate(tmp_path, {PATTERN: {"p99": "5 parsecs"}}))
    assert line == (
        'error: thresholds."*/lag.notify".p99: got \'5 parsecs\'; write a bound like "< 5ms" (units ns, us, ms, s)'
    )
    line = _one_error(_validate(tmp_path, {}, "--set", 'thresholds={"*/get": {p99: "< 1ms"}, checks: "ninety"}'))
    assert line.startswith("error: thresholds.checks: got 'ninety'")


def test_an_undeclared_phase_lets_patterns_under_its_title_pass():
    spec = catalog.PhaseSpec(
        name="adhoc-threshold-test",
        summary="",
        run=catalog.get_phase("create").run,
        knobs=catalog.get_phase("create").knobs,
    )
    catalog.register_phase(spec)
    try:
        cfg = {**BASE, "phases": ["adhoc-threshold-test"]}
        config_from_dict({**cfg, "thresholds": {"adhoc-threshold-test@durable/whatever": {"p99": "< 1s"}}})
        with pytest.raises(ConfigError, match="matches no metric"):
            config_from_dict({**cfg, "thresholds": {"create@*/create_batch": {"p99": "< 1s"}}})
    finally:
        catalog._PHASES.pop(spec.name)


# -- evaluation on real runs ------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_result() -> RunResult:
    cfg = config_from_dict(
        {
            "stack": {"name": "loam"},
            "name": "thr",
            "storage": {"engine": "memory"},
            "datasets": {"albums": 300, "pets": 300},
            "topology": {"ephemeral": 1},
            "phases": [
                {"name": "create", "params": {"count": 40, "batch_size": 10}},
                {"name": "fetch", "params": {"get_ops": 30, "fetch_ops": 20}},
                {"name": "live-limit", "params": {"ops": 6, "subscribers": 2}},
                {"name": "writers", "target": "ephemeral", "params": {"ops": 20}},
            ],
        }
    )
    result = run_sync(cfg)
    assert result.status == "ok", result.reason
    return result


def test_bounds_hold_and_cross_on_the_observed_figures(run_result):
    metrics = run_result.metrics()
    batch = metrics["create@durable/create_batch"]
    exact_max = batch.max
    out = evaluate(
        run_result,
        {
            "create@*/create_batch": {"count": ">= 4", "max": f"<= {exact_max}ns"},
            "create@durable/create_*": {"count": "> 4", "max": f"< {exact_max}ns"},
        },
    )
    assert [o.ok for o in out] == [True, True, False, False]
    assert out[0].values == {"create@durable/create_batch": 4.0}
    assert out[1].values == {"create@durable/create_batch": float(exact_max)}
    assert "create@durable/create_batch = 4" in out[2].detail and out[2].detail.startswith("1 of 1 matched")


def test_every_matched_metric_must_satisfy_the_bound(run_result):
    metrics = run_result.metrics()
    fetches = {n: h for n, h in metrics.items() if fnmatchcase(n, "*/fetch:*")}
    assert len(fetches) >= 3
    (ok,) = evaluate(run_result, {"*/fetch:*": {"p99": "< 60s"}})
    assert ok.ok and ok.values == {n: statistic(h, "p99") for n, h in fetches.items()}
    # a bound between the fastest and the slowest p99: only the slower ones cross it
    values = sorted(ok.values.values())
    mid = (values[0] + values[-1]) / 2
    (crossed,) = evaluate(run_result, {"*/fetch:*": {"p99": f"< {mid}ns"}})
    slow = [n for n, v in ok.values.items() if v >= mid]
    assert not crossed.ok and crossed.detail.startswith(f"{len(slow)} of {len(fetches)} matched metrics not < ")
    assert threshold_report.observed(crossed)[1] == max(ok.values, key=lambda n: ok.values[n])
    lags = evaluate(run_result, {PATTERN: {"p50": "> 0ns", "mean": "< 60s", "min": ">= 0ns", "p999": "< 60s"}})
    assert all(o.ok for o in lags) and set(lags[0].values) == {"live-limit@durable/lag.notify"}


def test_connector_delays_are_metrics_too(run_result):
    (out,) = evaluate(run_result, {"writers@ephemeral/connector.*": {"count": ">= 1"}})
    assert out.ok and out.values and all(n.startswith("writers@ephemeral/connector.") for n in out.values)


def test_a_rule_matching_no_metric_of_the_run_fails(run_result):
    (out,) = evaluate(run_result, {"churn@durable/*": {"p99": "< 1s"}})
    assert not out.ok and out.detail == NO_MATCH and out.values == {}


def test_an_unsupported_phase_fails_its_rules():
    cfg = config_from_dict(
        {
            "name": "dict-thr",
            "stack": {"name": "dict"},
            "storage": {"engine": "dict"},
            "datasets": {"pets": 50, "albums": 0},
            "phases": ["connection-scaling"],
            "thresholds": {"connection-scaling@*/connect": {"p99": "< 1s"}},
        }
    )
    result = run_sync(cfg, factory=DictStack)
    assert result.status == "ok" and result.phases[0].status == "unsupported"
    (out,) = evaluate(result, cfg.thresholds)
    assert not out.ok and out.detail == NO_MATCH


def test_checks_are_the_fraction_passed_over_the_whole_run(run_result):
    total = sum(len(p.checks) for p in run_result.phases)
    assert total >= 4
    (out,) = evaluate(run_result, {"checks": "100%"})
    assert out.ok and out.values == {"checks": 1.0} and out.pattern == out.stat == "checks"
    # a real failed check: fetch on an empty collection
    cfg = config_from_dict(
        {
            "stack": {"name": "loam"},
            "name": "thr-fail",
            "storage": {"engine": "memory"},
            "datasets": {"albums": 0, "pets": 50},
            "phases": [
                {"name": "create", "params": {"collection": "pets", "count": 20, "batch_size": 10}},
                {"name": "fetch", "params": {"get_ops": 5, "fetch_ops": 0}},
            ],
        }
    )
    failed = run_sync(cfg)
    checks = [c for p in failed.phases for c in p.checks]
    passed = sum(c.ok for c in checks)
    assert failed.status == "failed" and 0 < passed < len(checks)
    strict, loose = evaluate(failed, {"checks": "100%"}) + evaluate(
        failed, {"checks": f"{100 * passed / len(checks)}%"}
    )
    assert not strict.ok and strict.detail.startswith(f"{passed} of {len(checks)} checks passed")
    assert loose.ok and loose.values["checks"] == pytest.approx(passed / len(checks))


def test_outcomes_reach_json_console_and_html(run_result, tmp_path):
    run_result.thresholds = evaluate(
        run_result, {"*/get": {"p99": "< 60s"}, "*/verify_fetch": {"max": "< 1ns"}, "checks": "100%"}
    )
    try:
        back = load_run(json_report.write(run_result, tmp_path / "r.json"))
        assert back.thresholds == run_result.thresholds and len(back.thresholds_failed) == 1
        buf = io.StringIO()
        threshold_report.render(run_result.thresholds, Console(file=buf, width=200, color_system=None))
        text = buf.getvalue()
        assert "*/verify_fetch" in text and "CROSSED" in text and "thresholds: 1 of 3 crossed" in text
        assert "fetch@durable/get" in text and " ms" in text
        page = render_html(run_result)
        assert '<table id="thresholds">' in page and "CROSSED" in page and "thresholds: 1 of 3 crossed" in page
    finally:
        run_result.thresholds = []
    assert '<table id="thresholds">' not in render_html(run_result)
    buf = io.StringIO()
    threshold_report.render([], Console(file=buf))
    assert buf.getvalue() == ""


# -- every phase's declaration matches what it records ------------------------------------------

TINY = {
    "create": {"count": 40, "batch_size": 10, "readback_sample": 5},
    "fetch": {"get_ops": 20, "fetch_ops": 30},
    "live-limit": {"ops": 6, "subscribers": 2},
    "writers": {"ops": 20, "writers": 2, "readback_sample": 10},
    "churn": {"subscribers": 2, "cycles": 1},
    "crud": {"operations": 60, "workers": 2},
    **{
        f"ycsb-{w}": {
            "operations": 40,
            "workers": 2,
            "record_count": 50,
            "field_count": 2,
            "field_length": 8,
            "max_scan_length": 5,
        }
        for w in "abcdef"
    },
    "query-simple": {"queries": 9},
    "query-complex": {"queries": 10},
    "query-sorted": {"queries": 10},
    "query-paginated": {"queries": 3, "page_size": 50},
    "query-large": {"queries": 4, "min_rows": 50},
    "connection-scaling": {"connections": 4, "steps": 2, "commits_per_step": 2, "commit_interval_ms": 1},
    "subscription-scaling": {
        "subscriptions": 4,
        "connections": 2,
        "steps": 2,
        "commits_per_step": 2,
        "commit_interval_ms": 1,
    },
    "event-throughput": {"subscribers": 4, "connections": 2, "steps": 2, "commits_per_step": 4},
    "filtered-subscriptions": {
        "subscriptions": 4,
        "connections": 2,
        "match_fraction": 0.5,
        "commits": 4,
        "baseline_commits": 3,
    },
    "trigger": {"commits": 10, "entities": 4},
    "isolation": {"databases": 2, "rows": 10, "ops": 6, "foreign_gets": 3},
    "asv-albums-create": {"count": 40, "batch_size": 10, "repeats": 1},
    "asv-albums-get": {"count": 40, "batch_size": 10, "repeats": 1, "gets": 20},
    "asv-notify-lag": {"samples": 5},
    "asv-idle-memory": {"queries": 4},
}
PHASE_TARGETS = [(name, target) for name, spec in sorted(catalog.phases().items()) for target in spec.targets]


def test_every_builtin_phase_declares_its_metrics():
    builtin = {n for n, s in catalog.phases().items() if s.run.__module__.startswith("sprout_harness.")}
    assert builtin and all(catalog.get_phase(n).metrics for n in builtin)
    assert builtin <= set(TINY), "give a new phase tiny knobs here so its declaration is checked"


@pytest.mark.parametrize(("name", "target"), PHASE_TARGETS, ids=[f"{n}@{t}" for n, t in PHASE_TARGETS])
def test_declared_metrics_cover_what_the_phase_records(name, target):
    spec = catalog.get_phase(name)
    if spec.metrics is None:
        pytest.skip(f"{name} declares no metrics (any name may appear)")
    cfg = config_from_dict(
        {
            "stack": {"name": "loam"},
            "name": "decl",
            "storage": {"engine": "memory"},
            "datasets": {"albums": 300, "pets": 300},
            "topology": {"durable": 1, "ephemeral": 1},
            "phases": [{"name": name, "target": target, "params": TINY.get(name, {})}],
        }
    )
    result = run_sync(cfg)
    phase = result.phases[0]
    assert phase.status == "ok", (phase.status, phase.reason)
    patterns = catalog.metric_patterns(spec)
    assert patterns is not None
    produced = [n.partition("/")[2] for n in phase.metrics()]
    assert produced
    undeclared = [n for n in produced if not any(fnmatchcase(n, p) for p in patterns)]
    assert not undeclared, f"{name} records {undeclared}, not in its PhaseSpec.metrics {spec.metrics}"
    assert not any("/" in n for n in produced)  # declared wildcards never stand for "/"


def test_the_documented_example_validates_on_leveldb_local():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", doc[doc.index("### `thresholds`") :], re.S)
    assert block is not None
    example = yaml.safe_load(block.group(1))["thresholds"]
    cfg = load_config(ROOT / "configs" / "leveldb-local.yaml", [f"thresholds={json.dumps(example)}"])
    assert cfg.thresholds == example and len(parse_thresholds(example).rules) == 7


# -- sprout run: thresholds judged at the end, exit 99 ----------------------------------------


def _run_cli(tmp_path: Path, thresholds: dict[str, object], *extra: str) -> tuple[int, dict[str, object]]:
    import subprocess
    import sys

    cfg = tmp_path / "thr.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                **BASE,
                "stack": {"name": "loam"},
                "storage": {"engine": "leveldb"},
                "phases": [{"name": "create", "params": {"count": 200}}],
                "thresholds": thresholds,
            },
            sort_keys=False,
        )
    )
    out = tmp_path / "thr.json"
    r = subprocess.run(
        [sys.executable, "-m", "sprout_harness", "run", str(cfg), "--quiet", "--json", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return r.returncode, json.loads(out.read_text())


def test_run_exits_99_when_a_threshold_is_crossed_and_0_when_met(tmp_path: Path) -> None:
    code, report = _run_cli(tmp_path, {"create@*/create_batch": {"p50": "< 1ns"}, "checks": "100%"})
    assert code == 99 and report["status"] == "ok"
    assert [t["ok"] for t in report["thresholds"]] == [False, True]
    code, report = _run_cli(tmp_path, {"create@*/create_batch": {"p50": "< 60s"}})
    assert code == 0 and [t["ok"] for t in report["thresholds"]] == [True]


def test_repeated_run_judges_thresholds_on_the_merged_result(tmp_path: Path) -> None:
    code, report = _run_cli(tmp_path, {"create@*/create_batch": {"count": "> 10000"}}, "--repeat", "2")
    assert code == 99 and len(report["runs"]) == 2
    (outcome,) = report["thresholds"]
    merged = sum(r["metrics"]["create@durable/create_batch"]["count"] for r in report["runs"])
    assert outcome["values"]["create@durable/create_batch"] == merged
