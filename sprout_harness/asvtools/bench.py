"""`make bench-asv`: run the asv suite, publish html/, make the page work offline.

Steps: `asv machine --yes`; PostgreSQL for the run (SPROUT_PG_DSN if set, else a throwaway
cluster that is always stopped afterwards; without either the PostgreSQL benchmarks show
n/a); `asv run` for HEAD (or `--range`, e.g. `HEAD~5..HEAD`, which excludes HEAD~5);
`asv publish`; local copies of the page's scripts (`offline.make_offline`); how to
view it; the performance targets table (`targets`, from benchmarks/targets.py). Exits
non-zero when asv or a benchmark failed (after still publishing what ran).

Stack-neutral. CLI: `python -m sprout_harness.asvtools.bench --help`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

from sprout_harness.asvtools import offline, targets
from sprout_harness.services.postgres import ENV_DSN, PostgresUnavailable, check_dsn, mask_dsn, throwaway_postgres

ENV_SCALE = "SPROUT_BENCH_SCALE"  # benchmarks/_common.scale(): tiny | quick | full (default)


def _say(msg: str) -> None:
    print(f"[bench-asv] {msg}", flush=True)


def asv_cmd(*args: str) -> list[str]:
    """`python -m asv ...` with this interpreter (the venv that has asv installed)."""
    return [sys.executable, "-m", "asv", *args]


def run(cmd: Sequence[str], env: dict[str, str] | None = None, quiet: bool = False) -> int:
    """Run `cmd` (stdin closed); `quiet` shows its output only when it fails."""
    _say("$ " + " ".join(cmd))
    if not quiet:
        return subprocess.run(list(cmd), env=env, stdin=subprocess.DEVNULL).returncode
    proc = subprocess.run(list(cmd), env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stdout[-3000:] + proc.stderr[-3000:], file=sys.stderr)
    return proc.returncode


@contextlib.contextmanager
def postgres_for_run(required: bool, enabled: bool = True) -> Iterator[str | None]:
    """Yield a DSN (SPROUT_PG_DSN or a throwaway cluster, stopped on exit) or None."""
    if not enabled:
        _say("PostgreSQL: disabled (--no-postgres); PostgreSQL benchmarks will show n/a")
        yield None
        return
    dsn = os.environ.get(ENV_DSN, "").strip()
    if dsn:
        check_dsn(dsn)
        _say(f"PostgreSQL: {ENV_DSN}={mask_dsn(dsn)}")
        yield dsn
        return
    try:
        t0 = time.perf_counter()
        cm = throwaway_postgres()
        handle = cm.__enter__()
    except PostgresUnavailable as exc:
        if required:
            raise
        _say(f"WARNING: no PostgreSQL ({exc}); PostgreSQL benchmarks will show n/a")
        yield None
        return
    try:
        _say(
            f"PostgreSQL: throwaway cluster {mask_dsn(handle.dsn)} (fsync off), "
            f"started in {time.perf_counter() - t0:.1f} s"
        )
        yield handle.dsn
    finally:
        cm.__exit__(None, None, None)
        _say("PostgreSQL: throwaway cluster stopped")


def _dirty_project_files(benchmark_dir: str = "benchmarks") -> list[str]:
    """Modified tracked files that asv will not measure: it builds the project from HEAD,
    while the benchmark files themselves come from the working tree."""
    proc = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    if proc.returncode != 0:
        return []
    prefix = benchmark_dir.rstrip("/") + "/"
    return [line for line in proc.stdout.splitlines() if not line[3:].startswith(prefix)]


def print_targets(commit: str) -> None:
    """The performance targets table (benchmarks/targets.py) for `commit`; a missed target
    is reported, not hidden, and never changes the exit status."""
    if not targets.DEFAULT_SPEC.exists():
        return
    try:
        print("\n" + targets.report(targets.DEFAULT_SPEC, commit), flush=True)
    except targets.TargetsError as exc:
        _say(f"no targets table: {exc}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run the asv suite and publish an offline-capable html/.")
    ap.add_argument("--range", default="", help="commit range for `asv run` (e.g. HEAD~5..HEAD; A..B excludes A)")
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"pass --quick (one sample per benchmark) and, unless set, {ENV_SCALE}=quick",
    )
    ap.add_argument("--bench", default="", help="regex selecting benchmarks (asv --bench)")
    ap.add_argument("--require-postgres", action="store_true", help="fail instead of showing n/a without PostgreSQL")
    ap.add_argument("--no-postgres", action="store_true", help="run without PostgreSQL (its benchmarks show n/a)")
    ap.add_argument("--no-offline", action="store_true", help="skip installing local copies of the page's scripts")
    ap.add_argument("--html", type=Path, default=Path("html"))
    args = ap.parse_args(argv)

    if not Path("asv.conf.json").exists():
        print("error: asv.conf.json not found: run from the repository root (make bench-asv)", file=sys.stderr)
        return 1
    if run(asv_cmd("machine", "--yes"), quiet=True) != 0:
        print("error: `asv machine --yes` failed (see above)", file=sys.stderr)
        return 1
    dirty = _dirty_project_files()
    if dirty and not args.range:
        _say(
            "note: asv measures committed code (HEAD); these uncommitted changes are not measured: "
            + ", ".join(line[3:] for line in dirty[:8])
            + (" ..." if len(dirty) > 8 else "")
        )

    spec = args.range or "HEAD^!"
    run_args = ["run", spec, "--show-stderr"]
    if args.quick:
        run_args.append("--quick")
    if args.bench:
        run_args += ["--bench", args.bench]

    try:  # the commit whose targets to print, fixed now: HEAD may move during a long run
        tip = targets.resolve_commit(targets.range_tip(spec))
    except targets.TargetsError:
        tip = "HEAD"
    t0 = time.perf_counter()
    try:
        with postgres_for_run(args.require_postgres, enabled=not args.no_postgres) as dsn:
            env = {k: v for k, v in os.environ.items() if k != ENV_DSN}
            if dsn:
                env[ENV_DSN] = dsn
            if args.quick and not env.get(ENV_SCALE):
                env[ENV_SCALE] = "quick"  # --quick: one sample each, and the quick workload sizes
            _say(f"workload size: {ENV_SCALE}={env.get(ENV_SCALE) or 'full'}")
            run_rc = run(asv_cmd(*run_args), env=env)
    except PostgresUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _say(f"asv run finished in {time.perf_counter() - t0:.0f} s (exit {run_rc})")

    if run(asv_cmd("publish")) != 0:
        print("error: `asv publish` failed (see above)", file=sys.stderr)
        return 1
    if not args.no_offline:
        try:
            n = offline.make_offline(args.html)
        except offline.OfflineAssetsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        _say(f"page made offline-capable ({n} CDN links -> {args.html}/{offline.VENDOR}/)")

    _say(f"published {args.html}/index.html; view it with one of:")
    print(f"    {Path(sys.executable).parent}/asv preview            # serves html/ on http://127.0.0.1:8080")
    print(f"    python -m http.server -d {args.html} -b 127.0.0.1 8080   # then open http://127.0.0.1:8080/")
    print("  (the page cannot load from file://; it needs a local http server)")
    print_targets(tip)
    if run_rc != 0:
        meaning = "some benchmarks failed" if run_rc == 2 else "asv run failed"
        print(f"error: {meaning} (asv run exit {run_rc}); see the output above or `asv show`", file=sys.stderr)
        return run_rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
