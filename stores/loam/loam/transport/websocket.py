"""WebSocket connector and server (the `websockets` asyncio API), one binary frame per message.

Compression is off (faster on loopback, and messages are small) and `max_size` is the
protocol's message limit: a larger frame makes `websockets` close the connection with
code 1009 ("message too big"), which the client reports as a ProtocolError. Malformed
messages and wrong tokens get an `error` message, then a close with code 1008.
"""

from __future__ import annotations

import logging
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State
from websockets.streams import StreamReader

from loam.protocol import codec
from loam.transport.base import ChannelClosed, close_reason
from loam.transport.client import Connector
from loam.transport.service import DEFAULT_MAX_PENDING, DEFAULT_MAX_SUBSCRIPTIONS, NodeService
from loam.transport.wsframes import binary_frame, split_binary_frames

log = logging.getLogger("loam.transport")
_READ_SIZE = 64 * 1024  # bytes per socket read (see WebSocketChannel)


def _closed(exc: ConnectionClosed) -> ChannelClosed:
    frame = exc.rcvd or exc.sent
    if frame is None:
        return ChannelClosed("connection dropped without a close frame", 1006)
    return ChannelClosed(frame.reason or f"closed with code {frame.code}", frame.code)


_PARSE = getattr(getattr(Protocol, "parse", None), "__code__", None)
_AT_EOF = getattr(getattr(StreamReader, "at_eof", None), "__code__", None)


def _parser_idle(p: Any) -> bool:
    """Whether `websockets`' parser sits between frames with nothing buffered: waiting at
    the top of `Protocol.parse` (not in a frame, not in `discard` after a close), with no
    fragmented message in progress. Anything else, or a `websockets` whose parser looks
    different, answers False."""
    if p.state is not State.OPEN or p.current_size is not None or p.reader.buffer or p.reader.eof:
        return False
    g = p.parser
    for _ in range(4):  # ClientProtocol.parse -> Protocol.parse -> StreamReader.at_eof
        sub = getattr(g, "gi_yieldfrom", None)
        if sub is None:
            return False
        if getattr(sub, "gi_code", None) is _AT_EOF:
            return getattr(g, "gi_code", None) is _PARSE
        g = sub
    return False


class _PushingClientConnection(ClientConnection):
    """A client connection that hands every complete data message to `on_message` from
    `data_received`, instead of queueing it for `recv()` in another task: the connector
    handles a notification in the same event-loop callback that read it (one task hop
    less per message). loam servers send one frame per message; a fragmented message
    turns pushing off for good, so it and everything after it go through `recv()`, in
    order. Control frames and the close handshake stay with `websockets`.

    While `websockets`' parser is idle between frames, the complete final binary frames at
    the start of a read are split off directly (`wsframes.split_binary_frames`); the rest
    of the read, from the first frame of any other kind on, goes to `websockets` as usual.
    """

    on_message: Any = None
    split_frames = False  # set by `WebSocketChannel.set_receiver` when the parser looks as expected
    split_limit: int | None = None  # the largest frame to split off (the protocol's own limit)

    def data_received(self, data: bytes) -> None:
        cb = self.on_message
        if cb is not None and self.split_frames and self.response is not None and _parser_idle(self.protocol):
            payloads, used = split_binary_frames(data, self.split_limit)
            for payload in payloads:
                cb(payload)
            if used == len(data):
                return
            data = data[used:]
        super().data_received(data)

    def process_event(self, event: Any) -> None:
        cb = self.on_message
        if cb is not None and self.response is not None and type(event) is Frame:
            op = event.opcode
            if op is Opcode.BINARY or op is Opcode.TEXT:
                if event.fin:
                    data = event.data
                    cb(data if type(data) is bytes else bytes(data))
                    return
                self.on_message = None
        super().process_event(event)


