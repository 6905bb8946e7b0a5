"""Builds the topology a config describes, runs its phases, and always tears it down.

Order: stack.start -> durable nodes -> per ephemeral: connector (its link) then the
ephemeral node -> seed datasets on every durable node -> sync barrier (each ephemeral must
read a marker written after seeding, plus a sample of seeded entities: a check with a
deadline, not a sleep) -> phases -> teardown (ephemerals, connectors, durables, stack,
cleanups), whatever happened. Ctrl+C / SIGTERM / task cancellation become status
"cancelled"; any other exception status "error"; both keep the phases measured so far, and
the report files (when asked for) are written in every case.

While `run` is active it owns SIGINT and SIGTERM (main thread only): each one is a stop
request, also during teardown (the run is then reported cancelled); none cuts the teardown
short, so an impatient second Ctrl+C cannot leave servers or temp dirs behind (each part of
the teardown has its own timeout). Building and seeding go through `_checkpoint` after every
stack call, so a stop request reaches them within one call even when the stack's calls never
suspend (LevelDB, in-process connectors).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import signal
import threading
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any, Callable, ContextManager

from sprout_harness import plugins
from sprout_harness.config.schema import PhaseConfig, SproutConfig
from sprout_harness.config.settings import stack_settings
from sprout_harness.config.validate import build_knobs, resolve_stack_name, run_stack_validate
from sprout_harness.contracts.client import Capabilities, Doc
from sprout_harness.contracts.errors import CheckFailed, SproutError, StackError, Unsupported
from sprout_harness.contracts.stack import Link, StackSettings
from sprout_harness.metrics import PhaseRecorder, PhaseResult, RunMetadata, RunResult, overall_status
from sprout_harness.metrics.results import RunFigures, new_run_id
from sprout_harness.metrics.system import OtherCpu, git_info, host_info, python_info
from sprout_harness.metrics.thresholds import evaluate as evaluate_thresholds
from sprout_harness.services.postgres import mask_dsn
from sprout_harness.workloads import catalog, datasets
from sprout_harness.workloads.context import Model, NodeRef, PhaseContext, maybe_await

SYNC_COLLECTION = "sprout_sync"
TEARDOWN_TIMEOUT_S = 30.0
YIELD_EVERY_S = 0.02  # building and seeding let the loop run (signals, monitor, keepalives) this often
_SECRET_KEYS = ("password", "secret", "token", "passwd", "key")
REPO_ROOT = Path(__file__).resolve().parents[2]

ProgressFactory = Callable[[str], ContextManager[Any]]


class _NullProgress:
    def __enter__(self) -> _NullProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def advance(self, n: int = 1) -> None:
        pass

    def set_total(self, total: int | None) -> None:
        pass


def mask_secrets(value: Any) -> Any:
    """A copy with DSNs' passwords and secret-looking keys masked (for reports)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(v, str) and any(s in str(k).lower() for s in _SECRET_KEYS):
                out[k] = "***"
            elif isinstance(v, str) and str(k).lower() in ("dsn", "url", "conninfo"):
                out[k] = mask_dsn(v)
            else:
                out[k] = mask_secrets(v)
        return out
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


def topology_summary(cfg: SproutConfig) -> dict[str, Any]:
    links = cfg.topology.resolved_links()
    out: dict[str, Any] = {"durable": cfg.topology.durable, "ephemeral": cfg.topology.ephemeral}
    if cfg.topology.connector is not None:  # unset: the stack's first, filled in once it is known
        out["connector"] = cfg.topology.connector
    out["links"] = [{"ephemeral": l["ephemeral"], "durable": l["durable"], "connector": l["connector"]} for l in links]
    return out


