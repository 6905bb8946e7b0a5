"""Realistic runs for report and comparison tests: built the way the runner builds them
(real recorders fed with latency-shaped samples), and copies of them made slower."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sprout_harness.metrics import (
    Histogram,
    PhaseRecorder,
    RunMetadata,
    RunResult,
    git_info,
    host_info,
    overall_status,
    python_info,
)


def make_run(seed: int = 7, scale: float = 1.0, label: str = "leveldb-local") -> RunResult:
    """A run built the way the runner builds one: real recorders fed with latency-shaped samples."""
    rng = np.random.default_rng(seed)
    phases = []

    create = PhaseRecorder("create")
    create.start()
    for v in rng.lognormal(np.log(200_000 * scale), 0.5, 2000).astype(np.int64):
        create.record("create_one", int(v))
    create.latency("create_batch").record_many(rng.lognormal(np.log(3_000_000 * scale), 0.3, 200).astype(np.int64))
    with create.timer("create_one"):
        sum(range(1000))
    create.count("entities_created", 2001 + 200 * 100)
    create.check("every write landed", True, "22001 of 22001")
    create.error("StackError", "transient: connection reset")
    create.stop()
    phases.append(create.result())

    live = PhaseRecorder("live")
    live.start()
    for v in rng.lognormal(np.log(1_500_000 * scale), 0.4, 500).astype(np.int64):
        live.lag("commit_to_notify", int(v))
    for v in rng.lognormal(np.log(400_000 * scale), 0.4, 300).astype(np.int64):
        live.connector_delay("changes", int(v))
    live.record("subscribe", int(800_000 * scale))
    live.stop()
    phases.append(live.result())

    unsupported = PhaseRecorder("fulltext")
    unsupported.mark_unsupported("stack has no text index")
    phases.append(unsupported.result())

    commit, dirty = git_info(Path(__file__).parent)
    meta = RunMetadata(
        run_id=f"run-{seed}",
        suite="smoke",
        config_name=label,
        config={"password": "***", "n": 2000},
        git_commit=commit,
        git_dirty=dirty,
        seed=seed,
        dataset_sizes={"entities": 22001},
        topology={"durable": 1, "ephemeral": 2, "links": {"e1-d1": "websocket"}},
        stack="loam",
        storage={"engine": "leveldb"},
        policy="lww",
        connector="websocket",
        started_at=1.0,
        ended_at=2.0,
        host=host_info(),
        python=python_info(),
        sprout_version="0.1.0",
        notes=["fsync off"],
    )
    status, reason = overall_status(phases)
    return RunResult(metadata=meta, phases=phases, status=status, reason=reason)


def scaled_hist(h: Histogram, factor: float) -> Histogram:
    """Every sample of ``h`` recorded again ``factor`` times larger (at its bucket's value)."""
    out = Histogram(h.relative_error, h.max_value_ns)
    for lo, n in h.to_dict()["buckets"]:
        out.record_many([lo * factor] * n)
    return out


def slowed(run: RunResult, factor: float, run_id: str | None = None) -> RunResult:
    """A copy of ``run`` whose every latency, lag and connector delay is ``factor`` times
    larger: histograms re-recorded, and each run's own figures (but their counts) scaled."""
    new = RunResult.from_dict(run.to_dict())
    new.metadata.run_id = run_id or run.metadata.run_id + f"-x{factor:g}"
    for p in new.phases:
        for hists in (p.latencies, p.lags, p.connector_delays):
            for name, h in list(hists.items()):
                hists[name] = scaled_hist(h, factor)
    for r in new.runs:
        for figs in r.metrics.values():
            for stat in figs:
                if stat != "count":
                    figs[stat] *= factor
    return new
