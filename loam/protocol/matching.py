"""Request matching: request id -> Future of its reply, with timeouts and fail-all on disconnect."""

from __future__ import annotations

import asyncio
from typing import Any

from loam.errors import (
    LoamError,
    NodeClosedError,
    PolicyDenied,
    ProtocolError,
    QueryError,
    StaleClockError,
    StorageError,
    ValidationError,
)
from loam.protocol import messages as m


class ConnectionLost(NodeClosedError):
    """The connection to the remote node dropped while a request was pending (it may or may not
    have been applied; commits are safe to re-send, their commit_id makes them idempotent)."""


class RemoteError(LoamError):
    """The remote node answered with an `error` message of a code with no closer local type."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(f"remote error [{code}]: {message}")


_ERROR_TYPES: dict[str, type[LoamError]] = {
    "validation": ValidationError,
    "denied": PolicyDenied,
    "storage": StorageError,
    "malformed": ProtocolError,
    "too_large": ProtocolError,
    "unexpected": ProtocolError,
}


def error_from_message(err: m.Error) -> LoamError:
    """The local exception for a remote `error` reply (same class as on the server where possible)."""
    if err.code == "query":
        return QueryError(err.message)
    if err.code == "closed":
        return NodeClosedError(err.message)
    if err.code == "stale_clock":
        return StaleClockError(err.message, err.clock or 0)
    cls = _ERROR_TYPES.get(err.code)
    if cls is not None:
        return cls(err.message)
    return RemoteError(err.code, err.message)


class PendingRequests:
    """Allocates request ids and resolves each one's Future when its reply arrives.

    Not thread-safe; one instance per connection, used from its event loop.
    """

    def __init__(self) -> None:
        self._next = 0
        self._pending: dict[int, tuple[str, asyncio.Future[Any]]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def new(self, request_type: str) -> tuple[int, asyncio.Future[Any]]:
        """A fresh rid and the Future that `resolve` completes with the reply message."""
        self._next += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[self._next] = (request_type, fut)
        return self._next, fut

    def resolve(self, msg: m.Message) -> bool:
        """Complete the request `msg.rid` answers: error replies become exceptions. False if unknown."""
        rid = getattr(msg, "rid", None)
        entry = self._pending.pop(rid, None) if rid is not None else None
        if entry is None:
            return False
        request_type, fut = entry
        if fut.done():
            return True
        if isinstance(msg, m.Error):
            fut.set_exception(error_from_message(msg))
        elif msg.TYPE != m.REPLY_OF[request_type]:
            fut.set_exception(ProtocolError(
                f"{request_type} request {rid} was answered with {msg.TYPE}, expected {m.REPLY_OF[request_type]}"))
        else:
            fut.set_result(msg)
        return True

    def discard(self, rid: int) -> None:
        self._pending.pop(rid, None)

    async def wait(self, rid: int, fut: asyncio.Future[Any], timeout: float | None) -> Any:
        """The reply, or TimeoutError naming the request (the rid is forgotten either way).

        Awaits the future itself with a timer that fails it, not `asyncio.wait_for`: on
        Python 3.11 wait_for returns the result when the reply and a cancellation of the
        caller arrive in the same loop turn, swallowing the cancellation (a cancelled run
        then kept writing). Awaiting the future directly always honours it."""
        entry = self._pending.get(rid)
        kind = entry[0] if entry else "request"
        timer = None
        if timeout is not None:
            def expire() -> None:
                if not fut.done():
                    fut.set_exception(TimeoutError(
                        f"no reply to {kind} request {rid} within {timeout} s; the remote node is slow "
                        "or unreachable (raise request_timeout if it is just slow)"))

            timer = asyncio.get_running_loop().call_later(timeout, expire)
        try:
            return await fut
        finally:
            if timer is not None:
                timer.cancel()
            self._pending.pop(rid, None)

    def fail_all(self, exc: BaseException) -> None:
        """Fail every pending request (connection lost or closed)."""
        pending, self._pending = self._pending, {}
        for _, fut in pending.values():
            if not fut.done():
                fut.set_exception(exc)
