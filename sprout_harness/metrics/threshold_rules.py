"""The `thresholds:` section, k6-style: parse it into typed rules and check its patterns.

Keys are case-sensitive fnmatch globs over metric names (`<phase title>/<op>`,
`<phase title>/lag.<name>`, `<phase title>/connector.<type>`), each mapping statistics to
bounds (`{p99: "< 5ms"}`); the reserved key `checks` takes the minimum fraction of passed
checks (`"100%"`). Syntax and semantics: docs/configuration.md, section `thresholds`.
`config.validate` refuses a config whose rules do not parse or match nothing; `thresholds`
judges a finished run against them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Iterable, Sequence

from sprout_harness.contracts.errors import ConfigError, did_you_mean

CHECKS_KEY = "checks"
TIME_STATS = ("p50", "p90", "p95", "p99", "p999", "max", "mean", "min")
STATS = (*TIME_STATS, "count")
PERCENTILE_OF = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
UNITS_NS = {"ns": 1.0, "us": 1e3, "\u00b5s": 1e3, "\u03bcs": 1e3, "ms": 1e6, "s": 1e9}

_EXPRESSION = re.compile(
    r"^\s*(?P<op><=|>=|<|>)\s*"
    r"(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf(?:inity)?|nan))\s*"
    r"(?P<unit>ns|us|\u00b5s|\u03bcs|ms|s)?\s*$",
    re.IGNORECASE,
)
_PERCENT = re.compile(
    r"^\s*(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf(?:inity)?|nan))\s*%\s*$", re.IGNORECASE
)
_TIME_HINT = 'write a bound like "< 5ms" (units ns, us, ms, s)'
_COUNT_HINT = 'write a bound like ">= 100" (a number of samples, no unit)'


@dataclass(frozen=True)
class MetricRule:
    """`stat` of every metric matching `pattern` must satisfy `op bound` (`bound` in ns, or
    samples for `count`); `expression` is the bound as written."""

    pattern: str
    stat: str
    op: str
    bound: float
    expression: str

    def holds(self, value: float) -> bool:
        return {"<": value < self.bound, "<=": value <= self.bound, ">": value > self.bound, ">=": value >= self.bound}[
            self.op
        ]


@dataclass(frozen=True)
class ChecksRule:
    """At least `minimum` (a fraction, 0..1) of the run's checks must pass."""

    minimum: float
    expression: str


@dataclass(frozen=True)
class Thresholds:
    """The parsed section: its rules in the order written."""

    rules: tuple[MetricRule | ChecksRule, ...] = ()

    @property
    def metric_rules(self) -> list[MetricRule]:
        return [r for r in self.rules if isinstance(r, MetricRule)]


def field_path(pattern: str, stat: str | None = None) -> str:
    """The config path of a threshold entry: `thresholds."*/lag.notify".p99` (patterns hold
    dots and slashes, so they are quoted)."""
    key = CHECKS_KEY if pattern == CHECKS_KEY else json.dumps(pattern, ensure_ascii=False)
    return f"thresholds.{key}" + (f".{stat}" if stat is not None else "")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(text: str, got: Any, path: str, hint: str) -> float:
    value = float(text)
    if math.isnan(value) or math.isinf(value):
        raise ConfigError(f"got {_short(got)}; the bound must be a finite number; {hint}", path)
    if value < 0:
        raise ConfigError(f"got {_short(got)}; the bound must be >= 0; {hint}", path)
    return value


def parse_expression(expression: Any, stat: str, path: str) -> tuple[str, float]:
    """`"< 5ms"` -> ("<", 5e6): the operator and the bound in ns (`count`: a bare number of samples)."""
    hint = _COUNT_HINT if stat == "count" else _TIME_HINT
    if not isinstance(expression, str):
        raise ConfigError(f"got {_short(expression)}; {hint}", path)
    m = _EXPRESSION.match(expression)
    if m is None:
        raise ConfigError(f"got {_short(expression)}; {hint}", path)
    value = _number(m["num"], expression, path, hint)
    unit = m["unit"]
    if stat == "count":
        if unit is not None:
            raise ConfigError(
                f'got {_short(expression)}; count is a number of samples, drop the unit (e.g. ">= 100")', path
            )
        return m["op"], value
    if unit is None:
        raise ConfigError(f"got {_short(expression)}; give the bound a unit; {hint}", path)
    if unit not in UNITS_NS:  # case is ignored for nan/inf only: units are case-sensitive ("Ms" is no unit)
        raise ConfigError(f"got {_short(expression)}; unknown unit {unit!r}; {hint}", path)
    bound = value * UNITS_NS[unit]
    if not math.isfinite(bound):
        raise ConfigError(f"got {_short(expression)}; the bound must be a finite number; {hint}", path)
    return m["op"], bound


