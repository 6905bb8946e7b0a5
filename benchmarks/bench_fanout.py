"""The `fanout` family of `sprout_harness.asvsuite` (asv names its benchmarks `bench_fanout.*`)."""

from sprout_harness.asvsuite.fanout import *  # noqa: F403
