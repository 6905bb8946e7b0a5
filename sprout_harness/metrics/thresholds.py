"""Judge a config's `thresholds:` on a finished run: one `ThresholdOutcome` per rule.

Pure: reads the run's histograms and checks, writes nothing. The syntax is parsed by
`threshold_rules`; docs/configuration.md describes it.
"""

from __future__ import annotations

from typing import Any

from sprout_harness.metrics.histogram import Histogram
from sprout_harness.metrics.results import RunResult, ThresholdOutcome
from sprout_harness.metrics.threshold_rules import (
    CHECKS_KEY,
    PERCENTILE_OF,
    ChecksRule,
    MetricRule,
    matches,
    parse_thresholds,
)

NO_MATCH = "matched no metric in this run"
_SHOWN = 3  # crossing metrics named in a failed rule's detail


def statistic(h: Histogram, stat: str) -> float:
    """`stat` of a non-empty histogram: ns, or samples for `count`."""
    if stat == "count":
        return float(h.count)
    if stat == "max":
        return float(h.max)
    if stat == "min":
        return float(h.min)
    if stat == "mean":
        return float(h.mean)
    return float(h.percentile(PERCENTILE_OF[stat]))


def format_value(stat: str, value: float) -> str:
    """A figure as a rule states it: ms for times, samples for `count`, percent for `checks`."""
    if stat == "count":
        return f"{value:,.0f}"
    if stat == CHECKS_KEY:
        return f"{value * 100:.4g}%"
    return f"{value / 1e6:.4g}ms"


def worst(expression: str, values: dict[str, float]) -> tuple[str, float] | None:
    """The matched metric furthest on the wrong side of the bound: the largest value for an
    upper bound (`<`, `<=`), the smallest for a lower one (`>`, `>=`, and `checks`)."""
    if not values:
        return None
    lower_bound = expression.lstrip().startswith(">") or expression.rstrip().endswith("%")
    pick = min if lower_bound else max
    name = pick(values, key=lambda k: values[k])
    return name, values[name]


def _judge_metric(rule: MetricRule, metrics: dict[str, Histogram]) -> ThresholdOutcome:
    values = {name: statistic(h, rule.stat) for name, h in metrics.items() if matches(rule.pattern, name)}
    if not values:
        return ThresholdOutcome(rule.pattern, rule.stat, rule.expression, False, {}, NO_MATCH)
    crossed = [name for name, v in values.items() if not rule.holds(v)]
    detail = ""
    if crossed:
        named = "; ".join(f"{n} = {format_value(rule.stat, values[n])}" for n in crossed[:_SHOWN])
        more = f"; and {len(crossed) - _SHOWN} more" if len(crossed) > _SHOWN else ""
        detail = f"{len(crossed)} of {len(values)} matched metrics not {rule.expression}: {named}{more}"
    return ThresholdOutcome(rule.pattern, rule.stat, rule.expression, not crossed, values, detail)


def _judge_checks(rule: ChecksRule, run: RunResult) -> ThresholdOutcome:
    checks = [c for p in run.phases for c in p.checks]
    if not checks:
        return ThresholdOutcome(CHECKS_KEY, CHECKS_KEY, rule.expression, False, {}, "no check ran in this run")
    passed = sum(c.ok for c in checks)
    fraction = passed / len(checks)
    ok = fraction >= rule.minimum
    detail = (
        ""
        if ok
        else (
            f"{passed} of {len(checks)} checks passed ({format_value(CHECKS_KEY, fraction)}); "
            f"at least {rule.expression} needed"
        )
    )
    return ThresholdOutcome(CHECKS_KEY, CHECKS_KEY, rule.expression, ok, {CHECKS_KEY: fraction}, detail)


def evaluate(result: RunResult, thresholds: dict[str, Any]) -> list[ThresholdOutcome]:
    """One outcome per rule of the config's `thresholds:` mapping, in the order written.

    A metric rule holds when every metric of the run its pattern matches satisfies the
    bound; one matching none fails (`NO_MATCH`), so a renamed or missing metric never passes
    a gate. `checks` holds when at least that fraction of all phases' checks passed.
    Raises ConfigError on a malformed mapping (validation has normally caught it).
    """
    metrics = result.metrics()
    return [
        _judge_metric(rule, metrics) if isinstance(rule, MetricRule) else _judge_checks(rule, result)
        for rule in parse_thresholds(thresholds).rules
    ]