def parse_percentage(expression: Any, path: str) -> float:
    """`"99.5%"` -> 0.995."""
    hint = 'write a percentage like "100%" or "99.5%"'
    if not isinstance(expression, str) or (m := _PERCENT.match(expression)) is None:
        raise ConfigError(f"got {_short(expression)}; {hint}", path)
    value = _number(m["num"], expression, path, hint)
    if value > 100:
        raise ConfigError(f"got {_short(expression)}; a percentage is 0..100; {hint}", path)
    return value / 100


def parse_thresholds(raw: Any) -> Thresholds:
    """The typed rules of a `thresholds:` mapping; a ConfigError names the exact field."""
    if raw is None:
        return Thresholds()
    if not isinstance(raw, dict):
        raise ConfigError(
            f"got {_short(raw)}; expected a mapping of metric pattern -> {{statistic: bound}}", "thresholds"
        )
    rules: list[MetricRule | ChecksRule] = []
    for key, value in raw.items():
        pattern = str(key)
        if pattern == CHECKS_KEY:
            rules.append(ChecksRule(parse_percentage(value, field_path(pattern)), value.strip()))
            continue
        path = field_path(pattern)
        if not pattern.strip():
            raise ConfigError('an empty pattern matches no metric; write a glob like "*/lag.notify"', path)
        if not isinstance(value, dict):
            raise ConfigError(
                f'got {_short(value)}; expected a mapping of statistic -> bound, e.g. {{p99: "< 5ms"}}', path
            )
        if not value:
            raise ConfigError('no statistic given; add one, e.g. {p99: "< 5ms"}', path)
        for stat_key, expression in value.items():
            stat = str(stat_key)
            if stat not in STATS:
                raise ConfigError(
                    f"unknown statistic{did_you_mean(stat, STATS)}; allowed: {', '.join(STATS)}",
                    field_path(pattern, stat),
                )
            op, bound = parse_expression(expression, stat, field_path(pattern, stat))
            rules.append(MetricRule(pattern, stat, op, bound, expression.strip()))
    return Thresholds(tuple(rules))


# -- can two globs match a common string? ------------------------------------------------------

_ANY = ("any",)
_NOT_SLASH = ("class", True, (("/", "/"),))
# ("star", each) | ("any",) | ("lit", ch) | ("class", negated, ((lo, hi), ...)); `each` is the
# single-character token every character a star reads must satisfy
_Token = tuple[Any, ...]


def _tokens(pattern: str, wildcard: _Token = _ANY) -> list[_Token]:
    """`pattern` as fnmatch reads it: `*`, `?`, `[...]` / `[!...]` (a `]` first is literal, an
    unclosed `[` is a literal `[`), anything else literal. `*` and `?` read characters that
    `wildcard` accepts."""
    out: list[_Token] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if not out or out[-1][0] != "star":
                out.append(("star", wildcard))
        elif c == "?":
            out.append(wildcard)
        elif c == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append(("lit", "["))
                continue
            body = pattern[i:j]
            i = j + 1
            negated = body.startswith("!")
            if negated:
                body = body[1:]
            ranges: list[tuple[str, str]] = []
            k = 0
            while k < len(body):
                if k + 2 < len(body) and body[k + 1] == "-":
                    if body[k] <= body[k + 2]:  # fnmatch drops reversed ranges
                        ranges.append((body[k], body[k + 2]))
                    k += 3
                else:
                    ranges.append((body[k], body[k]))
                    k += 1
            out.append(("class", negated, tuple(ranges)))
        else:
            out.append(("lit", c))
    return out


def _in(ch: str, ranges: Iterable[tuple[str, str]]) -> bool:
    return any(lo <= ch <= hi for lo, hi in ranges)


def _accepts(tok: _Token, ch: str) -> bool:
    if tok == _ANY:
        return True
    if tok[0] == "lit":
        return bool(tok[1] == ch)
    return _in(ch, tok[2]) != tok[1]


