"""Measurement layer: histograms, per-phase recording, and the result data model.

Nothing here formats output (see ``sprout_harness.reports``) or knows about any stack.
"""

from sprout_harness.metrics.histogram import Histogram, measure_record_cost_ns
from sprout_harness.metrics.recorder import PhaseRecorder
from sprout_harness.metrics.results import (
    SCHEMA_VERSION,
    Check,
    ErrorStat,
    PhaseResult,
    RunMetadata,
    RunResult,
    load_run,
    overall_status,
)
from sprout_harness.metrics.system import git_info, host_info, peak_rss_bytes, python_info
from sprout_harness.metrics.timeline import Timeline, TimelinePoint

__all__ = [
    "SCHEMA_VERSION",
    "Check",
    "ErrorStat",
    "Histogram",
    "PhaseRecorder",
    "PhaseResult",
    "RunMetadata",
    "RunResult",
    "Timeline",
    "TimelinePoint",
    "git_info",
    "host_info",
    "load_run",
    "measure_record_cost_ns",
    "overall_status",
    "peak_rss_bytes",
    "python_info",
]
