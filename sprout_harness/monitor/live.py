"""Wire a monitor around a ``Runner``: observer hooks, stop handler, and a monitor thread.

The HTTP server and the sampler run on their own thread and event loop: a phase whose stack
calls complete without suspending (LevelDB) never yields the runner's loop, and the
dashboard must stay live (and the stop button reachable) through it. The runner thread only
pays for its hook calls; sampling reads the recorder without writing (see ``state``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future
from typing import Any, Callable

from sprout_harness.metrics.results import RunResult
from sprout_harness.monitor.server import DEFAULT_HOST, DEFAULT_PORT, MonitorServer
from sprout_harness.monitor.state import RunState
from sprout_harness.topology.runner import Runner

DEFAULT_INTERVAL_S = 1.0
DEFAULT_LINGER_S = 2.0


class LiveMonitor:
    """A ``RunState`` + ``MonitorServer`` + sampler, served from a background thread.

    ``attach(runner)`` makes the runner report to the state (its ``observer``), lets the
    dashboard's stop button call ``runner.request_stop``, and reads per-node figures from the
    stack's optional ``stats()`` hook. ``start()`` returns the dashboard URL; ``close()`` stops
    the thread. Both are blocking and quick; ``astart``/``aclose`` are their async forms.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        public: bool = False,
        token: str | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"monitor interval must be > 0 s, got {interval_s!r}")
        self.state = RunState()
        self.server = MonitorServer(
            self.state, host, port, public=public, token=token, poll_ms=max(200, int(interval_s * 1000))
        )
        self.interval_s = interval_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    def attach(self, runner: Any) -> None:
        meta = getattr(getattr(runner, "result", None), "metadata", None)
        if meta is not None:
            self.state.run_started(meta)
        runner.observer = self.state
        stop = getattr(runner, "request_stop", None)
        if callable(stop):
            self.state.set_stop_handler(stop)

        def stack_stats() -> Any:
            fn = getattr(getattr(runner, "stack", None), "stats", None)
            return fn() if callable(fn) else None

        self.state.set_nodes_provider(stack_stats)

    # -- thread -------------------------------------------------------------------------------

    def start(self) -> str:
        """Start serving on the monitor thread; raises ``MonitorConfigError`` if it cannot listen."""
        ready: Future[str] = Future()
        self._thread = threading.Thread(target=self._main, args=(ready,), name="sprout-monitor", daemon=True)
        self._thread.start()
        return ready.result(timeout=30)

    def _main(self, ready: Future[str]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        finally:
            loop.close()

    async def _serve(self, ready: Future[str]) -> None:
        self._stopped = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(self.server.url)
        sampler = asyncio.create_task(self._sample_loop())
        try:
            await self._stopped.wait()
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            await self.server.close()

    async def _sample_loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.state.sample()
            except Exception:  # sampling is best effort; the run goes on
                pass

    def close(self) -> None:
        loop, thread, stopped = self._loop, self._thread, self._stopped
        if thread is None:
            return
        if loop is not None and stopped is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop already finished
                loop.call_soon_threadsafe(stopped.set)
        thread.join(timeout=30)
        self._thread = None

    async def astart(self) -> str:
        return await asyncio.to_thread(self.start)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)


async def run_with_monitor(
    runner: Any,
    monitor: LiveMonitor,
    *,
    linger_s: float = DEFAULT_LINGER_S,
    on_ready: Callable[[str], None] | None = None,
) -> RunResult:
    """Run ``runner`` with ``monitor`` serving; keep serving ``linger_s`` after the end so open
    dashboards show the final status; always stop the monitor."""
    monitor.attach(runner)
    url = await monitor.astart()
    if on_ready is not None:
        on_ready(url)
    try:
        result = await runner.run()
        monitor.state.run_finished(result)  # no-op when the runner already reported it
        if linger_s > 0:
            await asyncio.sleep(linger_s)
        return result
    finally:
        await monitor.aclose()


def run_monitored_sync(
    cfg: Any,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    public: bool = False,
    token: str | None = None,
    linger_s: float = DEFAULT_LINGER_S,
    interval_s: float = DEFAULT_INTERVAL_S,
    on_ready: Callable[[str], None] | None = None,
    **runner_kw: Any,
) -> RunResult:
    """``topology.runner.run_sync`` with a live monitor around the run (the ``sprout run --monitor`` path).

    The monitor's settings are checked (``MonitorConfigError``) before anything starts."""
    monitor = LiveMonitor(host, port, public=public, token=token, interval_s=interval_s)

    async def main() -> RunResult:
        return await run_with_monitor(Runner(cfg, **runner_kw), monitor, linger_s=linger_s, on_ready=on_ready)

    return asyncio.run(main())
