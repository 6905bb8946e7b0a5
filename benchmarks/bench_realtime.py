"""The `realtime` family of `sprout_harness.asvsuite` (asv names its benchmarks `bench_realtime.*`)."""

from sprout_harness.asvsuite.realtime import *  # noqa: F403
