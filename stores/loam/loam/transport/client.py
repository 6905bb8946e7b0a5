"""Client end of a connection to a durable node, shared by every transport.

A `Connector` performs the handshake, matches replies to requests, hands `notify`
messages to its owner (the ephemeral node) and, when the connection drops, fails the
pending requests, reconnects with capped exponential backoff and calls `on_reconnect`
so the owner can resubscribe. Subclasses only say how to open a `Channel`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any, Awaitable, Callable

from loam.errors import AuthError, NodeClosedError, ProtocolError, ValidationError
from loam.protocol import codec
from loam.protocol import messages as m
from loam.protocol.matching import ConnectionLost, RemoteError
from loam.transport.base import Channel, ChannelClosed, DelayStats
from loam.transport.pending import PendingRequests

log = logging.getLogger("loam.transport")
_perf_ns = time.perf_counter_ns


class Connector:
    """Base connector; use `InProcessConnector` or `WebSocketConnector`.

    `request_timeout` bounds every request (and the wait for a reconnection);
    `backoff_initial`/`backoff_max` shape the reconnect delays (doubling, capped);
    `database` names the database on a server hosting several (None: its default;
    a single-node server refuses any name).
    """

    transport = "abstract"

    def __init__(
        self,
        *,
        token: str | None = None,
        request_timeout: float = 30.0,
        max_size: int = codec.DEFAULT_MAX_SIZE,
        reconnect: bool = True,
        backoff_initial: float = 0.05,
        backoff_max: float = 2.0,
        database: str | None = None,
    ):
        self.token = token
        self.database = database
        self.request_timeout = request_timeout
        self.max_size = max_size
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.node_id = "?"
        self.remote_node_id: str | None = None
        self.remote_clock = 0
        self.stats = DelayStats()  # delays of messages received from the server
        self.sent: dict[str, int] = {}
        self.reconnects = 0
        self.on_notify: Callable[[m.Notify], None] = lambda n: None
        self.on_reconnect: Callable[[], Awaitable[None]] | None = None
        self.on_lost: Callable[[str], None] | None = None
        self._pending = PendingRequests()
        self._channel: Channel | None = None
        self._reader: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closed = False
        self._fatal: BaseException | None = None
        self.last_error: m.Error | None = None
        self._why: str | None = None  # a connection-level error the server sent
        self._malformed: str | None = None  # why we are closing the connection ourselves

    # -- subclass hook -------------------------------------------------------

    async def _open_channel(self) -> Channel:
        raise NotImplementedError

    # -- lifecycle -----------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def connect(self, node_id: str) -> m.Welcome:
        """Open the connection and handshake as `node_id`; raises AuthError on a wrong token."""
        self.node_id = node_id
        welcome = await self._connect_once()
        return welcome

    async def _connect_once(self) -> m.Welcome:
        channel = await self._open_channel()
        self._channel = channel
        self._why = self._malformed = None
        # A channel that can push each message from its transport callback saves the hop
        # to the reader task; the reader then only waits for the close (every message
        # takes one path, so their order holds).
        set_receiver = getattr(channel, "set_receiver", None)
        if set_receiver is not None:
            set_receiver(functools.partial(self._pushed, channel))  # C: no frame of its own
        self._reader = asyncio.create_task(self._read(channel))
        try:
            welcome = await self._request(channel, m.Hello(0, self.token, self.node_id, database=self.database))
        except RemoteError as exc:
            await channel.close("handshake refused")
            if exc.code == "auth":
                raise AuthError(str(exc)) from None
            raise
        except BaseException:
            await channel.close("handshake failed")
            raise
        self.remote_node_id = welcome.node_id
        self.remote_clock = max(self.remote_clock, welcome.clock)
        self._connected.set()
        return welcome

    async def close(self) -> None:
        """Close for good (no reconnect); pending requests fail with NodeClosedError."""
        self._closed = True
        self._connected.clear()
        if self._supervisor is not None:
            self._supervisor.cancel()
        if self._channel is not None:
            await self._channel.close("client closing")
        if self._reader is not None:
            try:
                await self._reader
            except BaseException:
                pass
        self._pending.fail_all(NodeClosedError("connector closed"))

    # -- requests ------------------------------------------------------------

    async def request(self, msg: Any) -> Any:
        """Send a request (its rid is assigned here) and return the matching reply.

        While reconnecting, waits for the connection up to `request_timeout`. Raises
        ConnectionLost if the connection drops before the reply, TimeoutError, or the
        error the remote node answered with (ValidationError, PolicyDenied, ...).
        """
        if self._closed:
            raise NodeClosedError("connector is closed; create a new one")
        if not self._connected.is_set():
            if self._fatal is not None:
                raise self._fatal
            if not self.reconnect or self._supervisor is None:
                raise ConnectionLost("not connected to the durable node")
            try:
                async with asyncio.timeout(self.request_timeout):  # not wait_for: see PendingRequests.wait
                    await self._connected.wait()
            except TimeoutError:
                raise ConnectionLost(
                    f"durable node unreachable for {self.request_timeout} s (still reconnecting)"
                ) from None
        assert self._channel is not None
        return await self._request(self._channel, msg)

    async def _request(self, channel: Channel, msg: Any) -> Any:
        rid, fut = self._pending.new(msg.TYPE)
        msg.rid = rid
        msg.sent_ns = _perf_ns()
        try:
            data = codec.encode(msg, self.max_size)
        except ProtocolError:
            self._pending.discard(rid)
            raise
        try:
            await channel.send(data)
        except ChannelClosed as exc:
            self._pending.discard(rid)
            raise ConnectionLost(f"connection lost: {exc}") from None
        self.sent[msg.TYPE] = self.sent.get(msg.TYPE, 0) + 1
        return await self._pending.wait(rid, fut, self.request_timeout)

    async def ping(self) -> int:
        """Round-trip time of one ping, in ns (valid across processes, unlike one-way delays)."""
        t0 = _perf_ns()
        await self.request(m.Ping(0))
        return _perf_ns() - t0

    # -- receiving -----------------------------------------------------------

    async def _read(self, channel: Channel) -> None:
        reason = "connection closed"
        try:
            while True:
                try:
                    data = await channel.recv()
                except ChannelClosed as exc:
                    reason = self._malformed or str(exc) or self._why or reason
                    if exc.code == 1009:
                        reason = f"server closed the connection: message too big ({exc})"
                    break
                if not self._receive(data):
                    reason = self._malformed or reason
                    await channel.close("malformed message from server", 1008)
                    break
        finally:
            # Only a connection that completed its handshake starts a reconnect loop; a
            # failed handshake is retried by the loop that attempted it.
            was_up = self._channel is channel and self._connected.is_set()
            if self._channel is channel:
                self._connected.clear()
                self._pending.fail_all(ConnectionLost(f"connection to the durable node lost: {reason}"))
                if was_up and not self._closed:
                    if self.on_lost is not None:
                        self.on_lost(reason)
                    if self.reconnect and self._fatal is None:
                        self._supervisor = asyncio.create_task(self._reconnect_loop())

    def _receive(self, data: bytes) -> bool:
        """Handle one message from the server; False if it is malformed (the connection
        must then close; `_malformed` says why). Runs in the reader task, or straight from the
        channel's receive callback when it pushes messages (`set_receiver`)."""
        now = _perf_ns()
        try:
            msg = codec.decode(data, self.max_size)
        except ProtocolError as exc:
            self._malformed = f"server sent a malformed message: {exc}"
            log.warning("%s", self._malformed)
            return False
        if type(msg) is m.Notify:
            if msg.clock > self.remote_clock:
                self.remote_clock = msg.clock
            try:
                self.on_notify(msg)
            except Exception:
                log.exception("notify handler failed")
            # after the handler: the delay was measured at `now`, its bookkeeping
            # (and any sink behind it) need not delay the notification
            self.stats.record(msg.TYPE, now - msg.sent_ns)
            return True
        self.stats.record(msg.TYPE, now - msg.sent_ns)
        if type(msg) is m.Error and msg.rid is None:
            self.last_error = msg
            self._why = f"server error [{msg.code}]: {msg.message}"
        else:
            # Replies carry the durable clock (ack, get/fetch results, subscribed,
            # stale_clock errors): observing it keeps the client's stamps fresh.
            c = getattr(msg, "clock", None)
            if c is not None and c > self.remote_clock:
                self.remote_clock = c
            if type(msg) is m.Ack and msg.record.clock > self.remote_clock:
                self.remote_clock = msg.record.clock
            self._pending.resolve(msg)
        return True

    def _pushed(self, channel: Channel, data: bytes) -> None:
        """A message the channel hands over as it arrives (no reader-task hop)."""
        try:
            ok = self._receive(data)
        except Exception:  # never let a handler error reach the transport's callback
            log.exception("handling a message from the server failed")
            return
        if not ok:
            asyncio.ensure_future(channel.close("malformed message from server", 1008))

    async def _reconnect_loop(self) -> None:
        delay = self.backoff_initial
        while not self._closed:
            await asyncio.sleep(delay)
            try:
                await self._connect_once()
            except (AuthError, ValidationError) as exc:  # wrong token / database refused: retrying cannot help
                self._fatal = exc
                log.error("reconnect refused: %s", exc)
                return
            except (OSError, NodeClosedError, TimeoutError, ProtocolError) as exc:
                log.debug("reconnect failed (%s); retrying in %.3f s", exc, delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            self.reconnects += 1
            if self.on_reconnect is not None:
                try:
                    await self.on_reconnect()
                except Exception:
                    log.exception("resubscribe after reconnect failed")
            return

    def connector_stats(self) -> dict[str, Any]:
        """Received message delays per type, sent counts, reconnects."""
        return {
            "transport": self.transport,
            "received": self.stats.snapshot(),
            "sent": dict(self.sent),
            "reconnects": self.reconnects,
        }