class WebSocketChannel:
    """A `Channel` over one websockets connection (client or server side).

    `send_nowait` writes a frame without a coroutine: the sans-I/O protocol object frames
    the message and the connection writes it to the asyncio transport, which is what
    `websockets`' own `send` does when it would not have to wait. When it would (the
    transport is paused by flow control, a fragmented send is in progress, the connection
    is not open) it sends nothing and returns False, and the caller uses `send`.
    """

    def __init__(self, ws: ClientConnection | ServerConnection):
        self.ws = ws
        # asyncio's socket transport allocates a `max_size` (256 KiB) buffer for every read.
        # In a process whose malloc serves that size with mmap/munmap (glibc does once its
        # dynamic threshold is pinned), every message pays page faults: ~25 us per message
        # on the reference VM, a third of the commit -> notification lag. 64 KiB buffers come
        # from the heap; a larger message simply takes more than one read.
        transport = getattr(ws, "transport", None)
        if isinstance(getattr(transport, "max_size", None), int) and transport.max_size > _READ_SIZE:  # type: ignore[union-attr]
            transport.max_size = _READ_SIZE  # type: ignore[union-attr]
        # The fast path uses the connection's protocol object and write helper; with a
        # websockets release that lacks them, every send takes the coroutine path.
        if not all(
            hasattr(ws, a)
            for a in ("protocol", "transport", "send_data", "paused", "send_in_progress", "set_connection_exc")
        ) or not all(
            hasattr(ws.protocol, a) for a in ("writes", "expect_continuation_frame", "extensions", "debug", "side")
        ):
            self.send_nowait = None  # type: ignore[assignment]

    def set_receiver(self, callback: Any) -> None:
        """Push each message to `callback(data)` as it is read (client connections only;
        others keep `recv`). Set before any message can arrive."""
        ws = self.ws
        if isinstance(ws, _PushingClientConnection):
            ws.on_message = callback
            p = ws.protocol
            ws.split_frames = (
                _PARSE is not None
                and _AT_EOF is not None
                and all(
                    hasattr(p, a) for a in ("max_message_size", "max_fragment_size", "current_size", "parser", "reader")
                )
                and all(hasattr(p.reader, a) for a in ("buffer", "eof"))
            )
            if ws.split_frames:  # fixed for the connection: worked out once, not per read
                limits = [v for v in (p.max_message_size, p.max_fragment_size) if v is not None]
                ws.split_limit = min(limits) if limits else None

    def send_nowait(self, data: bytes) -> bool:
        ws = self.ws
        if ws.paused or ws.send_in_progress is not None or ws.protocol.state is not State.OPEN:
            return False  # `send` waits for the transport, the fragments, or the close
        transport = ws.transport
        if transport.is_closing():
            return False
        p = ws.protocol
        try:
            if p.side is Side.SERVER and not (p.writes or p.expect_continuation_frame or p.extensions or p.debug):
                # nothing of websockets' own is waiting to be written: the frame is the
                # same bytes `send_binary` would produce, without building a Frame
                transport.write(binary_frame(data))
            else:
                p.send_binary(data)
                ws.send_data()
        except Exception as exc:  # the socket failed; the connection is over (as in `send`)
            ws.set_connection_exc(exc)
            ws.transport.abort()
            raise ChannelClosed(f"connection failed while sending: {exc}", 1006) from None
        return True

    async def send(self, data: bytes) -> None:
        try:
            await self.ws.send(data)
        except ConnectionClosed as exc:
            raise _closed(exc) from None

    async def recv(self) -> bytes:
        try:
            data = await self.ws.recv()
        except ConnectionClosed as exc:
            raise _closed(exc) from None
        return data if isinstance(data, bytes) else data.encode()

    async def close(self, reason: str = "closed", code: int = 1000) -> None:
        await self.ws.close(code, close_reason(reason))


class NodeServer:
    """Serves a durable node over WebSocket on `host:port` (port 0 picks a free port).

    `node` may also be a `loam.databases.DatabaseHost`: each client then names its
    database in the handshake (`WebSocketConnector(url, database="shop")`).

    `await server.start()` (or `async with`) binds; `port` is then the bound port and
    `url` the address to give to `WebSocketConnector`.

    `max_pending`, `max_pending_bytes` and `max_subscriptions` bound each connection's
    queued output and live queries (see `NodeService`); an `authenticator` (`loam.auth`)
    binds each connection's user at hello.
    """

    def __init__(
        self,
        node: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        max_size: int = codec.DEFAULT_MAX_SIZE,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_pending_bytes: int | None = None,
        max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS,
        authenticator: Any = None,
    ):
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535 (0: any free port), got {port!r}")
        self.node = node
        self.host = host
        self.requested_port = port
        self.service = NodeService(
            node, token, max_size, max_pending, max_pending_bytes, max_subscriptions, authenticator
        )
        self._server: Server | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> NodeServer:
        self._server = await serve(
            self._handler,
            self.host,
            self.requested_port,
            compression=None,
            max_size=self.service.max_size,
            logger=log,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handler(self, ws: ServerConnection) -> None:
        await self.service.serve(WebSocketChannel(ws), label=f"ws {ws.remote_address}")

    async def close(self) -> None:
        """Stop accepting, close every connection (clients see 1001 and reconnect) and wait."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> NodeServer:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def stats(self) -> dict[str, Any]:
        return {
            "received": self.service.stats.snapshot(),
            "peers": len(self.service.peers),
            "slow_peers_closed": self.service.slow_peers_closed,
            "pending_bytes": sum(p._out_bytes for p in self.service.peers),
        }


class WebSocketConnector(Connector):
    """Connector to a `NodeServer` (or `python -m loam serve`) at `url` (ws://host:port)."""

    transport = "websocket"

    def __init__(self, url: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.url = url

    async def _open_channel(self) -> WebSocketChannel:
        try:
            ws = await connect(
                self.url,
                compression=None,
                max_size=self.max_size,
                proxy=None,
                open_timeout=self.request_timeout,
                create_connection=_PushingClientConnection,
            )
        except (OSError, TimeoutError):
            raise
        except Exception as exc:  # handshake refused (e.g. not a WebSocket server)
            raise OSError(f"cannot open a WebSocket to {self.url}: {exc}") from exc
        return WebSocketChannel(ws)
