"""What a run measured: plain dataclasses with ``to_dict``/``from_dict`` (orjson-friendly).

These are data only; presentation lives in ``sprout_harness.reports``. The JSON layout is
documented in docs/report-schema.md; bump ``SCHEMA_VERSION`` on any incompatible change.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from sprout_harness.metrics.histogram import Histogram
from sprout_harness.metrics.timeline import TimelinePoint

SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)  # 1: no `runs`, no `thresholds` (read as one run)
RUN_FIGURES = ("count", "mean", "p50", "p90", "p95", "p99", "p999", "max")

PhaseStatus = Literal["ok", "failed", "unsupported", "cancelled", "error"]
RunStatus = Literal["ok", "failed", "cancelled", "error"]
PHASE_STATUSES: tuple[str, ...] = ("ok", "failed", "unsupported", "cancelled", "error")
RUN_STATUSES: tuple[str, ...] = ("ok", "failed", "cancelled", "error")


@dataclass
class ErrorStat:
    """How often an error category occurred, with up to 5 recent sample messages."""

    count: int = 0
    samples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "samples": list(self.samples)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ErrorStat:
        return cls(count=int(d["count"]), samples=[str(s) for s in d.get("samples", [])])


@dataclass(frozen=True)
class Check:
    """One validation result (e.g. "every write landed"); ``ok=False`` fails the phase."""

    name: str
    ok: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Check:
        return cls(name=str(d["name"]), ok=bool(d["ok"]), detail=str(d.get("detail", "")))


def _hists_to_dict(hs: dict[str, Histogram]) -> dict[str, Any]:
    return {k: h.to_dict() for k, h in hs.items()}


def _hists_from_dict(d: dict[str, Any] | None) -> dict[str, Histogram]:
    return {k: Histogram.from_dict(v) for k, v in (d or {}).items()}


def _finite(x: float) -> float | None:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


@dataclass
class PhaseResult:
    """Everything measured in one phase. Histograms hold ns; ``throughput`` is ops/s per op."""

    name: str
    status: PhaseStatus = "ok"
    reason: str | None = None
    wall_ns: int = 0
    started_at: float = 0.0  # unix seconds
    ended_at: float = 0.0
    latencies: dict[str, Histogram] = field(default_factory=dict)
    lags: dict[str, Histogram] = field(default_factory=dict)
    connector_delays: dict[str, Histogram] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    errors: dict[str, ErrorStat] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    timeline: list[TimelinePoint] = field(default_factory=list)
    throughput: dict[str, float] = field(default_factory=dict)
    peak_rss_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def all_latencies(self) -> Histogram:
        """Every op's latency merged: the per-phase percentiles."""
        h = Histogram()
        for op in self.latencies.values():
            h.merge(op)
        return h

    def metrics(self) -> dict[str, Histogram]:
        """Every non-empty figure of the phase by its report name: ``<phase>/<op>``,
        ``<phase>/lag.<name>``, ``<phase>/connector.<type>`` (the names compare, thresholds
        and per-run figures use)."""
        out: dict[str, Histogram] = {}
        for op, h in self.latencies.items():
            out[f"{self.name}/{op}"] = h
        for n, h in self.lags.items():
            out[f"{self.name}/lag.{n}"] = h
        for n, h in self.connector_delays.items():
            out[f"{self.name}/connector.{n}"] = h
        return {k: h for k, h in out.items() if h.count}

    @property
    def ops(self) -> int:
        """Operations measured in the phase (all op types)."""
        return sum(h.count for h in self.latencies.values())

    @property
    def error_count(self) -> int:
        return sum(e.count for e in self.errors.values())

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "wall_ns": self.wall_ns,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "latencies": _hists_to_dict(self.latencies),
            "lags": _hists_to_dict(self.lags),
            "connector_delays": _hists_to_dict(self.connector_delays),
            "counters": dict(self.counters),
            "errors": {k: e.to_dict() for k, e in self.errors.items()},
            "checks": [c.to_dict() for c in self.checks],
            "timeline": [p.to_dict() for p in self.timeline],
            "throughput": {k: v for k, v in self.throughput.items() if _finite(v) is not None},
            "peak_rss_bytes": self.peak_rss_bytes,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PhaseResult:
        status = d.get("status", "ok")
        if status not in PHASE_STATUSES:
            raise ValueError(f"phase {d.get('name')!r}: unknown status {status!r} (expected one of {PHASE_STATUSES})")
        return cls(
            name=str(d["name"]),
            status=status,
            reason=d.get("reason"),
            wall_ns=int(d.get("wall_ns", 0)),
            started_at=float(d.get("started_at", 0.0)),
            ended_at=float(d.get("ended_at", 0.0)),
            latencies=_hists_from_dict(d.get("latencies")),
            lags=_hists_from_dict(d.get("lags")),
            connector_delays=_hists_from_dict(d.get("connector_delays")),
            counters={k: int(v) for k, v in (d.get("counters") or {}).items()},
            errors={k: ErrorStat.from_dict(v) for k, v in (d.get("errors") or {}).items()},
            checks=[Check.from_dict(c) for c in d.get("checks", [])],
            timeline=[TimelinePoint.from_dict(p) for p in d.get("timeline", [])],
            throughput={k: float(v) for k, v in (d.get("throughput") or {}).items()},
            peak_rss_bytes=int(d.get("peak_rss_bytes", 0)),
            extra=dict(d.get("extra") or {}),
        )


