"""Performance targets as ratios: a figure of the stack under test over its anchor, read from
the asv results of one commit, printed as a table (figure, anchor, ratio, target, met /
missed by how much).

Generic and harness-level (imports no stack): the targets come from a spec file, a Python
file defining `TARGETS` (default `benchmarks/targets.py`), a dict from a target's name (a
short key such as `leveldb-get`) to a dict: `title` (what it measures and its bound, in
words), `figure` (asv benchmark name of the figure), `params` (its parameter values, for a
parameterized benchmark), `anchor` (benchmark name, or None: report the figure only;
`anchor_params` when the anchor is itself parameterized), `max_ratio` (figure / anchor must
be <= this, or None: a report; both are time or size per op, lower is better).
Units come from asv's `benchmarks.json`, so figures in ms and anchors in us compare right.

A missed target is reported, never hidden (listed again under the table with its title), and
does not change the exit status (the run's own failures do that). CLI: `python -m sprout_harness.asvtools.targets --help`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import runpy
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

DEFAULT_SPEC = Path("benchmarks/targets.py")
TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "seconds": 1.0}


class TargetsError(Exception):
    """Bad spec, no results for the commit: the message says what to run or fix."""


@dataclass
class Figure:
    value: float | None  # in the benchmark's unit; None: missing, failed or n/a
    unit: str
    state: str  # "ok", "n/a" (skipped), "failed", "missing" (not in the results)

    def seconds(self) -> float | None:
        if self.value is None:
            return None
        factor = TIME_UNITS.get(self.unit)
        return self.value * factor if factor is not None else self.value

    def show(self) -> str:
        if self.value is None:
            return self.state
        if self.unit == "bytes":  # asv's unit for memory figures: 1.048e+04 reads badly
            for div, name in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
                if abs(self.value) >= div:
                    return f"{self.value / div:.3g} {name}"
        return f"{self.value:.4g} {self.unit}"


@dataclass
class Row:
    name: str
    title: str
    figure: Figure
    anchor: Figure | None
    ratio: float | None
    max_ratio: float | None
    verdict: str  # "met", "missed by N%", "report", "n/a: why"


# --- reading -----------------------------------------------------------------------------


SPEC_KEYS = {"title", "figure", "params", "anchor", "anchor_params", "max_ratio"}


def load_spec(path: str | Path = DEFAULT_SPEC) -> list[dict[str, Any]]:
    """The targets of a spec file, in its order, each with its key as `name`."""
    p = Path(path)
    if not p.exists():
        raise TargetsError(f"targets spec {p} not found (run from the repository root or pass --spec)")
    targets = runpy.run_path(str(p)).get("TARGETS")
    if not isinstance(targets, dict):
        raise TargetsError(f"{p} defines no TARGETS dict (target name -> its figure, anchor and bound)")
    out = []
    for name, t in targets.items():
        if not isinstance(t, dict) or "figure" not in t or "title" not in t:
            raise TargetsError(f"{p}: TARGETS[{name!r}] needs at least 'title' and 'figure'")
        unknown = set(t) - SPEC_KEYS
        if unknown:
            raise TargetsError(
                f"{p}: TARGETS[{name!r}] has unknown keys {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(SPEC_KEYS))})"
            )
        out.append({**t, "name": name})
    return out


def load_json_with_comments(path: Path) -> dict[str, Any]:
    """asv.conf.json allows // comments (whole lines here)."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("//"))
    return json.loads(text)


def results_dir(conf: Path = Path("asv.conf.json")) -> Path:
    if conf.exists():
        return Path(load_json_with_comments(conf).get("results_dir", "results"))
    return Path(".asv/results")


def resolve_commit(rev: str) -> str:
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise TargetsError(f"git cannot resolve {rev!r} to a commit")
    return proc.stdout.strip()


def find_results(results: Path, commit: str, machine: str | None = None) -> Path:
    """The newest results file of `commit` (any environment) on `machine` (default: any)."""
    machines = (
        [results / machine] if machine else [p for p in results.iterdir() if p.is_dir()] if results.exists() else []
    )
    files = [f for m in machines for f in m.glob(f"{commit[:8]}-*.json")]
    if not files:
        raise TargetsError(
            f"no asv results for commit {commit[:8]} in {results}/ (run `make bench-asv` first, or pass --commit)"
        )
    return max(files, key=lambda f: f.stat().st_mtime)


def _units(results: Path) -> dict[str, str]:
    path = results / "benchmarks.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {k: v.get("unit", "") for k, v in data.items() if isinstance(v, dict)}


