"""A local webhook receiver (HTTP/1.1 on 127.0.0.1) for trigger scenarios and tests.

Stdlib asyncio only: requests with a Content-Length body (what webhook senders send),
keep-alive connections. Every request is recorded with its `perf_counter_ns` arrival
time; a request's answer comes from `respond(body, attempt)` where `attempt` counts
the requests seen with the same delivery id (1 for the first), so a receiver can fail
the first attempts, stall, or refuse. Deliveries acknowledged with a 2xx are deduped
by delivery id (`accepted`); an id acknowledged twice is counted in `duplicates`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Union

# (status) or (status, delay before answering in seconds)
Reply = Union[int, tuple[int, float]]
Responder = Callable[[dict[str, Any], int], Union[Reply, Awaitable[Reply]]]

_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error",
            503: "Service Unavailable"}
_MAX_BODY = 16 << 20


@dataclass(frozen=True, slots=True)
class Received:
    """One request as it arrived: its delivery id, parsed JSON body, arrival time and our answer
    (499: the sender hung up before the answer, so nothing was delivered)."""

    delivery_id: str
    body: dict[str, Any]
    received_ns: int
    status: int


def _ok(_body: dict[str, Any], _attempt: int) -> Reply:
    return 200


class WebhookReceiver:
    """`async with WebhookReceiver() as rx: ... rx.url ...`; `rx.accepted` maps delivery id -> first 2xx request."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, respond: Responder | None = None,
                 id_field: str = "delivery_id") -> None:
        self.host = host
        self.port = port
        self.respond = respond or _ok
        self.id_field = id_field
        self.requests: list[Received] = []
        self.accepted: dict[str, Received] = {}
        self.duplicates = 0
        self._attempts: dict[str, int] = {}
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[Any]] = set()
        self._changed = asyncio.Event()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("WebhookReceiver is not started; await start() (or use `async with`) first")
        return f"http://{self.host}:{self.port}/hook"

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.url

    async def close(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            for t in list(self._conns):
                t.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            await server.wait_closed()

    async def __aenter__(self) -> "WebhookReceiver":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_accepted(self, n: int, timeout_s: float = 10.0) -> bool:
        """Wait until `n` distinct deliveries were acknowledged; False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                while len(self.accepted) < n:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            return False
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                length = int(headers.get("content-length", "0"))
                if length > _MAX_BODY:
                    await self._answer(writer, 400, close=True)
                    return
                raw = await reader.readexactly(length) if length else b""
                received_ns = time.perf_counter_ns()
                did, body, status = await self._handle(raw)
                if writer.is_closing() or reader.at_eof():  # the sender hung up while we stalled: not delivered
                    self._record(Received(did, body, received_ns, 499))
                    return
                close = headers.get("connection", "").lower() == "close"
                await self._answer(writer, status, close=close)
                self._record(Received(did, body, received_ns, status))
                if close:
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            if self._server is not None:
                raise
            # close() cancelled an idle keep-alive connection: end quietly (a cancelled
            # connection task makes asyncio's stream callback log a spurious traceback)
        finally:
            self._conns.discard(task)
            writer.close()

    async def _handle(self, raw: bytes) -> tuple[str, dict[str, Any], int]:
        try:
            body = json.loads(raw)
            did = str(body[self.id_field])
        except (ValueError, KeyError, TypeError):
            return "", {}, 400
        attempt = self._attempts[did] = self._attempts.get(did, 0) + 1
        reply = self.respond(body, attempt)
        if inspect.isawaitable(reply):
            reply = await reply
        status, delay = (reply, 0.0) if isinstance(reply, int) else reply
        if delay > 0:
            await asyncio.sleep(delay)
        return did, body, status

    def _record(self, rec: Received) -> None:
        self.requests.append(rec)
        if 200 <= rec.status < 300 and rec.delivery_id:
            if rec.delivery_id in self.accepted:
                self.duplicates += 1
            else:
                self.accepted[rec.delivery_id] = rec
        self._changed.set()

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, status: int, *, close: bool) -> None:
        reason = _REASONS.get(status, "Status")
        conn = "close" if close else "keep-alive"
        writer.write(f"HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: {conn}\r\n\r\n".encode())
        await writer.drain()


__all__ = ["Received", "Responder", "Reply", "WebhookReceiver"]
