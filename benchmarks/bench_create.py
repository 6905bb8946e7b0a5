"""The `create` family of `sprout_harness.asvsuite` (asv names its benchmarks `bench_create.*`)."""

from sprout_harness.asvsuite.create import *  # noqa: F403
