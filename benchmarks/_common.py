"""Shared payloads, sizes, seeded randomness and skip helpers: `sprout_harness.asvsuite._common`
(one table of sizes, `SPROUT_BENCH_SCALE`), re-exported for sprout's own modules."""

from sprout_harness.asvsuite._common import *  # noqa: F403
