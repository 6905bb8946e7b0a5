"""StallGuard: the one-watchdog wait the lag phases use instead of a timeout per wait."""

from __future__ import annotations

import asyncio
import time

from sprout_harness.workloads.context import StallGuard


async def test_wait_returns_when_done_holds() -> None:
    ev, box = asyncio.Event(), []
    async with StallGuard(5.0) as g:
        asyncio.get_running_loop().call_later(0.01, lambda: (box.append(1), ev.set()))
        assert await g.wait(ev, lambda: bool(box))
        assert await g.wait(ev, lambda: True)  # already done: no wait at all
        assert not g.stalled


async def test_a_wait_nothing_answers_ends_as_stalled_and_later_waits_too() -> None:
    ev = asyncio.Event()
    async with StallGuard(0.05) as g:
        t0 = time.monotonic()
        assert not await g.wait(ev, lambda: False)
        assert g.stalled and time.monotonic() - t0 < 2.0
        assert not await g.wait(asyncio.Event(), lambda: False)


async def test_idle_time_between_waits_is_not_a_stall() -> None:
    ev, box = asyncio.Event(), []
    async with StallGuard(0.05) as g:
        await asyncio.sleep(0.2)  # no wait pending: the watchdog must not fire
        asyncio.get_running_loop().call_later(0.02, lambda: (box.append(1), ev.set()))
        assert await g.wait(ev, lambda: bool(box))
        assert not g.stalled


async def test_many_quick_waits_longer_than_the_timeout_in_total() -> None:
    ev, n = asyncio.Event(), [0]
    async with StallGuard(0.05) as g:
        for i in range(30):  # ~0.15 s in all, each wait answered within 5 ms
            asyncio.get_running_loop().call_later(0.005, lambda: (n.__setitem__(0, n[0] + 1), ev.set()))
            assert await g.wait(ev, lambda i=i: n[0] > i), i
        assert not g.stalled


async def test_timed_ends_a_cancelled_phase_even_if_the_stack_call_returned() -> None:
    """A stack call that swallows the cancellation of its caller (it returns instead of
    raising) must not keep a cancelled phase running."""
    from sprout_harness.contracts.client import Capabilities
    from sprout_harness.metrics.recorder import PhaseRecorder
    from sprout_harness.workloads.context import PhaseContext

    ctx = PhaseContext(
        title="t",
        target="durable",
        recorder=PhaseRecorder("t"),
        capabilities=Capabilities(),
        durables=[],
        ephemerals=[],
        models={},
        datasets={},
        seed=1,
        check_timeout_s=1.0,
    )
    calls = []

    async def swallowing() -> int:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            pass  # what a buggy stack (or wait_for on 3.11) does
        return 1

    async def phase() -> None:
        for _ in range(3):  # bounded: without the check this ends normally, and the test fails
            calls.append(await ctx.timed("op", swallowing()))

    task = asyncio.ensure_future(phase())
    await asyncio.sleep(0.01)
    task.cancel()
    try:
        await asyncio.wait_for(asyncio.shield(task), 2)
    except (asyncio.CancelledError, TimeoutError):
        pass
    assert task.cancelled() and calls == []
