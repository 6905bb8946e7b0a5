"""The `writers` family of `sprout_harness.asvsuite` (asv names its benchmarks `bench_writers.*`)."""

from sprout_harness.asvsuite.writers import *  # noqa: F403
