"""Server side of a connection, shared by every transport: serves one node to many peers.

`NodeService.serve(channel)` runs one peer: the sans-I/O `ServerSession` checks each
message, requests run as their own tasks against the durable node, and one writer task
sends replies and notifications in order. On a channel that can send without suspending
(`send_nowait`: the in-process channel, and a WebSocket whose transport is not paused by
flow control), a message is sent inline when nothing is waiting for the writer, which
saves a task hop per notification. Each remote
subscription is a durable-node LiveQuery whose listener queues a `notify`; unsubscribe
and disconnect close it.

The service serves one durable node, or a `loam.databases.DatabaseHost`: then each
peer's `hello` names its database (`database`, default "default"), which is opened
before the `welcome`, and every request of that peer goes to that database's node
only. A bad database name is answered with `error{code: "validation"}` and a close
with code 1008.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from loam.auth import Authenticator
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
from loam.model import Notification
from loam.protocol import codec
from loam.protocol import messages as m
from loam.protocol.session import Reject, ServerSession
from loam.transport.base import Channel, ChannelClosed, DelayStats, close_reason

log = logging.getLogger("loam.transport")

_perf_ns = time.perf_counter_ns


def error_code(exc: BaseException) -> m.ErrorCode:
    if isinstance(exc, StaleClockError):
        return "stale_clock"
    if isinstance(exc, QueryError):
        return "query"
    if isinstance(exc, ValidationError):
        return "validation"
    if isinstance(exc, PolicyDenied):
        return "denied"
    if isinstance(exc, StorageError):
        return "storage"
    if isinstance(exc, NodeClosedError):
        return "closed"
    if isinstance(exc, ProtocolError):
        return "malformed"
    return "internal"


DEFAULT_DATABASE = "default"


def _is_host(target: Any) -> bool:
    return callable(getattr(target, "open_database", None))


DEFAULT_MAX_PENDING = 10_000
DEFAULT_MAX_PENDING_BYTES = 64 << 20  # 64 MiB
DEFAULT_MAX_SUBSCRIPTIONS = 1_000
MIN_MAX_SIZE = 4096  # smaller, and a welcome or an error reply with its message may not fit


class NodeService:
    """Serves `node` (a durable node, or a DatabaseHost of several) over any number of channels.

    `max_pending` and `max_pending_bytes` bound what a peer that does not read can cost
    the server: when more than that many messages, or more than that many encoded bytes,
    wait to be sent to one peer (its transport is paused by flow control and they pile
    up), they are dropped, its live queries are released and its connection is closed
    with code 1013 ("try again later"). A loam client then reconnects and resubscribes,
    and its live queries report the difference (`kind="resubscribed"`).
    `max_pending_bytes` defaults to 64 MiB, or `max_size` if that is larger (one message
    must always fit). `max_subscriptions` bounds the live queries one connection may hold:
    a `subscribe` past it gets `error{code: "validation"}`, the others are unaffected."""

    def __init__(
        self,
        node: Any,
        token: str | None = None,
        max_size: int = codec.DEFAULT_MAX_SIZE,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_pending_bytes: int | None = None,
        max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS,
        authenticator: Authenticator | None = None,
    ):
        if type(max_size) is not int or max_size < MIN_MAX_SIZE:
            raise ValueError(f"max_size must be at least {MIN_MAX_SIZE} bytes, got {max_size!r}")
        if not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(f"max_pending must be a positive number of messages, got {max_pending!r}")
        if max_pending_bytes is None:
            max_pending_bytes = max(DEFAULT_MAX_PENDING_BYTES, max_size)
        if type(max_pending_bytes) is not int or max_pending_bytes < max_size:
            raise ValueError(
                f"max_pending_bytes must be at least max_size ({max_size} bytes), got {max_pending_bytes!r}"
            )
        if type(max_subscriptions) is not int or max_subscriptions < 1:
            raise ValueError(f"max_subscriptions must be a positive number, got {max_subscriptions!r}")
        self.host: Any = node if _is_host(node) else None
        self.node = None if self.host is not None else node
        self.token = token
        self.authenticator = authenticator  # binds each connection's user at hello (loam.auth)
        self.max_size = max_size
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.max_subscriptions = max_subscriptions
        self.slow_peers_closed = 0
        self.stats = DelayStats()  # delays of messages received from clients
        self.peers: set[_Peer] = set()
        self._clock = 0
        add = getattr(node, "add_commit_listener", None)
        # A node whose clock `clock` reads directly (a loam node) needs no listener: its
        # clock is never behind a commit it published, and a commit need not call one more.
        if (
            add is not None
            and self.host is None
            and not isinstance(getattr(getattr(node, "clock", None), "value", None), int)
        ):
            add(self._on_commit)

    def _on_commit(self, record: Any) -> None:
        if record.clock > self._clock:
            self._clock = record.clock

    async def resolve(self, database: str | None) -> Any:
        """The node a peer's requests go to: the served node, or the host's database `database`."""
        if self.host is None:
            if database is not None:
                raise ValidationError(
                    f"this server serves a single database; connect without database= "
                    f"(got {database!r}), or serve a DatabaseHost"
                )
            return self.node
        return await self.host.open_database(database or DEFAULT_DATABASE)

    @property
    def clock(self) -> int:
        """The durable node's Lamport clock as far as this service knows."""
        try:
            v = self.node.clock.value  # a loam node (once per notification: no getattr chain)
        except AttributeError:
            c = getattr(self.node, "clock", None)
            v = getattr(c, "value", c)
        if type(v) is int or isinstance(v, int):
            if v > self._clock:
                self._clock = v
        return self._clock

    async def serve(self, channel: Channel, *, label: str = "peer") -> None:
        """Run one connection until it closes; releases the peer's live queries."""
        peer = _Peer(self, channel, label)
        self.peers.add(peer)
        try:
            await peer.run()
        finally:
            self.peers.discard(peer)

    async def close_all(self, reason: str = "server closing") -> None:
        for p in list(self.peers):
            await p.channel.close(reason, 1001)


