"""In-process connector: asyncio queues between two ends in one event loop.

Every message is encoded to bytes by the sender and decoded by the receiver with the
same codec as the WebSocket transport, so this is an honest lower bound on connector
cost (no socket, same serialisation). `delay_s` adds a fixed one-way delay to every
message (order preserved) for latency experiments.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from loam.protocol import codec
from loam.transport.base import ChannelClosed
from loam.transport.client import Connector
from loam.transport.service import DEFAULT_MAX_PENDING, NodeService


class _Closed:
    __slots__ = ("reason", "code")

    def __init__(self, reason: str, code: int):
        self.reason, self.code = reason, code


class _Inbox:
    """One direction's receive buffer: a deque and at most one waiting reader (a channel end
    has one reader). Lighter than asyncio.Queue, which also counts tasks and serves putters
    of a bounded queue: this is on the path of every message."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    async def get(self) -> Any:
        items = self._items
        while not items:
            w = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await w
            finally:
                if self._waiter is w:
                    self._waiter = None
        return items.popleft()

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items


class InProcessChannel:
    """One end of an in-process connection (see `pipe`)."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.peer: InProcessChannel | None = None
        self.inbox = _Inbox()
        self.closed: _Closed | None = None
        self._delayed: asyncio.Queue[tuple[float, Any]] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._receiver: Any = None
        self._pushed: deque[bytes] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    def set_receiver(self, callback: Any) -> None:
        """Hand each message to `callback(data)` from one event-loop callback per batch of
        arrivals instead of through `recv` (which then only reports the close): the one hop
        a message takes is the loop's, like a socket's read callback, not a task wake-up.
        Set before any message can arrive."""
        self._loop = asyncio.get_running_loop()
        self._receiver = callback

    def _arrive(self, item: Any) -> None:
        if self._receiver is not None and type(item) is bytes:
            if self.closed is not None:
                return  # this end was closed: like a closed socket, it reads nothing more
            pushed = self._pushed
            pushed.append(item)
            if len(pushed) == 1:
                self._loop.call_soon(self._push)  # type: ignore[union-attr]
            return
        # A close queued behind pushed messages wakes the reader after `_push` has run
        # (the loop runs callbacks in the order they were scheduled): order holds.
        self.inbox.put_nowait(item)

    def _push(self) -> None:
        pushed, receiver = self._pushed, self._receiver
        while pushed:
            if self.closed is not None:
                pushed.clear()
                return
            receiver(pushed.popleft())

    def _deliver(self, item: Any) -> None:
        assert self.peer is not None
        if self.delay_s <= 0:
            self.peer._arrive(item)
            return
        if self._delayed is None:
            self._delayed = asyncio.Queue()
            self._pump = asyncio.create_task(self._run_pump())
        self._delayed.put_nowait((asyncio.get_running_loop().time() + self.delay_s, item))

    async def _run_pump(self) -> None:
        # One pump per direction keeps messages in order whatever their timing.
        assert self._delayed is not None and self.peer is not None
        loop = asyncio.get_running_loop()
        while True:
            due, item = await self._delayed.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self.peer._arrive(item)
            if isinstance(item, _Closed):
                return

    def send_nowait(self, data: bytes) -> bool:
        """Send without suspending: the message is in the peer's inbox (or the delay pump) on return."""
        if self.closed is not None:
            raise ChannelClosed(self.closed.reason, self.closed.code)
        peer = self.peer
        if self.delay_s <= 0 and peer is not None:
            peer._arrive(data)  # _deliver without delay, inline (once per message)
        else:
            self._deliver(data)
        return True

    async def send(self, data: bytes) -> None:
        self.send_nowait(data)

    async def recv(self) -> bytes:
        item = await self.inbox.get()
        if isinstance(item, _Closed):
            self.inbox.put_nowait(item)  # every later recv fails the same way
            if self.closed is None:
                self.closed = item
                self._deliver(_Closed(item.reason, item.code))  # echo the close, like a WebSocket
            raise ChannelClosed(item.reason, item.code)
        return item

    async def close(self, reason: str = "closed", code: int = 1000) -> None:
        if self.closed is not None:
            return
        self.closed = _Closed(reason, code)
        self._deliver(_Closed(reason, code))
        self.inbox.put_nowait(_Closed(reason, code))


def pipe(delay_s: float = 0.0) -> tuple[InProcessChannel, InProcessChannel]:
    """Two connected ends (client, server), each direction delayed by `delay_s`."""
    a, b = InProcessChannel(delay_s), InProcessChannel(delay_s)
    a.peer, b.peer = b, a
    return a, b


class InProcessServer:
    """Serves a durable node to in-process connectors (same protocol as `NodeServer`)."""

    def __init__(
        self,
        node: Any,
        token: str | None = None,
        delay_s: float = 0.0,
        max_size: int = codec.DEFAULT_MAX_SIZE,
        max_pending: int = DEFAULT_MAX_PENDING,
    ):
        self.node = node
        self.delay_s = delay_s
        self.service = NodeService(node, token, max_size, max_pending)
        self._tasks: set[asyncio.Task[None]] = set()
        self._server_ends: set[InProcessChannel] = set()
        self.accepting = True

    async def accept(self) -> InProcessChannel:
        """A new connection: returns the client end and serves the other."""
        if not self.accepting:
            raise ConnectionRefusedError("in-process server is not accepting connections")
        client, server = pipe(self.delay_s)
        self._server_ends.add(server)
        task = asyncio.create_task(self.service.serve(server, label="inprocess"))
        self._tasks.add(task)
        task.add_done_callback(lambda t: (self._tasks.discard(t), self._server_ends.discard(server)))
        return client

    def connector(self, **kwargs: Any) -> InProcessConnector:
        return InProcessConnector(self, **kwargs)

    async def drop_connections(self, reason: str = "dropped") -> None:
        """Close every connection from the server side (clients then reconnect)."""
        for end in list(self._server_ends):
            await end.close(reason, 1001)
        await asyncio.sleep(0)

    async def close(self) -> None:
        self.accepting = False
        await self.drop_connections("server closing")
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def stats(self) -> dict[str, Any]:
        return {"received": self.service.stats.snapshot(), "peers": len(self.service.peers)}


class InProcessConnector(Connector):
    """Connector to an `InProcessServer` in the same event loop."""

    transport = "inprocess"

    def __init__(self, server: InProcessServer, **kwargs: Any):
        kwargs.setdefault("max_size", server.service.max_size)
        super().__init__(**kwargs)
        self.server = server

    async def _open_channel(self) -> InProcessChannel:
        return await self.server.accept()
