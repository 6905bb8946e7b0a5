"""What both transports share: the byte channel, per-message-type delay statistics."""

from __future__ import annotations

import collections
from typing import Any, Protocol

from loam.errors import NodeClosedError

# The reason a WebSocket close frame can carry: 125 payload bytes minus the 2-byte code.
MAX_CLOSE_REASON = 123


def close_reason(text: str) -> str:
    """`text` cut to fit a close frame: at most MAX_CLOSE_REASON bytes of UTF-8, cut at a
    character boundary (reasons quote peer input, which need not be ASCII: a cut by
    characters can leave up to four times the bytes, and the close is then refused)."""
    return text.encode("utf-8", "replace")[:MAX_CLOSE_REASON].decode("utf-8", "ignore")


class ChannelClosed(NodeClosedError):
    """The channel is closed; `code` is the WebSocket close code when there is one."""

    def __init__(self, reason: str, code: int | None = None):
        self.code = code
        super().__init__(reason)


class Channel(Protocol):
    """A message-oriented, ordered, reliable byte pipe (one end of a connection)."""

    async def send(self, data: bytes) -> None: ...

    # Optional: `send_nowait(data) -> bool`, a synchronous send that never suspends. True:
    # the message is in the channel, behind every earlier one. False: the channel cannot
    # take it without waiting (flow control, a send in progress); nothing was sent and the
    # caller must use `send`. Raises ChannelClosed like `send`. A channel that has it lets
    # the server send a message inline, without a hop through its writer task (see
    # `loam.transport.service._Peer`).

    async def recv(self) -> bytes:
        """The next message; raises ChannelClosed when the connection is gone."""
        ...

    async def close(self, reason: str = "closed", code: int = 1000) -> None:
        """Close with `code` and `reason` (a channel cuts the reason to what it can carry,
        see `close_reason`)."""
        ...


class DelayStats:
    """One-way connector delays per message type (receive perf_counter_ns - sent_ns).

    Keeps the count of every message and the last `keep` delays of each type; the
    harness does the statistics. Delays are only meaningful when sender and receiver
    share a clock (same process); across processes use ping round trips instead.
    """

    def __init__(self, keep: int = 100_000):
        self.keep = keep
        self.counts: collections.Counter[str] = collections.Counter()
        self.delays: dict[str, collections.deque[int]] = {}

    def record(self, msg_type: str, delay_ns: int) -> None:
        self.counts[msg_type] += 1
        d = self.delays.get(msg_type)
        if d is None:
            d = self.delays[msg_type] = collections.deque(maxlen=self.keep)
        d.append(delay_ns)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """{type: {"count": n, "delays_ns": [..]}} (a copy)."""
        return {t: {"count": self.counts[t], "delays_ns": list(self.delays.get(t, ()))} for t in self.counts}

    def reset(self) -> None:
        self.counts.clear()
        self.delays.clear()
