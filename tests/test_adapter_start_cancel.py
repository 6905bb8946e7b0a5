"""Cancelling the loam adapter's start while its throwaway PostgreSQL cluster is starting.

The cluster starts in a worker thread, which a cancellation cannot stop. The cluster must
still be stopped by the time the event loop is closed (the CLI's atexit safety net would hide
a leak there; a process that goes on running, such as the monitor, would keep the cluster).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from sprout_harness.contracts import StackSettings
from sprout_harness.services import postgres
from sprout_loam.adapter import LoamStack

pytestmark = [pytest.mark.postgres]


def _need_postgres() -> None:
    if shutil.which("initdb") is None and not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.fail("PostgreSQL server binaries are needed: apt-get install postgresql")


def _live() -> list[object]:
    with postgres._LIVE_LOCK:
        return list(postgres._LIVE)


@pytest.mark.parametrize("cancel_after_s", [0.05, 0.3])
def test_a_cancelled_start_leaves_no_cluster(monkeypatch: pytest.MonkeyPatch, cancel_after_s: float) -> None:
    _need_postgres()
    monkeypatch.delenv(postgres.ENV_DSN, raising=False)
    before = _live()
    settings = StackSettings(name="loam", storage={"engine": "postgres", "pool_size": 1}, policy={"id": "permissive"})
    stack = LoamStack(settings)

    async def main() -> None:
        task = asyncio.create_task(stack.start())
        await asyncio.sleep(cancel_after_s)
        assert not task.done(), "the cluster started before the cancellation: nothing was tested"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for exc in settings.run_cleanups():  # what the runner's teardown does
            raise exc

    try:
        asyncio.run(main())  # returns once the worker thread has finished
        started = [s for s in _live() if s not in before]
        assert started == [], f"clusters left running: {started}"
    finally:
        for s in _live():
            if s not in before:
                s.stop()  # type: ignore[attr-defined]
