"""`make continuous BASE=main`: the pull-request gate, `asv continuous BASE HEAD --factor 1.2`
over the gated benchmarks, with asv's exit status kept.

What is gated (`GATE_BENCH`, docs/asv.md "The gate"): the `gate` module (the stack's figures over a
raw anchor measured right next to them, returned to asv as samples) and every `time_`
benchmark (asv samples those itself). Both carry samples, so asv requires a statistically
significant difference (Mann-Whitney U, p < 0.002) *and* the factor before it calls a change
a regression. The absolute `track_` figures (one value per commit, no statistics) are not
gated: measured on this 2-core shared machine they "regress" by 20 % between two runs of the
same code (`tools/asv_false_alarms.py`); `--all` compares them anyway (informational).

`ROUNDS` (`-a rounds=4`): every selected benchmark runs in four rounds and asv interleaves the
rounds across the two commits (B A, A B, B A, A B), appending the samples: a burst of load
during the run lands on both commits instead of on one. Measured: with 2 rounds a `time_`
benchmark unrelated to the change was flagged (x1.96, load burst) in 1 of 4 comparisons and
another was flagged faster in 1 of 3 doc-only ones; with 4, none (tools/asv_false_alarms.py).

asv's exit status: 0 no significant regression, 1 a benchmark got slower than `--factor`
(regression), 2 a benchmark failed to run (asv then prints no comparison table). `asv
compare` always exits 0, so it cannot gate a pull request; this wrapper can.

Exports SPROUT_PG_DSN (or a throwaway cluster) like `bench` so PostgreSQL benchmarks compare too.
Stack-neutral. CLI: `python -m sprout_harness.asvtools.continuous --help`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from sprout_harness.asvtools.bench import asv_cmd, postgres_for_run, run
from sprout_harness.services.postgres import ENV_DSN, PostgresUnavailable

#: `asv --bench` regexes of the gated benchmarks (asv matches them with re.search)
GATE_BENCH = (r"^gate\.", r"\.time_")
#: rounds per benchmark and commit (interleaved across the two commits by asv continuous)
ROUNDS = 4
DEFAULT_FACTOR = "1.2"

MEANINGS = {
    0: "no benchmark regressed beyond the factor",
    1: "REGRESSION: at least one benchmark got slower than the factor allows",
    2: "FAILURE: at least one benchmark failed to run (no comparison table is printed)",
}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="asv continuous BASE HEAD, exit 1 on regression, 2 on failure")
    ap.add_argument("base", nargs="?", default="main")
    ap.add_argument("head", nargs="?", default="HEAD")
    ap.add_argument("--factor", default=DEFAULT_FACTOR)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--bench",
        action="append",
        default=[],
        help="asv --bench regex (repeatable); default: the gated benchmarks " + " ".join(GATE_BENCH),
    )
    ap.add_argument(
        "--all",
        action="store_true",
        help="compare the whole suite, ungated absolute track_ figures included (noisy: informational)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=None,
        help=f"rounds per benchmark and commit, interleaved across the commits (default {ROUNDS}; "
        "with --all, asv's own: 2 for time_, 1 for track_)",
    )
    ap.add_argument("--no-postgres", action="store_true", help="run without PostgreSQL (its benchmarks show n/a)")
    args = ap.parse_args(argv)

    if run(asv_cmd("machine", "--yes"), quiet=True) != 0:
        print("error: `asv machine --yes` failed (see above)", file=sys.stderr)
        return 2
    cmd = ["continuous", args.base, args.head, "--factor", args.factor, "--show-stderr"]
    if args.quick:
        cmd.append("--quick")
    else:
        rounds = args.rounds if args.rounds is not None else (None if args.all else ROUNDS)
        if rounds is not None:
            cmd += ["-a", f"rounds={rounds}", "--interleave-rounds"]
    bench = args.bench or ([] if args.all else list(GATE_BENCH))
    for regex in bench:
        cmd += ["--bench", regex]
    try:
        with postgres_for_run(required=False, enabled=not args.no_postgres) as dsn:
            env = {k: v for k, v in os.environ.items() if k != ENV_DSN}
            if dsn:
                env[ENV_DSN] = dsn
            rc = run(asv_cmd(*cmd), env=env)
    except PostgresUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    what = "the whole suite" if not bench else "benchmarks matching " + " | ".join(bench)
    print(
        f"\nasv continuous {args.base} {args.head} --factor {args.factor} ({what}): exit {rc} = "
        f"{MEANINGS.get(rc, 'asv itself failed (see above)')}"
    )
    print("  (exit codes: 0 = ok, 1 = regression, 2 = a benchmark failed)")
    return rc


if __name__ == "__main__":
    sys.exit(main())
