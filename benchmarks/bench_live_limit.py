"""The `live_limit` family of `sprout_harness.asvsuite` (asv names its benchmarks `bench_live_limit.*`)."""

from sprout_harness.asvsuite.live_limit import *  # noqa: F403
