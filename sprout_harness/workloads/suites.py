"""Built-in suites. A suite is a named, ordered list of phase steps; see docs/suites.md."""

from __future__ import annotations

from sprout_harness.workloads.catalog import SuiteSpec, SuiteStep, register_suite

SPROUT = register_suite(SuiteSpec(
    name="sprout",
    summary="the core suite: create, fetch, live-limit, writers, churn",
    phases=(
        SuiteStep("create", "durable"),
        SuiteStep("fetch", "durable"),
        SuiteStep("live-limit", "durable"),
        SuiteStep("writers", "durable"),
        SuiteStep("churn", "durable"),
    ),
))
