"""Prometheus text exposition of a run, through ``prometheus_client`` (never a hand-written format).

A custom ``Collector`` on a ``CollectorRegistry`` of our own (not the global default one, so
nothing else in the process leaks in) turns the ``RunState`` into counters, gauges and
histograms at scrape time. Histogram buckets are derived from our log-bucketed
``Histogram``: a bucket ``le=B`` counts the samples whose histogram bucket starts at or
below ``B`` — exact up to the histogram's 1% relative error around each bound.
"""

from __future__ import annotations

from typing import Any, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from sprout_harness.monitor.state import STAGES, TERMINAL, HistView, RunState

# Seconds; a latency range from 10 us to 10 s covers loopback RTTs up to stalled syncs.
BUCKETS_S = (
    1e-5,
    2.5e-5,
    5e-5,
    1e-4,
    2.5e-4,
    5e-4,
    1e-3,
    2.5e-3,
    5e-3,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
CONTENT_TYPE = CONTENT_TYPE_LATEST


def prom_buckets(h: HistView) -> list[tuple[str, float]]:
    """Cumulative ``(le, count)`` pairs, ending with ``+Inf`` = count."""
    items = sorted(h.buckets.items())
    out: list[tuple[str, float]] = []
    i, cum = 0, 0
    for bound in BUCKETS_S:
        limit = bound * 1e9
        while i < len(items) and items[i][0] <= limit:
            cum += items[i][1]
            i += 1
        out.append((floatToGoString(bound), float(cum)))
    out.append(("+Inf", float(h.count)))
    return out


class RunCollector(Collector):
    """Emits the run's metrics from a ``RunState`` at every scrape."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    def describe(self) -> list[Metric]:
        return []  # metric families depend on the run; no up-front description

    def collect(self) -> Iterator[Metric]:
        view: dict[str, Any] = self.state.prometheus_view()
        m = view["metadata"]
        info = InfoMetricFamily("sprout_run", "The run being measured")
        info.add_metric(
            [],
            {
                "run_id": m.run_id if m else "",
                "config": m.config_name if m else "",
                "stack": m.stack if m else "",
                "suite": m.suite if m else "",
                "commit": (m.git_commit or "") if m else "",
            },
        )
        yield info

        status = GaugeMetricFamily("sprout_run_status", "1 for the run's current status", labels=["status"])
        current = view["status"]
        known = list(STAGES) + ["running"] + list(TERMINAL)
        for s in known:
            status.add_metric([s], 1.0 if current == s or (s == "running" and current.startswith("running ")) else 0.0)
        yield status
        yield GaugeMetricFamily("sprout_run_elapsed_seconds", "Seconds since the run started", value=view["elapsed_s"])

        phase_info = GaugeMetricFamily(
            "sprout_phase_running", "1 for the phase being measured now, 0 for finished ones", labels=["phase"]
        )
        wall = GaugeMetricFamily("sprout_phase_wall_seconds", "Wall time of each phase so far", labels=["phase"])
        ops = CounterMetricFamily(
            "sprout_operations", "Operations finished, per phase and operation", labels=["phase", "op"]
        )
        errors = CounterMetricFamily("sprout_errors", "Errors per phase and category", labels=["phase", "category"])
        counters = CounterMetricFamily(
            "sprout_phase_events", "Phase counters (entities created, subscriptions, ...)", labels=["phase", "counter"]
        )
        latency = HistogramMetricFamily("sprout_operation_latency_seconds", "Operation latency", labels=["phase", "op"])
        lag = HistogramMetricFamily(
            "sprout_subscription_lag_seconds", "Commit -> notification lag", labels=["phase", "name"]
        )
        delay = HistogramMetricFamily(
            "sprout_connector_delay_seconds", "Time messages spent in a connector", labels=["phase", "message_type"]
        )
        for p in view["phases"]:
            phase_info.add_metric([p.name], 1.0 if p.name == view["current"] and p.status == "running" else 0.0)
            wall.add_metric([p.name], p.wall_s)
            for op, h in p.latencies.items():
                ops.add_metric([p.name, op], float(h.count))
                latency.add_metric([p.name, op], prom_buckets(h), h.sum_ns / 1e9)
            for name, h in p.lags.items():
                lag.add_metric([p.name, name], prom_buckets(h), h.sum_ns / 1e9)
            for name, h in p.connector_delays.items():
                delay.add_metric([p.name, name], prom_buckets(h), h.sum_ns / 1e9)
            for cat, e in p.errors.items():
                errors.add_metric([p.name, cat], float(e["count"]))
            for name, n in p.counters.items():
                counters.add_metric([p.name, name], float(n))
        yield from (phase_info, wall, ops, errors, counters, latency, lag, delay)


def make_registry(state: RunState) -> CollectorRegistry:
    """A fresh registry holding only this run's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(state))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format of everything in ``registry``."""
    return generate_latest(registry)
