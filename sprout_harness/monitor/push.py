"""Push a finished run to a Prometheus Pushgateway: the figures outlive the process.

The live endpoint serves a run only while it lives (and ``--monitor-linger`` after); a
short run is barely scrapeable. Pushing sends the same metric families as ``/metrics``
(``monitor.prometheus``) once the run has ended, grouped by job and run id so runs do not
overwrite each other, through prometheus-client's own ``push_to_gateway``.
"""

from __future__ import annotations

from prometheus_client import push_to_gateway

from sprout_harness.metrics.results import RunResult
from sprout_harness.monitor.prometheus import make_registry
from sprout_harness.monitor.state import RunState

DEFAULT_JOB = "sprout"


def state_of(run: RunResult) -> RunState:
    """A monitor state that has seen ``run`` from start to end."""
    state = RunState(run.metadata)
    for phase in run.phases:
        state.phase_finished(phase)
    state.run_finished(run)
    return state


def push(run: RunResult, gateway: str, job: str = DEFAULT_JOB, timeout_s: float = 10.0) -> None:
    """Push ``run``'s metrics to ``gateway`` (``http://host:port`` or ``host:port``); raises
    ``OSError`` (connection refused, HTTP error) with the gateway's answer."""
    push_to_gateway(
        gateway,
        job=job,
        registry=make_registry(state_of(run)),
        grouping_key={"run_id": run.metadata.run_id},
        timeout=timeout_s,
    )
