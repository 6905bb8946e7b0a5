"""asv benchmarks: what the live monitor costs a run. Lower is better for every figure.

``MonitorRun.time_run`` is the same tiny loam/LevelDB run with the monitor off and on (its
HTTP server and 0.1 s sampler on their own thread, nobody watching): the gap between the two
parameters is the monitor's overhead on a run. ``MonitorCosts`` times the pieces a viewer
triggers: one sample of a busy recorder, one ``/api/metrics`` body, one Prometheus scrape.
"""

from __future__ import annotations

import asyncio

from ._common import require, rng, scale


def _config(ops: int):
    load = require("sprout_harness.config.load")
    return load.config_from_dict(
        {
            "name": "monitor-overhead",
            "stack": {"name": "loam"},
            "storage": {"engine": "leveldb"},
            "topology": {"durable": 1, "ephemeral": 0},
            "datasets": {"albums": 200, "pets": 200},
            "phases": [
                {"name": "fetch", "target": "durable", "params": {"get_ops": ops, "fetch_ops": ops // 20}},
                {"name": "writers", "target": "durable", "params": {"writers": 4, "ops": ops}},
            ],
        }
    )


class MonitorRun:
    """A tiny run end to end, without and with the live monitor."""

    params = ["off", "on"]
    param_names = ["monitor"]
    number = 1
    repeat = 3
    timeout = 300

    def setup(self, monitor: str) -> None:
        self.runner_mod = require("sprout_harness.topology.runner")
        self.monitor_mod = require("sprout_harness.monitor") if monitor == "on" else None
        self.cfg = _config(scale().monitor_ops)

    def time_run(self, monitor: str) -> None:
        runner = self.runner_mod.Runner(self.cfg)
        if self.monitor_mod is None:
            result = asyncio.run(runner.run())
        else:
            live = self.monitor_mod.LiveMonitor(port=0, interval_s=0.1)
            result = asyncio.run(self.monitor_mod.run_with_monitor(runner, live, linger_s=0))
        if result.status != "ok":
            raise RuntimeError(f"benchmark run failed: {result.reason}")


class MonitorCosts:
    """The monitor's own work per sample and per request, on a recorder holding a busy phase."""

    def setup(self) -> None:
        recorder_mod = require("sprout_harness.metrics.recorder")
        state_mod = require("sprout_harness.monitor.state")
        prom = require("sprout_harness.monitor.prometheus")
        import numpy as np

        draws = rng(7, numpy=True)
        rec = recorder_mod.PhaseRecorder("bench")
        rec.start()
        for op in ("get", "fetch:equality", "fetch:range", "update", "delete"):
            rec.latency(op).record_many(draws.lognormal(np.log(200_000), 1.2, size=20_000).astype(np.int64))
        rec.lag("notify", 300_000)
        self.state = state_mod.RunState()
        self.state.phase_started("bench", rec)
        self.state.sample()
        self.registry = prom.make_registry(self.state)
        self.exposition = prom.exposition

    def time_sample(self) -> None:
        self.state.sample()

    def time_metrics_json(self) -> None:
        self.state._cache = None  # what the first viewer after a sample pays
        self.state.metrics_dict()

    def time_prometheus_scrape(self) -> None:
        self.exposition(self.registry)
