"""How often does `sprout compare` cry wolf, and what does it catch? (docs/statistics.md)

A benchmark script, not a test: it runs real `sprout run --repeat N` reports of the same
commit and compares them in disjoint pairs through the real `sprout compare` (its exit
code is the verdict), for:

- false alarms: every config of ``--configs`` run ``2 * --pairs`` times; each pair is an
  unchanged comparison, so any exit 1 is a false alarm;
- detection: ``--detect-config`` (tools/gate_detect.yaml: live queries on an in-process
  ephemeral, whose commit -> notification lag is mostly the connector's one-way delay) with
  the delay at ``--delay`` (base) and at ``--delay * s`` for each ``s`` of ``--slowdowns``
  (20 ms and up: asyncio rounds its epoll waits up to whole milliseconds); the lag's
  measured growth is reported beside the verdicts; a pair must exit 1.

- the cost of repetition (``cost``): `--repeat N` against one run, alternating;
- the whole pull-request gate (``gates``): `sprout gate CONFIG --base-sprout <this same
  sprout>`, i.e. an unchanged build on both sides, runs alternating ABBA, ``--pairs`` times
  per config; any exit 1 is a false alarm.

Reports are kept in ``--dir`` and reused when present, so the script can be stopped and
resumed, and ``analyse`` can re-judge the same reports at another threshold or alpha.

    python tools/gate_check.py run --dir .gate --pairs 10 --repeat 5
    python tools/gate_check.py gates --dir .gate --pairs 10 --repeat 5
    python tools/gate_check.py cost --dir .gate --pairs 3 --repeat 5 --configs leveldb-local
    python tools/gate_check.py analyse --dir .gate --threshold 10% --alpha 0.01 --out gate.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPROUT = [sys.executable, "-m", "sprout_harness"]
DETECT_METRIC = ("live-limit@ephemeral/lag.notify", "p50")


def _variants(args: argparse.Namespace) -> dict[str, tuple[str, list[str]]]:
    """name -> (config, --set overrides) of every report series."""
    out: dict[str, tuple[str, list[str]]] = {c: (c, []) for c in args.configs}
    out["delay-base"] = (args.detect_config, [f"topology.connector_params.delay_s={args.delay}"])
    for s in args.slowdowns:
        out[f"delay-x{s:g}"] = (args.detect_config, [f"topology.connector_params.delay_s={args.delay * s:.9f}"])
    return out


def _runs_wanted(name: str, args: argparse.Namespace) -> int:
    # false-alarm series pair with themselves (2 per pair); a slowed series pairs with the base
    return 2 * args.pairs if name in args.configs or name == "delay-base" else args.pairs


def cmd_run(args: argparse.Namespace) -> int:
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    timings: dict[str, list[float]] = {}
    for name, (config, sets) in _variants(args).items():
        for i in range(_runs_wanted(name, args)):
            out = d / f"{name}-{i:02d}.json"
            if out.exists():
                continue
            cmd = SPROUT + ["run", config, "--quiet", "--repeat", str(args.repeat), "--json", str(out)]
            for s in sets:
                cmd += ["--set", s]
            t0 = time.monotonic()
            rc = subprocess.run(cmd, cwd=ROOT).returncode
            took = time.monotonic() - t0
            timings.setdefault(name, []).append(took)
            print(f"{out.name}: exit {rc} in {took:.1f} s", flush=True)
            if rc != 0:
                print(f"error: {name} run {i} exited {rc}", file=sys.stderr)
                return 1
    (d / "timings.json").write_text(json.dumps(timings, indent=2))
    return 0


def cmd_gates(args: argparse.Namespace) -> int:
    """`sprout gate` with the same build on both sides, ``--pairs`` times per config."""
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    sprout = str(Path(sys.executable).with_name("sprout"))
    for config in args.configs:
        for i in range(args.pairs):
            out = d / f"gate-{config}-{i:02d}"
            verdict = out / "verdict.json"
            if verdict.exists():
                continue
            cmd = SPROUT + [
                "gate",
                config,
                "--base-sprout",
                sprout,
                "--runs",
                str(args.repeat),
                "--threshold",
                args.threshold,
                "--alpha",
                args.alpha,
                "--out-dir",
                str(out),
            ]
            t0 = time.monotonic()
            r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            took = time.monotonic() - t0
            flagged = [ln.split("│")[1].strip() for ln in r.stdout.splitlines() if "REGRESSED" in ln and "│" in ln]
            verdict.write_text(
                json.dumps(
                    {
                        "config": config,
                        "exit": r.returncode,
                        "flagged": flagged,
                        "seconds": round(took, 1),
                        "error": r.stderr.strip().splitlines()[-1] if r.returncode else "",
                    }
                )
            )
            print(f"{out.name}: exit {r.returncode} in {took:.1f} s {flagged}", flush=True)
            if r.returncode not in (0, 1):
                print(f"error: gate {config} {i} exited {r.returncode}: {r.stderr.strip()[-300:]}", file=sys.stderr)
                return 1
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    """Wall time of `sprout run --repeat N` against one `sprout run` of the first config,
    alternating the two ``--pairs`` times (so load changes hit both); medians and ratio."""
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    config = args.configs[0]
    times: dict[str, list[float]] = {"single": [], f"repeat {args.repeat}": []}
    for _ in range(args.pairs):
        for label, extra in (("single", []), (f"repeat {args.repeat}", ["--repeat", str(args.repeat)])):
            t0 = time.monotonic()
            rc = subprocess.run(SPROUT + ["run", config, "--quiet", *extra], cwd=ROOT, capture_output=True).returncode
            if rc != 0:
                print(f"error: {label} run exited {rc}", file=sys.stderr)
                return 1
            times[label].append(round(time.monotonic() - t0, 2))
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    ratio = med[f"repeat {args.repeat}"] / med["single"]
    (d / "cost.json").write_text(
        json.dumps({"config": config, "times_s": times, "median_s": med, "ratio": round(ratio, 2)}, indent=2)
    )
    print(f"{config}: single {med['single']} s, repeat {args.repeat} {med[f'repeat {args.repeat}']} s: {ratio:.2f}x")
    return 0


def _compare(base: Path, new: Path, args: argparse.Namespace) -> dict[str, object]:
    cmd = SPROUT + ["compare", str(base), str(new), "--threshold", args.threshold, "--alpha", args.alpha]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    flagged = [ln.split("│")[1].strip() for ln in r.stdout.splitlines() if "REGRESSED" in ln and "│" in ln]
    return {
        "base": base.name,
        "new": new.name,
        "exit": r.returncode,
        "flagged": flagged,
        "error": r.stderr.strip().splitlines()[-1] if r.returncode == 2 and r.stderr.strip() else "",
    }


def _growth(base: Path, new: Path) -> float:
    """Change of the detection metric: median of new's runs over median of base's, minus 1."""

    def med(path: Path) -> float:
        runs = json.loads(path.read_text())["runs"]
        values = sorted(r["metrics"][DETECT_METRIC[0]][DETECT_METRIC[1]] for r in runs)
        return values[len(values) // 2]

    return round(med(new) / med(base) - 1.0, 4)


def cmd_analyse(args: argparse.Namespace) -> int:
    d = Path(args.dir)
    result: dict[str, object] = {
        "threshold": args.threshold,
        "alpha": args.alpha,
        "repeat": args.repeat,
        "false_alarms": {},
        "detection": {},
    }
    for name in [*args.configs, "delay-base"]:
        files = sorted(d.glob(f"{name}-[0-9][0-9].json"))
        pairs = [_compare(files[2 * k], files[2 * k + 1], args) for k in range(len(files) // 2)]
        result["false_alarms"][name] = {  # type: ignore[index]
            "comparisons": len(pairs),
            "flagged": sum(p["exit"] == 1 for p in pairs),
            "not_compared": sum(p["exit"] == 2 for p in pairs),
            "pairs": pairs,
        }
    base = sorted(d.glob("delay-base-[0-9][0-9].json"))
    for s in args.slowdowns:
        slow = sorted(d.glob(f"delay-x{s:g}-[0-9][0-9].json"))
        pairs = [_compare(b, n, args) for b, n in zip(base, slow, strict=False)]
        growth = [_growth(b, n) for b, n in zip(base, slow, strict=False)]
        result["detection"][f"x{s:g}"] = {  # type: ignore[index]
            "delay_ms": round(args.delay * s * 1e3, 3),
            "comparisons": len(pairs),
            "flagged": sum(p["exit"] == 1 for p in pairs),
            "metric_flagged": sum(f"{DETECT_METRIC[0]} {DETECT_METRIC[1]}" in p["flagged"] for p in pairs),
            "lag_growth_median": round(sorted(growth)[len(growth) // 2], 4) if growth else None,
            "lag_growth": growth,
            "pairs": pairs,
        }
    gates: dict[str, dict[str, object]] = {}
    for verdict in sorted(d.glob("gate-*/verdict.json")):
        v = json.loads(verdict.read_text())
        g = gates.setdefault(v["config"], {"gates": 0, "flagged": 0, "seconds": [], "runs": []})
        g["gates"] += 1  # type: ignore[operator]
        g["flagged"] += v["exit"] == 1  # type: ignore[operator]
        g["seconds"].append(v["seconds"])  # type: ignore[attr-defined]
        g["runs"].append(v)  # type: ignore[attr-defined]
    result["gates"] = gates
    cost = d / "cost.json"
    if cost.exists():
        result["cost"] = json.loads(cost.read_text())
    timings = d / "timings.json"
    if timings.exists():
        result["timings_s"] = json.loads(timings.read_text())
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    for name, fa in result["false_alarms"].items():  # type: ignore[union-attr]
        print(f"false alarms {name}: {fa['flagged']}/{fa['comparisons']} (not compared: {fa['not_compared']})")
    for name, det in result["detection"].items():  # type: ignore[union-attr]
        print(
            f"detection delay {name} ({det['delay_ms']} ms, lag p50 {det['lag_growth_median']:+.1%}): "
            f"{det['flagged']}/{det['comparisons']} flagged, the lag itself in {det['metric_flagged']}"
        )
    for name, g in gates.items():
        print(f"sprout gate, same build both sides, {name}: {g['flagged']}/{g['gates']} flagged")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("run", "gates", "cost", "analyse"))
    ap.add_argument("--dir", default=".gate")
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--configs", nargs="*", default=["leveldb-local", "leveldb-ephemeral"])
    ap.add_argument("--detect-config", default=str(ROOT / "tools" / "gate_detect.yaml"))
    ap.add_argument("--delay", type=float, default=0.020, help="base one-way delay of the in-process connector, s")
    ap.add_argument("--slowdowns", type=float, nargs="+", default=[1.1, 1.15, 1.2])
    ap.add_argument("--threshold", default="10%")
    ap.add_argument("--alpha", default="0.01")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    return {"run": cmd_run, "gates": cmd_gates, "cost": cmd_cost, "analyse": cmd_analyse}[args.action](args)


if __name__ == "__main__":
    sys.exit(main())
