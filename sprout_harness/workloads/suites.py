"""Built-in suites. A suite is a named, ordered list of phase steps; see docs/suites.md."""

from __future__ import annotations

from sprout_harness.workloads.catalog import SuiteSpec, SuiteStep, register_suite

SPROUT = register_suite(
    SuiteSpec(
        name="sprout",
        summary="the core suite: create, fetch, live-limit, writers, churn",
        phases=(
            SuiteStep("create", "durable"),
            SuiteStep("fetch", "durable"),
            SuiteStep("live-limit", "durable"),
            SuiteStep("writers", "durable"),
            SuiteStep("churn", "durable"),
        ),
    )
)

MIXES = register_suite(
    SuiteSpec(
        name="mixes",
        summary="operation mixes: crud presets write-heavy, read-heavy, balanced, then YCSB A-F",
        phases=(
            SuiteStep("crud", "durable", {"preset": "write-heavy"}, label="crud-write-heavy"),
            SuiteStep("crud", "durable", {"preset": "read-heavy"}, label="crud-read-heavy"),
            SuiteStep("crud", "durable", {"preset": "balanced"}, label="crud-balanced"),
            *(SuiteStep(f"ycsb-{w}", "durable") for w in "abcdef"),
        ),
    )
)

QUERIES = register_suite(
    SuiteSpec(
        name="queries",
        summary="query scenarios: simple, complex, sorted, paginated, large result sets",
        phases=tuple(SuiteStep(f"query-{q}", "durable") for q in ("simple", "complex", "sorted", "paginated", "large")),
    )
)

REALTIME = register_suite(
    SuiteSpec(
        name="realtime",
        summary="realtime scaling: connections, subscriptions, event fan-out, filtered subscriptions",
        phases=(
            SuiteStep("connection-scaling", "durable"),
            SuiteStep("subscription-scaling", "durable"),
            SuiteStep("event-throughput", "durable"),
            SuiteStep("filtered-subscriptions", "durable"),
        ),
    )
)

SERVER = register_suite(
    SuiteSpec(
        name="server",
        summary="server-side features: triggers with webhook delivery, database isolation",
        phases=(
            SuiteStep("trigger", "durable"),
            SuiteStep("isolation", "durable"),
        ),
    )
)