def _common_char(a: _Token, b: _Token) -> str | None:
    """A character both single-character tokens accept, or None.

    What both accept is a union of code point intervals, each starting at 0, at a literal,
    or at some range's `lo` or `hi + 1`; so trying those (and a plain letter first, for
    readable witnesses) finds a common character whenever there is one."""
    tried = ["a"]
    for tok in (a, b):
        if tok[0] == "lit":
            tried.append(tok[1])
        elif tok[0] == "class":
            for lo, hi in tok[2]:
                tried.append(lo)
                if ord(hi) < 0x10FFFF:
                    tried.append(chr(ord(hi) + 1))
    tried.append("\x00")
    return next((c for c in tried if _accepts(a, c) and _accepts(b, c)), None)


def common_match(p: str, q: str, q_segment: bool = False) -> str | None:
    """A string both fnmatch globs `p` and `q` match (case-sensitive), or None when there is
    none; with `q_segment`, `*` and `?` of `q` never read a `/`. A breadth-first search over
    pairs of positions in the two patterns: each step reads one character both sides accept
    (a `*` stays put while reading) or lets a `*` end."""
    a, b = _tokens(p), _tokens(q, _NOT_SLASH if q_segment else _ANY)
    start = (0, 0)
    parent: dict[tuple[int, int], tuple[tuple[int, int], str] | None] = {start: None}
    frontier = [start]
    while frontier:
        nxt: list[tuple[int, int]] = []
        for state in frontier:  # grows while iterated: a star ending reads nothing, same layer
            i, j = state
            if i == len(a) and j == len(b):
                chars: list[str] = []
                cur = state
                while (link := parent[cur]) is not None:
                    cur, ch = link
                    chars.append(ch)
                return "".join(reversed(chars))
            ta = a[i] if i < len(a) else None
            tb = b[j] if j < len(b) else None
            moves: list[tuple[tuple[int, int], str]] = []
            if ta is not None and ta[0] == "star":
                moves.append(((i + 1, j), ""))
            if tb is not None and tb[0] == "star":
                moves.append(((i, j + 1), ""))
            if ta is not None and tb is not None and not (ta[0] == "star" and tb[0] == "star"):
                ch = _common_char(ta[1] if ta[0] == "star" else ta, tb[1] if tb[0] == "star" else tb)
                if ch is not None:
                    moves.append(((i if ta[0] == "star" else i + 1, j if tb[0] == "star" else j + 1), ch))
            for target, ch in moves:
                if target not in parent:
                    parent[target] = (state, ch)
                    (frontier if ch == "" else nxt).append(target)
        frontier = nxt
    return None


def escape(text: str) -> str:
    """`text` as a glob that matches exactly it."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def check_patterns(thresholds: Thresholds, produced: Sequence[tuple[str, tuple[str, ...] | None]]) -> None:
    """Every rule's pattern must match at least one metric the configured phases can produce.

    `produced` holds, per phase, its title and the globs of its metric names within the
    phase, whose wildcards never stand for a `/` (None: undeclared, so any name under the
    phase's title may appear). A pattern passes when it and some `<title>/<glob>` can match
    a common string (`common_match`).
    """
    declared = [
        (f"{escape(title)}/{m}", metrics is not None)
        for title, metrics in produced
        for m in (metrics if metrics is not None else ("*",))
    ]
    names = [f"{title}/{m}" for title, metrics in produced for m in (metrics or ()) if not any(c in m for c in "*?[")]
    for rule in {r.pattern: r for r in thresholds.metric_rules}.values():
        if any(common_match(rule.pattern, glob, q_segment=segment) is not None for glob, segment in declared):
            continue
        per_phase = [
            next((f"{title}/{m}" for m in metrics if not any(c in m for c in "*?[")), f"{title}/{metrics[0]}")
            if metrics
            else f"{title}/*"
            for title, metrics in produced
        ]
        shown = ", ".join(per_phase[:4]) + (", ..." if len(per_phase) > 4 else "")
        raise ConfigError(
            f"matches no metric of the configured phases{did_you_mean(rule.pattern, names)}; "
            f"they produce e.g. {shown or 'nothing'}",
            field_path(rule.pattern),
        )


def matches(pattern: str, name: str) -> bool:
    """Whether metric `name` matches threshold `pattern` (fnmatch, case-sensitive)."""
    return fnmatchcase(name, pattern)
