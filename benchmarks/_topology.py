"""The topology matrix and `run_family`: `sprout_harness.asvsuite._topology`, re-exported for
sprout's own modules (gate) and the tests."""

from sprout_harness.asvsuite._topology import *  # noqa: F403
