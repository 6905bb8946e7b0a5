"""The asyncio side of request matching: a Future per open request, timeouts, and
failing every open request when the connection goes (`loam.protocol.matching` decides
which reply answers which request)."""

from __future__ import annotations

import asyncio
from typing import Any

from loam.protocol import messages as m
from loam.protocol.matching import RequestMatcher


class PendingRequests:
    """Allocates request ids and resolves each one's Future when its reply arrives.

    Not thread-safe; one instance per connection, used from its event loop.
    """

    __slots__ = ("_matcher", "_futures")

    def __init__(self) -> None:
        self._matcher = RequestMatcher()
        self._futures: dict[int, asyncio.Future[Any]] = {}

    def __len__(self) -> int:
        return len(self._futures)

    def new(self, request_type: str) -> tuple[int, asyncio.Future[Any]]:
        """A fresh rid and the Future that `resolve` completes with the reply message."""
        rid = self._matcher.open(request_type)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._futures[rid] = fut
        return rid, fut

    def resolve(self, msg: m.Message) -> bool:
        """Complete the request `msg.rid` answers: error replies become exceptions. False if unknown."""
        matched = self._matcher.match(msg)
        if matched is None:
            return False
        rid, outcome = matched
        fut = self._futures.pop(rid)
        if not fut.done():
            if isinstance(outcome, Exception):
                fut.set_exception(outcome)
            else:
                fut.set_result(outcome)
        return True

    def discard(self, rid: int) -> None:
        self._matcher.forget(rid)
        self._futures.pop(rid, None)

    async def wait(self, rid: int, fut: asyncio.Future[Any], timeout: float | None) -> Any:
        """The reply, or TimeoutError naming the request (the rid is forgotten either way).

        Awaits the future itself with a timer that fails it, not `asyncio.wait_for`: on
        Python 3.11 wait_for returns the result when the reply and a cancellation of the
        caller arrive in the same loop turn, swallowing the cancellation (a cancelled run
        then kept writing). Awaiting the future directly always honours it."""
        kind = self._matcher.kind(rid) or "request"
        timer = None
        if timeout is not None:

            def expire() -> None:
                if not fut.done():
                    fut.set_exception(
                        TimeoutError(
                            f"no reply to {kind} request {rid} within {timeout} s; the remote node is slow "
                            "or unreachable (raise request_timeout if it is just slow)"
                        )
                    )

            timer = asyncio.get_running_loop().call_later(timeout, expire)
        try:
            return await fut
        finally:
            if timer is not None:
                timer.cancel()
            self.discard(rid)

    def fail_all(self, exc: BaseException) -> None:
        """Fail every pending request (connection lost or closed)."""
        self._matcher.clear()
        futures, self._futures = self._futures, {}
        for fut in futures.values():
            if not fut.done():
                fut.set_exception(exc)
