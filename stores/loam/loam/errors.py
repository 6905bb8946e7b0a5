"""Every error loam raises derives from LoamError so callers can catch one type."""

from __future__ import annotations


class LoamError(Exception):
    """Base class of loam's errors."""


class QueryError(LoamError):
    """A query that cannot be parsed or evaluated.

    `position` is the 0-based character offset in the query text where the problem
    was found (None when not tied to a position).
    """

    def __init__(self, message: str, position: int | None = None, text: str | None = None):
        self.position = position
        self.text = text
        if position is not None and text is not None:
            message = f"{message} at position {position}: {text[:position]}<<HERE>>{text[position:]}"
        elif position is not None:
            message = f"{message} at position {position}"
        super().__init__(message)


class ValidationError(LoamError):
    """Bad input: wrong property types, unknown collection or field, bad ids."""


class StorageError(LoamError):
    """A storage engine failed (locked directory, unreachable server, ...)."""


class StorageLockedError(StorageError):
    """A LevelDB directory is already open (by this or another process)."""


class StorageUnavailableError(StorageError):
    """A storage server cannot be reached; the message says what to start."""


class PolicyDenied(LoamError):
    """The policy agent refused the operation; nothing was changed."""


class NodeClosedError(LoamError):
    """The node (or live query) is closed; `reason` says why."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class ProtocolError(LoamError):
    """A malformed, oversized or unexpected wire message."""


class AuthError(LoamError):
    """A connector handshake with a wrong token."""


class StaleClockError(LoamError):
    """A forwarded commit was stamped below a stamp the durable node already holds.

    Nothing was written. `clock` is the durable node's Lamport clock: re-stamp the
    same transaction above it and send it again (an `EphemeralNode` does this itself).
    """

    def __init__(self, message: str, clock: int):
        self.clock = clock
        super().__init__(message)
