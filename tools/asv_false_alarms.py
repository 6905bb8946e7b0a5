#!/usr/bin/env python3
"""Does the asv gate cry wolf, and does it still bite? Measured, in a throwaway clone.

    .venv/bin/python tools/asv_false_alarms.py [--runs 3] [--slowdown 0.3] [--all] [--out FILE]

1. Clones this repository (its HEAD) into `--workdir` and overlays the *working-tree*
   versions of the asv suite (`benchmarks/`, `asv.conf.json`, `sprout_harness/asvtools/`),
   committed in the clone as commit A (so an uncommitted suite change is what gets measured).
2. Commit B = A + one line appended to docs/performance.md: a doc-only change.
3. Commit C = B + a deliberate slowdown of one benchmarked path: loam's
   `DurableNode.get` (the LevelDB durable node's read path) spins for `--slowdown` (0.3 =
   30 %) of its own elapsed time after every call.
4. Runs the project's gate (`python -m sprout_harness.asvtools.continuous A B`, the same
   wrapper `make continuous` and CI call, with its defaults unless `--all` / `--factor` /
   `--rounds` are given) `--runs` times for A..B, then once for A..C.
5. Writes `--out` (JSON; default `<workdir>/asv_false_alarms.json`) and a text summary:
   per run the exit code, wall time, load average before/after, and the benchmarks asv
   flagged slower / faster; for A..C whether the slowed path was flagged.

Expected (the check docs/asv.md quotes): every A..B run exits 0 with 0 flagged slower; the
A..C run exits 1 and names a get benchmark. The script exits 0 when that holds, 1 when not.

Never touches this checkout: every commit is made in the clone. Only the clone's `.asv/`
(its own asv virtualenv, ~1 min to build the first time) lives in the workdir; `--keep`
keeps the clone for inspection. The machine may be shared: the load averages are recorded
because they are part of what is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = ("benchmarks", "asv.conf.json", "sprout_harness/asvtools")
GIT_ID = {
    "GIT_AUTHOR_NAME": "asv false alarms",
    "GIT_AUTHOR_EMAIL": "asv-fa@sprout.invalid",
    "GIT_COMMITTER_NAME": "asv false alarms",
    "GIT_COMMITTER_EMAIL": "asv-fa@sprout.invalid",
}
SLOW_TARGET = "stores/loam/loam/node/durable.py"
# appended to stores/loam/loam/node/durable.py in commit C: DurableNode.get spins for FACTOR x its own time
SLOWDOWN = """

# --- deliberate slowdown (tools/asv_false_alarms.py, throwaway clone only) ---
import time as _fa_time

_fa_get = DurableNode.get


async def _fa_slow_get(self, collection, id, ctx):
    t0 = _fa_time.perf_counter_ns()
    e = await _fa_get(self, collection, id, ctx)
    t1 = _fa_time.perf_counter_ns()
    until = t1 + int((t1 - t0) * {factor!r})
    while _fa_time.perf_counter_ns() < until:
        pass
    return e


