"""The consuming side every live query shares: `next()` and async iteration over a queue."""

from __future__ import annotations

import asyncio

from loam.errors import NodeClosedError
from loam.model import Notification


class NotificationStream:
    """Mixin for live queries that put their notifications on `self._queue`.

    The queue is created on the first `next()` so a query consumed only through
    callbacks never buffers notifications nobody reads.
    """

    id: str
    closed_reason: str | None
    _queue: asyncio.Queue[Notification] | None

    async def next(self, timeout: float | None = None) -> Notification:
        """The next notification; TimeoutError after `timeout`; NodeClosedError once closed and drained."""
        if self._queue is None:
            self._queue = asyncio.Queue()
        q = self._queue
        if q.empty() and self.closed_reason is not None:
            raise NodeClosedError(f"live query {self.id} is closed: {self.closed_reason}")
        if timeout is None:
            return await q.get()
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
        # arrives as the item does, and the cancelled caller would go on
        async with asyncio.timeout(timeout):
            return await q.get()

    def __aiter__(self) -> NotificationStream:
        return self

    async def __anext__(self) -> Notification:
        """Yields notifications, the final kind="closed" one included, then stops."""
        try:
            return await self.next()
        except NodeClosedError:
            raise StopAsyncIteration from None
