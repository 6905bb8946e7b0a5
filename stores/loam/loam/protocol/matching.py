"""Request matching, sans-I/O: request ids, which reply answers which request, and the
local exception an `error` reply stands for.

`RequestMatcher` holds no futures and no timers: `loam.transport.pending` puts asyncio
on top (a Future per request, timeouts, failing everything on a disconnect).
"""

from __future__ import annotations

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


class RequestMatcher:
    """The open requests of one connection: allocates their ids (1, 2, ...) and matches
    each reply to its request.

    `match` turns a reply into its outcome: the reply itself, or the exception it stands
    for (an `error` reply, or a reply of the wrong type for its request)."""

    __slots__ = ("_next", "_open")

    def __init__(self) -> None:
        self._next = 0
        self._open: dict[int, str] = {}  # rid -> request type

    def __len__(self) -> int:
        return len(self._open)

    def __contains__(self, rid: object) -> bool:
        return rid in self._open

    def open(self, request_type: str) -> int:
        """A fresh request id for a request of `request_type` (a key of `messages.REPLY_OF`)."""
        self._next += 1
        self._open[self._next] = request_type
        return self._next

    def kind(self, rid: int) -> str | None:
        """The type of the open request `rid`, or None."""
        return self._open.get(rid)

    def forget(self, rid: int) -> None:
        self._open.pop(rid, None)

    def match(self, msg: m.Message) -> tuple[int, m.Message | LoamError] | None:
        """The open request `msg` answers and its outcome (the request is closed), or None
        when `msg` answers no open request (a notify, a late or unknown reply)."""
        rid = getattr(msg, "rid", None)
        request_type = self._open.pop(rid, None) if rid is not None else None
        if request_type is None:
            return None
        assert rid is not None
        if type(msg) is m.Error:
            return rid, error_from_message(msg)
        expected = m.REPLY_OF[request_type]
        if msg.TYPE != expected:
            return rid, ProtocolError(f"{request_type} request {rid} was answered with {msg.TYPE}, expected {expected}")
        return rid, msg

    def clear(self) -> list[int]:
        """Close every open request (the connection is gone); their ids."""
        rids, self._open = list(self._open), {}
        return rids
