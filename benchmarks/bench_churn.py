"""The `churn` family of `sprout_harness.asvsuite` (asv names its benchmarks `bench_churn.*`)."""

from sprout_harness.asvsuite.churn import *  # noqa: F403