def build_metadata(cfg: SproutConfig) -> RunMetadata:
    commit, dirty = git_info(REPO_ROOT)
    links = cfg.topology.resolved_links()
    connectors = sorted({l["connector"] for l in links}, key=lambda c: c or "")
    return RunMetadata(
        run_id=new_run_id(),
        suite=cfg.suite,
        config_name=cfg.name,
        config=mask_secrets(cfg.to_dict()),
        git_commit=commit,
        git_dirty=dirty,
        seed=cfg.seed,
        dataset_sizes=dict(cfg.datasets),
        topology=topology_summary(cfg),
        stack=cfg.stack.name,
        storage=mask_secrets(cfg.storage.as_settings()),
        policy=cfg.policy.id or "",  # unset: filled in from the stack's describe()
        connector=",".join(c or "(stack default)" for c in connectors) if connectors else "none",
        started_at=time.time(),
        host=host_info(),
        python=python_info(),
        sprout_version=sprout_version(),
    )


def sprout_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sprout-harness")
    except PackageNotFoundError:
        return "0+unknown"


class Runner:
    """One run of one config. Use `await Runner(cfg).run()` or the `run` helper."""

    def __init__(
        self,
        cfg: SproutConfig,
        *,
        factory: Callable[[StackSettings], Any] | None = None,
        progress: ProgressFactory | None = None,
        log: Callable[[str], None] | None = None,
        json_path: str | os.PathLike[str] | None = None,
        gab_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.cfg = cfg
        self.factory = factory
        self.progress = progress or (lambda title: _NullProgress())
        self.log = log or (lambda msg: None)
        self.json_path = json_path
        self.gab_path = gab_path
        self.settings = stack_settings(cfg)
        self.stack: Any = None
        self.caps = Capabilities()
        self.durables: list[NodeRef] = []
        self.ephemerals: list[NodeRef] = []
        self.connectors: list[Any] = []
        self.models: dict[int, Model] = {}
        self.sequences: dict[str, int] = {}
        self.recorder: PhaseRecorder | None = None  # the phase being measured (for delay samples)
        self.result = RunResult(metadata=build_metadata(cfg))
        self._other_cpu = OtherCpu()  # what else loaded the machine while this run ran
        self.teardown_errors: list[str] = []
        self.observer: Any = None  # live monitor hooks (sprout_harness.monitor.RunState), see _observe
        self._task: asyncio.Task[Any] | None = None
        self._stop_reason: str | None = None
        self._late_stop: str | None = None  # a stop request that came while tearing down or reporting
        self._yielded = time.monotonic()  # when building/seeding last let the loop run
        self._ctx: PhaseContext | None = None  # the running phase's context (request_stop flags it)

    # -- the run -----------------------------------------------------------------------------

    async def run(self) -> RunResult:
        status: str | None = None
        reason: str | None = None
        self._task = asyncio.current_task()
        restore_signals = self._catch_signals()
        self._observe("run_started", self.result.metadata)
        try:
            await self._setup()
            for ph in self.cfg.phases:
                phase_result = await self._run_phase(ph)
                self.result.phases.append(phase_result)
                if phase_result.status == "cancelled":
                    raise asyncio.CancelledError()
        except (asyncio.CancelledError, KeyboardInterrupt):
            status, reason = (
                "cancelled",
                (
                    f"{self._stop_reason}; partial results"
                    if self._stop_reason
                    else "interrupted (Ctrl+C or cancellation); partial results"
                ),
            )
            task = asyncio.current_task()
            if task is not None and hasattr(task, "uncancel"):
                while task.cancelling():  # let teardown's awaits run
                    task.uncancel()
        except SproutError as exc:
            status, reason = "error", str(exc)
        except Exception as exc:
            status, reason = "error", f"{type(exc).__name__}: {exc}"
        finally:
            self._task = None  # a stop request during teardown has nothing left to stop
            try:
                self.log("tearing down")
                await self._teardown()
                self.result.metadata.ended_at = time.time()
                self.result.metadata.host["other_cpu_share"] = self._other_cpu.share()
                derived, why = overall_status(self.result.phases)
                if status is None:
                    status, reason = derived, why
                if self.teardown_errors:
                    self.result.metadata.notes.append("teardown problems: " + "; ".join(self.teardown_errors))
                late: str | None = None
                while True:  # once more if a stop request came while the reports were written
                    late = self._late_stop
                    if late is not None and status != "cancelled":
                        status, reason = (
                            "cancelled",
                            f"{late} while tearing down; {reason or 'every phase had finished'}",
                        )
                    self._finish(status, reason)
                    if self._late_stop is late:
                        break
                self._observe("run_finished", self.result)
            finally:
                restore_signals()
        return self.result

    def _finish(self, status: str, reason: str | None) -> None:
        """Set the outcome, judge the thresholds and write the report files."""
        self.result.status = status  # type: ignore[assignment]
        self.result.reason = reason
        self.result.runs = [RunFigures.of(0, self.result)]
        if self.cfg.thresholds:  # judged before the reports are written, so they carry it
            self.result.thresholds = evaluate_thresholds(self.result, self.cfg.thresholds)
        self.log("writing reports")
        self._write_reports()

    def _catch_signals(self) -> Callable[[], None]:
        """Make SIGINT and SIGTERM stop requests until `restore` (the returned function) is called:
        teardown runs and the partial report is written instead of a KeyboardInterrupt or a kill
        leaving temp dirs and servers behind. Python-level handlers, not the loop's: they run
        between two bytecodes, so the flag `_checkpoint` reads is set even while a build loop
        holds the event loop. Only possible on the main thread; elsewhere nothing changes."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self._on_signal(signum)

        previous: dict[int, Any] = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, on_signal)
        except (ValueError, OSError):  # pragma: no cover - not the main interpreter
            pass

        def restore() -> None:
            for sig, handler in previous.items():
                with contextlib.suppress(ValueError, OSError, TypeError):
                    signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

        return restore

    def _on_signal(self, signum: int) -> None:
        reason = "interrupted (Ctrl+C)" if signum == signal.SIGINT else "terminated (SIGTERM)"
        if not self.request_stop(reason) and self._late_stop is None:
            self._late_stop = reason

    def request_stop(self, reason: str = "stop requested") -> bool:
        """Stop gracefully (the monitor's stop button; thread-safe): the phase in progress is cut
        short and reported cancelled, teardown runs and the reports are written. False when the
        run is not in its measuring part (not started, or already tearing down)."""
        task = self._task
        if task is None or task.done():
            return False
        self._stop_reason = reason
        ctx = self._ctx
        if ctx is not None:  # reaches phases that never yield the loop, where cancel() cannot
            ctx.stop_requested = True

        def cancel() -> None:
            if self._task is task:  # still measuring: never cancel whatever awaits the run afterwards
                task.cancel()

        task.get_loop().call_soon_threadsafe(cancel)
        return True

    def _observe(self, hook: str, *args: Any) -> None:
        fn = getattr(self.observer, hook, None)
        if callable(fn):
            try:
                fn(*args)
            except Exception as exc:  # a monitor problem must not break the run
                self.log(f"monitor hook {hook} failed: {type(exc).__name__}: {exc}")

    def _write_reports(self) -> None:
        # reports/__init__ imports compare, and with it scipy (~0.4 s): only a run that writes
        # report files pays for it
        from sprout_harness.reports import gab, json_report

        for path, writer in ((self.json_path, json_report.write), (self.gab_path, gab.write)):
            if path is None:
                continue
            try:
                writer(self.result, path)
            except Exception as exc:  # a report problem must not hide the run's outcome
                self.result.metadata.notes.append(f"could not write {path}: {exc}")
                self.log(f"could not write {path}: {exc}")

    # -- building ----------------------------------------------------------------------------

    async def _setup(self) -> None:
        cfg = self.cfg
        if self.factory is None and not cfg.stack.name:
            resolve_stack_name(cfg)  # the one installed stack, or a ConfigError naming them
            self.result.metadata.stack = cfg.stack.name
        factory = self.factory or plugins.resolve_stack(cfg.stack.name)
        run_stack_validate(factory, self.settings, cfg.stack.name)
        try:
            self.stack = factory(self.settings)
        except SproutError:
            raise
        except Exception as exc:
            raise StackError(f"stack {cfg.stack.name!r} could not be built: {type(exc).__name__}: {exc}") from exc
        self.log(f"starting stack {cfg.stack.name}")
        await self._call("start", self.stack.start())
        self.caps = self.stack.capabilities()
        if not isinstance(self.caps, Capabilities):
            raise StackError(
                f"stack {cfg.stack.name!r}: capabilities() returned {type(self.caps).__name__}, "
                "not sprout_harness.contracts.Capabilities"
            )
        sink = getattr(self.stack, "set_delay_sink", None)
        if callable(sink):
            sink(self._delay)

        links = cfg.topology.resolved_links()
        self.log(f"building {cfg.topology.durable} durable and {len(links)} ephemeral node(s)")
        for i in range(cfg.topology.durable):
            ctx = self.stack.context("durable", i)
            client = await self._call(f"durable node {i}", self.stack.durable(i, ctx))
            self.durables.append(NodeRef("durable", i, i, client))
            self.models[i] = Model()

        if links and not self.caps.ephemeral:
            self.result.metadata.notes.append(
                f"stack {cfg.stack.name!r} cannot build ephemeral nodes; phases targeting them are unsupported"
            )
            links = []
        for link in links:
            if link["connector"] is None:  # the config names none: the stack's first
                if not self.caps.connectors:
                    raise StackError(
                        f"topology.connector: stack {cfg.stack.name!r} declares no connectors "
                        "(Capabilities.connectors); name the one ephemeral nodes should use"
                    )
                link["connector"] = self.caps.connectors[0]
            if self.caps.connectors and link["connector"] not in self.caps.connectors:
                raise StackError(
                    f"topology: ephemeral {link['ephemeral']} asks for connector {link['connector']!r}, "
                    f"which stack {cfg.stack.name!r} does not have (it has: {', '.join(self.caps.connectors)})"
                )
            d = self.durables[link["durable"]]
            conn = await self._call(
                f"connector for ephemeral {link['ephemeral']}", self.stack.connector(Link(**link), d.client)
            )
            self.connectors.append(conn)
            ctx = self.stack.context("ephemeral", link["ephemeral"])
            client = await self._call(
                f"ephemeral node {link['ephemeral']}", self.stack.ephemeral(link["ephemeral"], conn, ctx)
            )
            self.ephemerals.append(NodeRef("ephemeral", link["ephemeral"], link["durable"], client))
        if links:  # the connectors the links really use, defaults resolved
            md = self.result.metadata
            md.connector = ",".join(sorted({link["connector"] for link in links}))
            md.topology["links"] = [{k: link[k] for k in ("ephemeral", "durable", "connector")} for link in links]
            md.topology.setdefault("connector", self.caps.connectors[0] if self.caps.connectors else None)

        await self._seed()
        await self._sync_barrier()
        details = getattr(self.stack, "describe", None)
        if callable(details):
            desc = mask_secrets(details() or {})
            if isinstance(desc.get("storage"), dict):
                self.result.metadata.storage = desc["storage"]
            policy = desc.get("policy")
            if not self.result.metadata.policy and isinstance(policy, (str, dict)):
                self.result.metadata.policy = str(policy.get("id", "") if isinstance(policy, dict) else policy)
            rest = {k: v for k, v in desc.items() if k != "storage"}
            if rest:
                self.result.metadata.notes.append("stack: " + ", ".join(f"{k}={v}" for k, v in rest.items()))

    async def _call(self, what: str, awaitable: Any) -> Any:
        """One stack call while building, seeding or syncing, then a `_checkpoint`."""
        try:
            out = await maybe_await(awaitable)
        except (SproutError, asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise StackError(f"{what}: {type(exc).__name__}: {exc}") from exc
        await self._checkpoint()
        return out

    async def _checkpoint(self) -> None:
        """Where building and seeding give way: raise CancelledError once a stop was requested
        (the signal handler sets the flag at once; the task's cancel() needs the loop), and let
        the loop run every YIELD_EVERY_S: a stack whose calls never suspend would otherwise hold
        it for the whole build or seed, deaf to the monitor and to cancel()."""
        if self._stop_reason is not None:
            raise asyncio.CancelledError()
        now = time.monotonic()
        if now - self._yielded >= YIELD_EVERY_S:
            self._yielded = now
            await asyncio.sleep(0)

    def _delay(self, message_type: str, ns: int) -> None:
        if self.recorder is not None:
            self.recorder.connector_delay(message_type, ns)

    async def _seed(self) -> None:
        """Each dataset in batches, every batch to every durable node: rows are generated as
        they are written (never the whole dataset at once) and each write is a `_call`."""
        bs = self.cfg.runner.seed_batch_size
        self._observe("stage", "seeding")
        with self.progress("seed") as bar:
            bar.set_total(sum(max(size, 0) for size in self.cfg.datasets.values()) * len(self.durables))
            for kind, size in self.cfg.datasets.items():
                if size <= 0:
                    continue
                self.log(f"seeding {kind}: {size} rows on each of {len(self.durables)} durable node(s)")
                for batch in datasets.batches(kind, size, self.cfg.seed, bs):
                    for d in self.durables:
                        ack = await self._call(f"seeding {kind} on {d.name}", d.client.create(kind, batch))
                        if len(ack.ids) != len(batch):
                            raise StackError(f"seeding {kind} on {d.name}: {len(ack.ids)} ids for {len(batch)} rows")
                        model = self.models[d.group]
                        for id_, row in zip(ack.ids, batch):
                            model.put(kind, id_, row)
                        bar.advance(len(batch))
                self.sequences[kind] = size

    async def _sync_barrier(self) -> None:
        """Each ephemeral reads a marker written after seeding and a sample of seeded entities."""
        if not self.ephemerals:
            return
        self._observe("stage", "syncing")
        self.log("syncing")
        timeout = self.cfg.runner.sync_timeout_s
        markers: dict[int, str] = {}
        for d in self.durables:
            ack = await self._call(
                f"sync marker on {d.name}", d.client.create(SYNC_COLLECTION, [{"seq": 0, "node": d.name}])
            )
            markers[d.group] = ack.ids[0]
        rng = random.Random(self.cfg.seed)
        ids_of: dict[tuple[int, str], list[str]] = {}  # listed once per group, not once per ephemeral
        for e in self.ephemerals:
            stack_sync = getattr(self.stack, "sync", None)
            if callable(stack_sync):
                async with asyncio.timeout(timeout):
                    await maybe_await(stack_sync(e.client, self.durables[e.group].client))
            model = self.models[e.group]
            probes: list[tuple[str, str, dict | None]] = [(SYNC_COLLECTION, markers[e.group], None)]
            for kind in model.data:
                ids = ids_of.get((e.group, kind))
                if ids is None:
                    ids = ids_of[e.group, kind] = model.ids(kind)
                probes += [(kind, i, model.get(kind, i)) for i in rng.sample(ids, min(5, len(ids)))]
            deadline = time.monotonic() + timeout
            delay = 0.001
            while True:
                pending = []
                for coll, id_, props in probes:
                    doc: Doc | None = await self._call(f"sync check on {e.name}", e.client.get(coll, id_))
                    if doc is None or (props is not None and dict(doc.props) != props):
                        pending.append((coll, id_, props))
                probes = pending
                if not probes:
                    break
                if time.monotonic() >= deadline:
                    raise StackError(
                        f"{e.name} did not sync with durable-{e.group} within {timeout:g} s "
                        f"({len(probes)} probes unanswered, e.g. {probes[0][0]}/{probes[0][1]}); "
                        "check the connector, or raise runner.sync_timeout_s"
                    )
                await asyncio.sleep(delay)  # re-check soon: this is polling a condition, not waiting it out
                delay = min(delay * 2, 0.05)

    # -- phases ------------------------------------------------------------------------------

    async def _run_phase(self, ph: PhaseConfig) -> PhaseResult:
        spec = catalog.get_phase(ph.name)
        rec = PhaseRecorder(ph.title)
        rec.extra["phase"] = ph.name
        rec.extra["target"] = ph.target
        shared = {k: v for k, v in self.cfg.workload.items() if k in catalog.knob_names(spec)}
        knobs = build_knobs(spec, {**shared, **ph.params}, f"phases.{ph.title}.params")
        rec.extra["knobs"] = dataclasses.asdict(knobs)
        missing = self.caps.missing(spec.needs)
        if ph.target == "ephemeral" and not self.ephemerals:
            missing.append("ephemeral")
        if missing:
            rec.mark_unsupported(f"stack {self.cfg.stack.name!r} lacks: {', '.join(missing)}")
            self.log(f"{ph.title}: unsupported ({', '.join(missing)})")
            unsupported = rec.result()
            self._observe("phase_finished", unsupported)
            return unsupported
        ctx = PhaseContext(
            title=ph.title,
            target=ph.target,
            recorder=rec,
            capabilities=self.caps,
            durables=self.durables,
            ephemerals=self.ephemerals,
            models=self.models,
            datasets=dict(self.cfg.datasets),
            seed=self.cfg.seed,
            check_timeout_s=self.cfg.runner.check_timeout_s,
            sequences=self.sequences,
            rng=random.Random(f"{self.cfg.seed}:{ph.title}"),
            placement=dataclasses.asdict(self.cfg.runner.placement),
            stack=self.stack,
        )
        self.recorder = rec
        self._ctx = ctx
        if self._stop_reason is not None:
            ctx.stop_requested = True
        self.log(f"phase {ph.title}")
        cancelled: BaseException | None = None
        with self.progress(ph.title) as bar:
            ctx.advance = bar.advance
            ctx.set_total = bar.set_total
            rec.start()
            self._observe("phase_started", ph.title, rec)
            try:
                await spec.run(ctx, knobs)
            except Unsupported as exc:
                rec.mark_unsupported(str(exc))
            except CheckFailed:
                pass  # already recorded as a failed check
            except (asyncio.CancelledError, KeyboardInterrupt) as exc:
                task = asyncio.current_task()
                if (
                    isinstance(exc, asyncio.CancelledError)
                    and task is not None
                    and not task.cancelling()
                    and self._stop_reason is None
                    and not ctx.stop_requested
                ):
                    # Nobody cancelled this run: a CancelledError leaked out of the stack.
                    where = "".join(traceback.format_tb(exc.__traceback__, limit=-3)).strip().splitlines()
                    rec.mark_error("the stack raised CancelledError without a cancellation: " + " | ".join(where[-4:]))
                    rec.error("CancelledError", "leaked from the stack")
                else:
                    rec.mark_cancelled("interrupted")
                    cancelled = exc
            except Exception as exc:
                rec.mark_error(f"{type(exc).__name__}: {exc}")
                rec.error(type(exc).__name__, str(exc))
            finally:
                rec.stop()
                self.recorder = None
                self._ctx = None
        result = rec.result()
        self._observe("phase_finished", result)
        if cancelled is not None:
            self.result.phases.append(result)
            raise cancelled
        return result

    # -- teardown ----------------------------------------------------------------------------

    async def _teardown(self) -> None:
        async def close(what: str, obj: Any, *names: str) -> None:
            for name in names:
                fn = getattr(obj, name, None)
                if callable(fn):
                    try:
                        async with asyncio.timeout(TEARDOWN_TIMEOUT_S):
                            await maybe_await(fn())
                    except BaseException as exc:  # keep tearing down
                        self.teardown_errors.append(f"{what}: {type(exc).__name__}: {exc}")
                    return

        for e in reversed(self.ephemerals):
            await close(e.name, e.client, "close", "aclose")
        for i, c in enumerate(self.connectors):
            await close(f"connector {i}", c, "close", "aclose")
        for d in reversed(self.durables):
            await close(d.name, d.client, "close", "aclose")
        if self.stack is not None:
            await close("stack", self.stack, "close")
        for exc in self.settings.run_cleanups():
            self.teardown_errors.append(f"cleanup: {type(exc).__name__}: {exc}")
        self.ephemerals, self.connectors, self.durables = [], [], []


async def run(cfg: SproutConfig, **kw: Any) -> RunResult:
    """Run `cfg`; never raises for stack/phase problems (see RunResult.status / reason)."""
    return await Runner(cfg, **kw).run()


def run_sync(cfg: SproutConfig, **kw: Any) -> RunResult:
    """`asyncio.run(run(cfg))`; Ctrl+C gives a result with status "cancelled"."""
    return asyncio.run(run(cfg, **kw))