class _Peer:
    def __init__(self, service: NodeService, channel: Channel, label: str):
        self.service = service
        self.node = service.node  # with a DatabaseHost: set from the hello's database
        self.channel = channel
        self.label = label
        server_id = getattr(service.node if service.host is None else service.host, "node_id", "?")
        self.session = ServerSession(server_id, service.token, service.max_size, service.authenticator)
        # Encoded messages for the writer. A deque and a writer task that runs only while it
        # holds something: an idle connection costs neither an asyncio.Queue (~2.4 kB) nor a
        # parked task (~1 kB), a large share of a server holding thousands of them.
        self.out: deque[Any] = deque()
        self._writer_task: asyncio.Task[None] | None = None
        self._out_bytes = 0  # their total size (plus the one the writer is sending)
        self._subscribing = 0  # subscribe requests past the bound check, not yet in `live`
        self._send_nowait = getattr(channel, "send_nowait", None)
        self._writing = False  # the writer holds a message it has not finished sending
        self._too_slow = False  # over max_pending: nothing more is queued, the close is under way
        self.live: dict[str, Any] = {}  # query id -> durable LiveQuery
        self.tasks: set[asyncio.Task[Any]] = set()

    async def run(self) -> None:
        try:
            while True:
                try:
                    data = await self.channel.recv()
                except ChannelClosed:
                    break
                now = _perf_ns()
                res = self.session.receive(data)
                if isinstance(res, Reject):
                    log.info("%s rejected: %s", self.label, res.reason)
                    await self._send_now(res.error)
                    await self.channel.close(res.reason, 1009 if res.error.code == "too_large" else 1008)
                    break
                self.service.stats.record(res.TYPE, now - res.sent_ns)
                if isinstance(res, m.Hello):
                    try:
                        # Inline (not a task): no request of this peer may run before its node is known.
                        self.node = await self.service.resolve(res.database)
                    except LoamError as exc:
                        log.info("%s refused: %s", self.label, exc)
                        self.session.state = "closed"
                        await self._send_now(m.Error(res.rid, error_code(exc), str(exc)))
                        await self.channel.close(close_reason(f"{error_code(exc)}: {exc}"), 1008)
                        break
                    welcome = self.session.welcome(res, self._clock())
                    welcome.node_id = getattr(self.node, "node_id", welcome.node_id)
                    self._enqueue(welcome)
                elif isinstance(res, m.Ping):
                    self._enqueue(m.Pong(res.rid))
                else:
                    t = asyncio.create_task(self._handle(res))
                    self.tasks.add(t)
                    t.add_done_callback(self.tasks.discard)
        finally:
            # Requests still running are left to finish (cancelling a commit half-way could
            # leave it stored but not fanned out); their replies have nowhere to go.
            if self._writer_task is not None:
                self._writer_task.cancel()
            await self._release_all()
            await self.channel.close("connection finished")

    def _clock(self) -> int:
        if self.service.host is None:
            return self.service.clock
        c = getattr(self.node, "clock", None)
        v = getattr(c, "value", c)
        return v if isinstance(v, int) else 0

    async def _send_now(self, msg: m.Message) -> None:
        msg.sent_ns = _perf_ns()
        try:
            await self.channel.send(codec.encode(msg, self.service.max_size))
        except (ChannelClosed, ProtocolError):
            pass

    def _enqueue(self, msg: m.Message) -> None:
        """Send `msg` after every message enqueued before it.

        Inline when the channel can send without suspending and nothing is ahead of it:
        the queue is empty and the writer holds no message (`_writing`), so every earlier
        message is already in the channel, and `send_nowait` puts this one behind them
        before returning. Otherwise the writer task sends it in turn. Once anything is
        queued, later messages queue too until the writer has drained the queue, so
        inline and queued sends never overtake each other.
        """
        if self._inline():
            data = self._encode(msg)
            if data is not None:
                self._send_inline(data)
            return
        self._queue(msg)

    def _queue(self, item: m.Message | bytes) -> None:
        """Hand `item` (a message, or bytes already encoded) to the writer, unless the peer
        is too slow: see `NodeService.max_pending` and `max_pending_bytes`.

        Messages are encoded here, not by the writer, so the bytes waiting are known as
        they are queued (their `sent_ns` is then the time they were queued)."""
        if self._too_slow:
            return
        data = item if type(item) is bytes else self._encode(item)  # type: ignore[arg-type]
        if data is None:
            return
        out = self.out
        out.append(data)
        self._out_bytes += len(data)
        service = self.service
        if self._out_bytes > service.max_pending_bytes or len(out) > service.max_pending:
            self._drop_slow_peer()
        elif self._writer_task is None:
            self._writer_task = asyncio.create_task(self._writer())

    def _drop_slow_peer(self) -> None:
        self._too_slow = True
        waiting, size = len(self.out), self._out_bytes
        self.out.clear()
        self._out_bytes = 0
        self.service.slow_peers_closed += 1
        reason = (
            f"client too slow: {waiting} messages, {size} bytes waiting "
            f"(max_pending {self.service.max_pending}, max_pending_bytes {self.service.max_pending_bytes})"
        )
        log.warning("%s: %s; closing the connection (1013)", self.label, reason)

        async def release_and_close() -> None:
            await self._release_all()  # no more notifications for a peer that will not read them
            await self.channel.close(reason, 1013)

        t = asyncio.create_task(release_and_close())
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    def _inline(self) -> bool:
        """Whether the next message may be sent inline: nothing is ahead of it."""
        return self._send_nowait is not None and not self._writing and not self._too_slow and not self.out

    def _send_inline(self, data: bytes) -> None:
        try:
            if self._send_nowait(data):  # type: ignore[misc]
                return
        except ChannelClosed:
            return  # the reader sees the close and ends the connection
        self._queue(data)  # the channel must wait (flow control): the writer sends it

    def _encode(self, msg: m.Message) -> bytes | None:
        msg.sent_ns = _perf_ns()
        try:
            return codec.encode(msg, self.service.max_size)
        except ProtocolError as exc:
            return self._too_large(msg, exc)

    async def _writer(self) -> None:
        """Send what is queued, in order, then end: `_queue` starts it again. The check for
        more and the end happen in one step of the loop, so nothing queued is left behind."""
        out = self.out
        try:
            while out:
                item = out.popleft()
                self._writing = True
                # `_queue` puts bytes (counted); a message object (not counted) is encoded here.
                data = item if type(item) is bytes else self._encode(item)
                if data is not None:
                    try:
                        await self.channel.send(data)
                    except ChannelClosed:
                        return
                    if data is item and not self._too_slow:  # a drop has already zeroed the count
                        self._out_bytes -= len(data)
                self._writing = False
        finally:
            self._writer_task = None

    def _too_large(self, msg: m.Message, exc: ProtocolError) -> bytes | None:
        # A reply over the limit becomes an error for its request; a notification over the
        # limit ends that live query (the client cannot stay consistent without it).
        if isinstance(msg, m.Notify):
            asyncio.create_task(self._release(msg.query_id))
            out: m.Message = m.closed_notify(msg.query_id, msg.commit_id, msg.commit_ns, str(exc))
        else:
            out = m.Error(getattr(msg, "rid", None), "too_large", str(exc))
        out.sent_ns = _perf_ns()
        try:
            return codec.encode(out, self.service.max_size)
        except ProtocolError:
            return None

    async def _handle(self, msg: m.Message) -> None:
        rid = msg.rid  # type: ignore[union-attr]
        try:
            reply = await self._dispatch(msg)
        except asyncio.CancelledError:
            raise
        except LoamError as exc:
            reply = m.Error(rid, error_code(exc), str(exc), exc.clock if isinstance(exc, StaleClockError) else None)
        except Exception as exc:  # a bug on the server; the client still gets an answer
            log.exception("%s: %s request failed", self.label, msg.TYPE)
            reply = m.Error(rid, "internal", f"{type(exc).__name__}: {exc}")
        if reply is not None:
            self._enqueue(reply)

    async def _dispatch(self, msg: m.Message) -> m.Message | None:
        node = self.node
        self.session.check_request(msg)  # ids and collection names (ValidationError)
        if isinstance(msg, m.Commit):
            # A client's commit must land if acked: a stale stamp is refused (stale_clock), not merged away.
            rec = await node.apply_transaction(msg.tx, msg.ctx, require_fresh=True)
            return m.Ack(msg.rid, rec, self._clock())
        if isinstance(msg, m.Get):
            return m.GetResult(msg.rid, await node.get(msg.collection, msg.id, msg.ctx), self._clock())
        if isinstance(msg, m.Fetch):
            return m.FetchResult(msg.rid, list(await node.fetch(msg.collection, msg.query, msg.ctx)), self._clock())
        if isinstance(msg, m.Subscribe):
            return await self._subscribe(msg)
        if isinstance(msg, m.Unsubscribe):
            if not self.session.remove_query(msg.query_id):
                return m.Error(msg.rid, "unknown_query", f"this connection holds no live query {msg.query_id!r}")
            lq = self.live.pop(msg.query_id, None)
            if lq is not None:
                await lq.close()
            return m.Unsubscribed(msg.rid, msg.query_id)
        raise ProtocolError(f"unexpected {msg.TYPE} request")

    async def _subscribe(self, msg: m.Subscribe) -> None:
        # Notifications that fire before `subscribed` is queued wait in `early`, so the
        # client always sees the initial result first and then every change in order.
        early: list[Notification] | None = []
        qid_box: list[str] = []

        def listener(n: Notification) -> None:
            if early is not None:
                early.append(n)
            else:
                self._queue_notify(qid_box[0], n)

        limit = self.service.max_subscriptions
        if len(self.live) + self._subscribing >= limit:
            raise ValidationError(
                f"this connection already holds {limit} live queries, the server's limit "
                "(max_subscriptions, --max-subscriptions); unsubscribe some or open "
                "another connection"
            )
        self._subscribing += 1  # counted while the initial result is read: concurrent subscribes see it
        try:
            lq = await self.node.subscribe(msg.collection, msg.query, msg.ctx, listener)
        finally:
            self._subscribing -= 1
        if self.session.state == "closed":  # the peer left while the initial result was read
            await lq.close()
            return None
        qid_box.append(lq.id)
        self.live[lq.id] = lq
        self.session.add_query(lq.id)
        self._enqueue(m.Subscribed(msg.rid, lq.id, list(lq.results), self._clock()))
        pending, early = early, None
        for n in pending:
            self._queue_notify(lq.id, n)
        return None

    def _queue_notify(self, qid: str, n: Notification) -> None:
        if qid not in self.live or self._too_slow:
            return
        if n.kind == "closed":
            self.live.pop(qid, None)
            self.session.remove_query(qid)
            self._enqueue(m.closed_notify(qid, n.commit_id, n.commit_ns, n.reason))
            return
        # Encoded straight from the notification (the hot path), then sent inline when
        # nothing is ahead of it (_enqueue), else queued with its size counted.
        service = self.service
        try:
            data = codec.encode_change_notify(
                qid,
                n.commit_id,
                n.commit_ns,
                n.added,
                n.updated,
                n.removed,
                n.gap_filled,
                service.clock if service.host is None else self._clock(),
                _perf_ns(),
                service.max_size,
            )
        except ProtocolError:  # over the limit: the message path ends the query with the reason
            self._enqueue(
                m.Notify(
                    qid,
                    n.commit_id,
                    n.commit_ns,
                    list(n.added),
                    list(n.updated),
                    list(n.removed),
                    n.gap_filled,
                    self._clock(),
                    "change",
                    None,
                    0,
                )
            )
            return
        # _inline() and _send_inline(), inline
        send = self._send_nowait
        if send is not None and not self._writing and not self.out:
            try:
                if send(data):
                    return
            except ChannelClosed:
                return  # the reader sees the close and ends the connection
        self._queue(data)

    async def _release(self, qid: str) -> None:
        self.session.remove_query(qid)
        lq = self.live.pop(qid, None)
        if lq is not None:
            await lq.close()

    async def _release_all(self) -> None:
        self.session.close()
        live, self.live = self.live, {}
        for lq in live.values():
            try:
                await lq.close()
            except Exception:  # closing on a closed node must not stop the others
                log.debug("%s: closing live query failed", self.label, exc_info=True)
