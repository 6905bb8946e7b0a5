"""`make continuous BASE=main`: `asv continuous BASE HEAD --factor 1.2` with its exit status kept.

asv's exit status: 0 no significant regression, 1 a benchmark got slower than `--factor`
(regression), 2 a benchmark failed to run (asv then prints no comparison table). `asv
compare` always exits 0, so it cannot gate a pull request; this wrapper can.

Exports SPROUT_PG_DSN (or a throwaway cluster) like `bench` so PostgreSQL benchmarks compare too.
Harness-level: must not import loam. CLI: `python -m sprout_harness.asvtools.continuous --help`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from sprout_harness.asvtools.bench import asv_cmd, postgres_for_run, run
from sprout_harness.services.postgres import ENV_DSN, PostgresUnavailable

MEANINGS = {
    0: "no benchmark regressed beyond the factor",
    1: "REGRESSION: at least one benchmark got slower than the factor allows",
    2: "FAILURE: at least one benchmark failed to run (no comparison table is printed)",
}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="asv continuous BASE HEAD, exit 1 on regression, 2 on failure")
    ap.add_argument("base", nargs="?", default="main")
    ap.add_argument("head", nargs="?", default="HEAD")
    ap.add_argument("--factor", default="1.2")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--bench", default="")
    ap.add_argument("--no-postgres", action="store_true", help="run without PostgreSQL (its benchmarks show n/a)")
    args = ap.parse_args(argv)

    if run(asv_cmd("machine", "--yes"), quiet=True) != 0:
        print("error: `asv machine --yes` failed (see above)", file=sys.stderr)
        return 2
    cmd = ["continuous", args.base, args.head, "--factor", args.factor, "--show-stderr"]
    if args.quick:
        cmd.append("--quick")
    if args.bench:
        cmd += ["--bench", args.bench]
    try:
        with postgres_for_run(required=False, enabled=not args.no_postgres) as dsn:
            env = {k: v for k, v in os.environ.items() if k != ENV_DSN}
            if dsn:
                env[ENV_DSN] = dsn
            rc = run(asv_cmd(*cmd), env=env)
    except PostgresUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"\nasv continuous {args.base} {args.head} --factor {args.factor}: exit {rc} = "
          f"{MEANINGS.get(rc, 'asv itself failed (see above)')}")
    print("  (exit codes: 0 = ok, 1 = regression, 2 = a benchmark failed)")
    return rc


if __name__ == "__main__":
    sys.exit(main())