def new_run_id() -> str:
    """A run's id: its start time (to the second) and six random hex digits."""
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


@dataclass
class RunMetadata:
    """Where and how a run happened. ``config`` must already have its secrets masked."""

    run_id: str
    suite: str = ""
    config_name: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    git_commit: str | None = None
    git_dirty: bool = False
    seed: int | None = None
    dataset_sizes: dict[str, int] = field(default_factory=dict)
    topology: dict[str, Any] = field(default_factory=dict)  # durable / ephemeral counts, connector per link
    stack: str = ""
    storage: dict[str, Any] = field(default_factory=dict)
    policy: str = ""
    connector: str = ""
    started_at: float = 0.0
    ended_at: float = 0.0
    host: dict[str, Any] = field(default_factory=dict)
    python: dict[str, Any] = field(default_factory=dict)
    sprout_version: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """Short name of what ran, used to prefix metric names (config name, else stack)."""
        return self.config_name or self.stack or self.suite or "run"

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "suite": self.suite,
            "config_name": self.config_name,
            "config": self.config,
            "git_commit": self.git_commit,
            "git_dirty": self.git_dirty,
            "seed": self.seed,
            "dataset_sizes": dict(self.dataset_sizes),
            "topology": self.topology,
            "stack": self.stack,
            "storage": self.storage,
            "policy": self.policy,
            "connector": self.connector,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "host": self.host,
            "python": self.python,
            "sprout_version": self.sprout_version,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunMetadata:
        return cls(
            run_id=str(d["run_id"]),
            suite=d.get("suite", ""),
            config_name=d.get("config_name", ""),
            config=dict(d.get("config") or {}),
            git_commit=d.get("git_commit"),
            git_dirty=bool(d.get("git_dirty", False)),
            seed=d.get("seed"),
            dataset_sizes={k: int(v) for k, v in (d.get("dataset_sizes") or {}).items()},
            topology=dict(d.get("topology") or {}),
            stack=d.get("stack", ""),
            storage=dict(d.get("storage") or {}),
            policy=d.get("policy", ""),
            connector=d.get("connector", ""),
            started_at=float(d.get("started_at", 0.0)),
            ended_at=float(d.get("ended_at", 0.0)),
            host=dict(d.get("host") or {}),
            python=dict(d.get("python") or {}),
            sprout_version=d.get("sprout_version", ""),
            notes=[str(n) for n in d.get("notes", [])],
        )


def overall_status(phases: list[PhaseResult]) -> tuple[RunStatus, str | None]:
    """Run status derived from its phases: error > cancelled > failed > ok (unsupported is not a failure)."""
    for status in ("error", "cancelled", "failed"):
        bad = [p for p in phases if p.status == status]
        if bad:
            why = "; ".join(f"{p.name}: {p.reason or status}" for p in bad)
            return status, why  # type: ignore[return-value]
    return "ok", None