def lookup(data: dict[str, Any], units: dict[str, str], name: str, params: Sequence[Any] | None) -> Figure:
    """One benchmark's value (for one parameter combination) from an asv results file."""
    unit = units.get(name, "")
    entry = data.get("results", {}).get(name)
    if entry is None:
        return Figure(None, unit, "missing")
    columns = data.get("result_columns", ["result", "params"])
    row = dict(zip(columns, entry))
    values, axes = row.get("result"), row.get("params") or []
    if values is None:
        return Figure(None, unit, "failed")
    if axes:
        if params is None or len(params) != len(axes):
            raise TargetsError(f"{name} has {len(axes)} parameters; the spec gives {params!r}")
        combos = list(itertools.product(*axes))
        want = tuple(repr(p) for p in params)
        if want not in combos:
            return Figure(None, unit, "missing")
        value = values[combos.index(want)]
    else:
        value = values[0] if isinstance(values, list) else values
    if value is None:
        return Figure(None, unit, "failed")
    if isinstance(value, float) and math.isnan(value):
        return Figure(None, unit, "n/a")
    return Figure(float(value), unit, "ok")


def _missed_by(over: float) -> str:
    """How far over its bound a ratio is (`over` = ratio / bound > 1), never "0%"."""
    if over >= 2:
        return f"MISSED by {over:.1f}x"
    pct = (over - 1) * 100
    return f"MISSED by {pct:.0f}%" if pct >= 9.5 else f"MISSED by {pct:.2g}%"


def evaluate(targets: list[dict[str, Any]], data: dict[str, Any], units: dict[str, str]) -> list[Row]:
    rows = []
    for t in targets:
        fig = lookup(data, units, t["figure"], t.get("params"))
        anchor = lookup(data, units, t["anchor"], t.get("anchor_params")) if t.get("anchor") else None
        max_ratio = t.get("max_ratio")
        ratio = None
        if fig.value is None:
            verdict = f"n/a: figure {fig.state}"
        elif anchor is None:
            verdict = "report"
        elif anchor.value is None:
            verdict = f"n/a: anchor {anchor.state}"
        else:
            a, f = anchor.seconds(), fig.seconds()
            if (fig.unit in TIME_UNITS) != (anchor.unit in TIME_UNITS):
                raise TargetsError(f"{t['name']}: cannot compare {fig.unit!r} with {anchor.unit!r}")
            ratio = f / a if a else math.inf
            if max_ratio is None:
                verdict = "report"
            elif ratio <= max_ratio:
                verdict = "met"
            else:
                over = ratio / max_ratio
                verdict = _missed_by(over)
        rows.append(Row(t["name"], t["title"], fig, anchor, ratio, max_ratio, verdict))
    return rows


def format_table(rows: list[Row], title: str = "") -> str:
    head = ("target", "figure", "anchor", "ratio", "bound", "result")
    body = [
        (
            r.name,
            r.figure.show(),
            r.anchor.show() if r.anchor else "-",
            f"{r.ratio:.3g}x" if r.ratio is not None else "-",
            f"<= {r.max_ratio:g}x" if r.max_ratio else "-",
            r.verdict,
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]

    def line(cells: Sequence[Any]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

    out = [title] if title else []
    out += [line(head), line(["-" * w for w in widths])] + [line(b) for b in body]
    met = sum(r.verdict == "met" for r in rows)
    missed = sum(r.verdict.startswith("MISSED") for r in rows)
    out.append(
        f"{met} met, {missed} missed, {len(rows) - met - missed} reported or n/a "
        "(ratio = figure / anchor, same run and payloads; lower is better)"
    )
    for r in rows:
        if r.verdict.startswith("MISSED"):
            out.append(f"  !! {r.name} {r.verdict}: {r.ratio:.3g}x, bound {r.max_ratio:g}x ({r.title})")
    return "\n".join(out)


def report(
    spec: str | Path = DEFAULT_SPEC, commit: str = "HEAD", results: Path | None = None, machine: str | None = None
) -> str:
    """The targets table for `commit` (a git revision) as text."""
    results = results or results_dir()
    sha = resolve_commit(commit)
    path = find_results(results, sha, machine)
    data = json.loads(path.read_text())
    rows = evaluate(load_spec(spec), data, _units(results))
    return format_table(rows, f"Performance targets, commit {sha[:8]} ({path.parent.name}/{path.name}):")


def range_tip(spec: str) -> str:
    """The newest commit of an `asv run` range spec (`A..B` -> B, `X^!` -> X, else HEAD)."""
    spec = spec.strip()
    if ".." in spec:
        return spec.split("..", 1)[1] or "HEAD"
    if spec.endswith("^!"):
        return spec[:-2]
    return "HEAD" if spec.upper() in ("", "NEW", "ALL", "EXISTING") else spec


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Print performance targets (figure / anchor ratios) from asv results.")
    ap.add_argument("--spec", default=str(DEFAULT_SPEC), help="Python file defining TARGETS")
    ap.add_argument("--commit", default="HEAD", help="git revision whose results to read")
    ap.add_argument("--results", type=Path, default=None, help="asv results dir (default: from asv.conf.json)")
    ap.add_argument("--machine", default=None, help="asv machine name (default: the newest results of any)")
    args = ap.parse_args(argv)
    try:
        print(report(args.spec, args.commit, args.results, args.machine))
    except TargetsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