DurableNode.get = _fa_slow_get
"""
# asv continuous's table (tabulate "github"): | Change | Before | After | Ratio | Benchmark |
# Change "+" = slower beyond the factor (and significant, for benchmarks with samples), "-" faster
ROW = re.compile(r"^\|\s*([+-])\s*\|([^|]*)\|([^|]*)\|([^|]*)\|([^|]*)\|\s*$")


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=repo, env={**os.environ, **GIT_ID}, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed in {repo}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _commit(repo: Path, paths: list[str], message: str) -> str:
    _git(repo, "add", "--", *paths)
    _git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


def prepare(workdir: Path, slowdown: float) -> tuple[Path, dict[str, str]]:
    repo = workdir / "repo"
    kept_env = workdir / "asv-env"  # the clone's asv virtualenv survives between invocations
    if (repo / ".asv" / "env").exists() and not kept_env.exists():
        shutil.move(str(repo / ".asv" / "env"), str(kept_env))
    if repo.exists():
        shutil.rmtree(repo)
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(repo)], check=True, stdin=subprocess.DEVNULL)
    if kept_env.exists():
        (repo / ".asv").mkdir(exist_ok=True)
        shutil.move(str(kept_env), str(repo / ".asv" / "env"))
    _git(repo, "checkout", "-q", "-B", "main")
    for rel in SUITE:  # the suite as it is in the working tree
        src, dst = ROOT / rel, repo / rel
        if src.is_dir():
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    a = _commit(repo, list(SUITE), "A: the asv suite under test")
    doc = repo / "docs" / "performance.md"
    with doc.open("a") as fh:
        fh.write("\n<!-- asv false-alarm check: a doc-only change -->\n")
    b = _commit(repo, ["docs/performance.md"], "B: doc-only change")
    with (repo / SLOW_TARGET).open("a") as fh:
        fh.write(SLOWDOWN.replace("{factor!r}", repr(slowdown)))
    c = _commit(repo, [SLOW_TARGET], f"C: DurableNode.get {slowdown:.0%} slower (deliberate)")
    return repo, {"A": a, "B": b, "C": c}


def parse_flagged(out: str) -> dict[str, list[dict[str, str]]]:
    flagged: dict[str, list[dict[str, str]]] = {"slower": [], "faster": []}
    for line in out.splitlines():
        m = ROW.match(line)
        if m:
            flagged["slower" if m.group(1) == "+" else "faster"].append(
                {
                    "benchmark": m.group(5).strip(),
                    "before": m.group(2).strip(),
                    "after": m.group(3).strip(),
                    "ratio": m.group(4).strip(),
                }
            )
    return flagged


def run_gate(repo: Path, base: str, head: str, extra: list[str], log: Path) -> dict:
    cmd = [sys.executable, "-m", "sprout_harness.asvtools.continuous", base, head, *extra]
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    log.write_text(out)
    flagged = parse_flagged(out)
    return {
        "base": base[:8],
        "head": head[:8],
        "command": " ".join(cmd[1:]),
        "exit": proc.returncode,
        "seconds": round(seconds, 1),
        "loadavg_before": [round(x, 2) for x in load0],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "log": str(log),
        "flagged_slower": flagged["slower"],
        "flagged_faster": flagged["faster"],
    }


GET_BENCHMARKS = ("gate.GateLevelDB.track_get_vs_plyvel_get", "bench_fetch.GetByIdLevelDB.time_get_by_id_x100")


def measured_change(repo: Path, base: str, head: str, names: tuple[str, ...] = GET_BENCHMARKS) -> dict[str, float]:
    """head / base of each benchmark's stored value (asv's median), from the clone's results."""
    out = {}
    files = {c: sorted((repo / ".asv" / "results").glob(f"*/{c[:8]}-*.json")) for c in (base, head)}
    if not files[base] or not files[head]:
        return out
    data = {c: json.loads(f[-1].read_text()) for c, f in files.items()}
    for name in names:
        try:
            a, b = (data[c]["results"][name][0][0] for c in (base, head))
        except (KeyError, IndexError, TypeError):
            continue
        if a and b:
            out[name] = round(b / a, 3)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="doc-only comparisons (A..B)")
    ap.add_argument(
        "--slowdown",
        type=float,
        default=0.15,
        help="commit C: DurableNode.get spins this fraction of its own time (default 0.15: with the "
        "wrapper's own cost, about +30%% on the gated get figure; the run reports what it measured)",
    )
    ap.add_argument("--no-slowdown-run", action="store_true", help="skip the A..C run")
    ap.add_argument(
        "--all", action="store_true", help="pass --all to the wrapper (the whole suite, ungated figures too)"
    )
    ap.add_argument("--factor", default=None, help="pass --factor to the wrapper (default: its own)")
    ap.add_argument("--rounds", default=None, help="pass --rounds to the wrapper (default: its own)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/asv-false-alarms"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the clone (default: keep only its .asv/ and the logs)")
    args = ap.parse_args(argv)

    extra = (
        (["--all"] if args.all else [])
        + (["--factor", args.factor] if args.factor else [])
        + (["--rounds", args.rounds] if args.rounds else [])
    )
    out_path = args.out or args.workdir / "asv_false_alarms.json"
    t_start = time.perf_counter()
    repo, commits = prepare(args.workdir, args.slowdown)
    print(
        f"clone {repo}: A={commits['A'][:8]} B={commits['B'][:8]} (doc only) "
        f"C={commits['C'][:8]} (DurableNode.get +{args.slowdown:.0%})",
        flush=True,
    )
    report: dict = {
        "commits": commits,
        "wrapper_args": extra,
        "slowdown": args.slowdown,
        "cpus": os.cpu_count(),
        "doc_only": [],
        "slowdown_run": None,
    }

    def save() -> None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(report, indent=2) + "\n")

    for i in range(args.runs):
        r = run_gate(repo, commits["A"], commits["B"], extra, args.workdir / f"doc-only-{i + 1}.log")
        report["doc_only"].append(r)
        save()
        print(
            f"doc-only run {i + 1}: exit {r['exit']}, {len(r['flagged_slower'])} slower / "
            f"{len(r['flagged_faster'])} faster, {r['seconds']:.0f} s, load {r['loadavg_before']}",
            flush=True,
        )
        for f in r["flagged_slower"]:
            print(f"    slower: {f['benchmark']} {f['before']} -> {f['after']} ({f['ratio']})")
    if not args.no_slowdown_run:
        r = run_gate(repo, commits["A"], commits["C"], extra, args.workdir / "slowdown.log")
        r["slowed_path_flagged"] = any("get" in f["benchmark"] for f in r["flagged_slower"])
        r["measured_change"] = measured_change(repo, commits["A"], commits["C"])
        report["slowdown_run"] = r
        save()
        print(
            f"slowdown run: exit {r['exit']}, {len(r['flagged_slower'])} slower, {r['seconds']:.0f} s, "
            f"slowed path flagged: {r['slowed_path_flagged']}, measured C/A: {r['measured_change']}",
            flush=True,
        )
        for f in r["flagged_slower"]:
            print(f"    slower: {f['benchmark']} {f['before']} -> {f['after']} ({f['ratio']})")

    doc = report["doc_only"]
    report["summary"] = {
        "doc_only_runs": len(doc),
        "doc_only_exits": [r["exit"] for r in doc],
        "doc_only_flagged_slower": [len(r["flagged_slower"]) for r in doc],
        "doc_only_flagged_faster": [len(r["flagged_faster"]) for r in doc],
        "doc_only_seconds": [r["seconds"] for r in doc],
        "slowdown_exit": report["slowdown_run"]["exit"] if report["slowdown_run"] else None,
        "slowdown_flagged": report["slowdown_run"]["slowed_path_flagged"] if report["slowdown_run"] else None,
        "slowdown_measured_change": report["slowdown_run"]["measured_change"] if report["slowdown_run"] else None,
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    ok = all(r["exit"] == 0 and not r["flagged_slower"] for r in doc) and (
        report["slowdown_run"] is None
        or (report["slowdown_run"]["exit"] == 1 and report["slowdown_run"]["slowed_path_flagged"])
    )
    report["summary"]["ok"] = ok
    save()
    if not args.keep:
        for p in repo.iterdir():  # keep .asv/ (its virtualenv makes the next run faster)
            if p.name != ".asv":
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        shutil.rmtree(repo / ".asv" / "results", ignore_errors=True)
    print(json.dumps(report["summary"]))
    print(f"written: {out_path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