def _figure(x: Any, where: str) -> float:
    v = float(x)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{where}: {x!r} is not a finite figure >= 0")
    return v


def _share(v: Any, where: str) -> float | None:
    if v is None:
        return None
    if type(v) not in (int, float) or not 0.0 <= v <= 1.0:
        raise ValueError(f"{where}: expected a share of the CPU in 0..1 or null, got {v!r:.40}")
    return float(v)


@dataclass
class RunFigures:
    """One run's own figures: what a repeated run (``sprout run --repeat N``) keeps of each of
    its runs beside the merged histograms. ``metrics`` maps a metric name
    (``PhaseResult.metrics``) to its ``RUN_FIGURES`` in ns (``count`` in samples);
    ``wall_ns`` maps a phase to its wall time."""

    index: int
    run_id: str
    status: str = "ok"
    reason: str | None = None
    started_at: float = 0.0
    ended_at: float = 0.0
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    wall_ns: dict[str, int] = field(default_factory=dict)
    other_cpu_share: float | None = None  # the CPU other processes took meanwhile (metrics.system.OtherCpu)

    @classmethod
    def of(cls, index: int, run: RunResult) -> RunFigures:
        metrics = {}
        for phase in run.phases:
            for name, h in phase.metrics().items():
                values = h.percentiles([50.0, 90.0, 95.0, 99.0, 99.9])
                metrics[name] = {
                    "count": float(h.count),
                    "mean": h.mean,
                    "max": float(h.max),
                    **dict(zip(("p50", "p90", "p95", "p99", "p999"), values)),
                }
        return cls(
            index=index,
            run_id=run.metadata.run_id,
            status=run.status,
            reason=run.reason,
            started_at=run.metadata.started_at,
            ended_at=run.metadata.ended_at,
            metrics=metrics,
            wall_ns={p.name: p.wall_ns for p in run.phases},
            other_cpu_share=(run.metadata.host or {}).get("other_cpu_share"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "run_id": self.run_id,
            "status": self.status,
            "reason": self.reason,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "metrics": {k: {s: v[s] for s in RUN_FIGURES if s in v} for k, v in self.metrics.items()},
            "wall_ns": dict(self.wall_ns),
            "other_cpu_share": self.other_cpu_share,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunFigures:
        status = d.get("status", "ok")
        if status not in RUN_STATUSES:
            raise ValueError(f"runs[{d.get('index')}].status: unknown status {status!r}")
        metrics: dict[str, dict[str, float]] = {}
        for name, figs in (d.get("metrics") or {}).items():
            if not isinstance(figs, dict):
                raise ValueError(f"runs[{d.get('index')}].metrics.{name}: expected a mapping of figures")
            unknown = set(figs) - set(RUN_FIGURES)
            if unknown:
                raise ValueError(f"runs[{d.get('index')}].metrics.{name}: unknown figure {sorted(unknown)[0]!r}")
            metrics[str(name)] = {s: _figure(v, f"runs[{d.get('index')}].metrics.{name}.{s}") for s, v in figs.items()}
        return cls(
            index=int(d["index"]),
            run_id=str(d["run_id"]),
            status=status,
            reason=d.get("reason"),
            started_at=float(d.get("started_at", 0.0)),
            ended_at=float(d.get("ended_at", 0.0)),
            metrics=metrics,
            wall_ns={str(k): int(v) for k, v in (d.get("wall_ns") or {}).items()},
            other_cpu_share=_share(d.get("other_cpu_share"), f"runs[{d.get('index')}].other_cpu_share"),
        )


@dataclass(frozen=True)
class ThresholdOutcome:
    """One `thresholds:` rule of the config judged against a run (``metrics.thresholds``):
    ``pattern`` and ``expression`` as written (e.g. ``"*/lag.notify"``, ``"< 5ms"``), the
    statistic it bounds (``p99``, ``checks``, ...), ``values`` the observed figure per matched
    metric (ns; a fraction for ``checks``), and a one-line ``detail`` when it failed."""

    pattern: str
    stat: str
    expression: str
    ok: bool
    values: dict[str, float] = field(default_factory=dict)
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "stat": self.stat,
            "expression": self.expression,
            "ok": self.ok,
            "values": dict(self.values),
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ThresholdOutcome:
        return cls(
            pattern=str(d["pattern"]),
            stat=str(d["stat"]),
            expression=str(d["expression"]),
            ok=bool(d["ok"]),
            values={str(k): float(v) for k, v in (d.get("values") or {}).items()},
            detail=str(d.get("detail", "")),
        )


@dataclass
class RunResult:
    """A whole run: its metadata, its phases in order, and the overall status.

    A repeated run holds its runs' histograms merged in ``phases`` and each run's own
    figures in ``runs`` (one entry for a single run); ``warmup_runs`` counts the discarded
    warm-up runs before them."""

    metadata: RunMetadata
    phases: list[PhaseResult] = field(default_factory=list)
    status: RunStatus = "ok"
    reason: str | None = None
    runs: list[RunFigures] = field(default_factory=list)
    warmup_runs: int = 0
    thresholds: list[ThresholdOutcome] = field(default_factory=list)

    def metrics(self) -> dict[str, Histogram]:
        """Every non-empty figure of every phase by name (see ``PhaseResult.metrics``)."""
        out: dict[str, Histogram] = {}
        for p in self.phases:
            out.update(p.metrics())
        return out

    def run_figures(self) -> list[RunFigures]:
        """Each run's own figures: ``runs``, or this result itself when it holds none (a report
        of schema 1, or a result not yet written)."""
        return self.runs or [RunFigures.of(0, self)]

    def run_values(self, metric: str, stat: str) -> list[float]:
        """One figure of one metric as each of ``runs`` measured it (runs without it skipped)."""
        return [r.metrics[metric][stat] for r in self.runs if metric in r.metrics and stat in r.metrics[metric]]

    @property
    def thresholds_failed(self) -> list[ThresholdOutcome]:
        return [t for t in self.thresholds if not t.ok]

    def phase(self, name: str) -> PhaseResult:
        """The first phase called ``name`` (KeyError naming the known phases otherwise)."""
        for p in self.phases:
            if p.name == name:
                return p
        raise KeyError(f"no phase {name!r} in run {self.metadata.run_id}; phases: {[p.name for p in self.phases]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "status": self.status,
            "reason": self.reason,
            "metadata": self.metadata.to_dict(),
            "phases": [p.to_dict() for p in self.phases],
            "runs": [r.to_dict() for r in self.runs],
            "warmup_runs": self.warmup_runs,
            "thresholds": [t.to_dict() for t in self.thresholds],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        version = d.get("schema_version")
        if version not in READABLE_SCHEMA_VERSIONS or isinstance(version, bool):
            raise ValueError(
                f"schema_version {version!r} is not supported (this sprout reads "
                f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))}); "
                "re-run the benchmark with this version or use the sprout version that wrote it"
            )
        status = d.get("status", "ok")
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r} (expected one of {RUN_STATUSES})")
        return cls(
            metadata=RunMetadata.from_dict(d["metadata"]),
            phases=[PhaseResult.from_dict(p) for p in d.get("phases", [])],
            status=status,
            reason=d.get("reason"),
            runs=[RunFigures.from_dict(r) for r in d.get("runs") or []],
            warmup_runs=int(d.get("warmup_runs", 0)),
            thresholds=[ThresholdOutcome.from_dict(t) for t in d.get("thresholds") or []],
        )


def load_run(path: str | Path) -> RunResult:
    """Read a JSON report written by ``reports.json_report.write``."""
    p = Path(path)
    try:
        data = orjson.loads(p.read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"run report {p} does not exist; pass the path of a JSON report written by a run"
        ) from None
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"run report {p} is not valid JSON ({exc}); pass a JSON report, not the gab file") from exc
    if isinstance(data, list):
        raise ValueError(f"{p} is a github-action-benchmark file (a JSON array); pass the full JSON report instead")
    if not isinstance(data, dict):
        raise ValueError(f"run report {p} must hold a JSON object")
    try:
        return RunResult.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"run report {p} cannot be read: {exc}") from exc
