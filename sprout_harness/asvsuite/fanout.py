"""Fan-out: what a commit costs as the number of live queries grows.

S live queries on the durable node (over in-process connections) of the first variant of the
stack axis that is benchmarked over the `inprocess` connector, each watching one group of
entities (the harness's `filtered-subscriptions` phase, which checks that
every matching subscriber got exactly its notifications and no other got any):

- `predicate=equality` (`seq in (a, b)`): the subscription index routes a commit by value,
  so a commit that matches none of them should cost about the same whatever S is;
- `predicate=range` (`seq >= a and seq < a + 2`): not routable by value, every live query
  is tested on every commit, so the same commit costs O(S): the "scan them all" reference.

Read `track_nonmatching_overhead_p50` across S: flat for equality, growing for range.
`track_commit_matching_p50` is a commit that matches S/10 of them (O(S) by construction).
Commits follow each other without a pause, so their notifications queue up: the lag of
this phase measures a backlog, not a single delivery, and is not reported here (NotifyLag
in bench_live_limit is the one-at-a-time lag).
"""

from __future__ import annotations

from typing import Any

from ._common import cache_or_skip, scale, skip_if_skipped
from ._topology import CACHE_TIMEOUT, CONNECTORS, ERROR, NA, entry, first_variant_over

__all__ = ["CommitFanOut"]

SUBSCRIPTIONS = (10, 100, 1000)
PREDICATES = ("equality", "range")
CONNECTOR = "inprocess"


def _run() -> dict[tuple[int, str], Any]:
    key = (first_variant_over(CONNECTOR), CONNECTORS[0], 0)
    out = {}
    for s in SUBSCRIPTIONS:
        for pred in PREDICATES:
            n = scale().fanout_commits
            out[(s, pred)] = entry(
                key,
                {"albums": 0, "pets": 0},
                [
                    (
                        "filtered-subscriptions",
                        {
                            "subscriptions": s,
                            "match_fraction": 0.1,
                            "predicate": pred,
                            "connections": 4,
                            "connector": "inprocess",
                            "processes": 0,
                            "commits": n,
                            "baseline_commits": n,
                            "commit_interval_ms": 0.0,
                        },
                    )
                ],
            )
    return out


class CommitFanOut:
    """Commit latency with S live queries, routable (equality) or not (range)."""

    params = [list(SUBSCRIPTIONS), list(PREDICATES)]
    param_names = ["subscriptions", "predicate"]
    unit = "us"
    timeout = CACHE_TIMEOUT

    def setup_cache(self) -> Any:
        return cache_or_skip(_run)

    setup_cache.timeout = CACHE_TIMEOUT  # type: ignore[attr-defined]

    def setup(self, cache: Any, subscriptions: int, predicate: str) -> None:
        skip_if_skipped(cache)
        got = cache.get((subscriptions, predicate))
        if got is None:
            raise NotImplementedError("not run")
        if got["status"] == NA:
            raise NotImplementedError(got["reason"])
        if got["status"] == ERROR:
            raise RuntimeError(got["reason"])  # a failed delivery check fails the benchmark
        self.ph = got["phases"]["filtered-subscriptions"]

    def _us(self, op: str, group: str = "latency") -> float:
        return self.ph[group][op]["p50"] * 1e3

    def track_commit_no_subscriptions_p50(self, cache: Any, *p: Any) -> float:
        """us, median commit before any live query exists (the baseline)."""
        return self._us("commit@0_subs")

    def track_commit_nonmatching_p50(self, cache: Any, *p: Any) -> float:
        """us, median commit that matches none of the S live queries."""
        return self._us("commit@nonmatching")

    def track_nonmatching_overhead_p50(self, cache: Any, *p: Any) -> float:
        """us, what S non-matching live queries add to a commit (p50 difference to the baseline)."""
        return self.ph["extra"]["nonmatching_overhead_p50_ms"] * 1e3

    def track_commit_matching_p50(self, cache: Any, *p: Any) -> float:
        """us, median commit that matches S/10 of them (their notifications included)."""
        return self._us("commit@matching")
