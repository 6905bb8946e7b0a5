"""Live monitoring of a run: a thread-safe ``RunState`` the runner updates, and an HTTP server
(dashboard, JSON API, Prometheus text, graceful stop) that reads it. See docs/monitoring.md."""

from sprout_harness.monitor.live import LiveMonitor, run_monitored_sync, run_with_monitor
from sprout_harness.monitor.server import MonitorConfigError, MonitorServer, check_exposure, parse_addr
from sprout_harness.monitor.state import RunState

__all__ = [
    "LiveMonitor",
    "MonitorConfigError",
    "MonitorServer",
    "RunState",
    "check_exposure",
    "parse_addr",
    "run_monitored_sync",
    "run_with_monitor",
]
