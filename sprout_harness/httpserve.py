"""A small HTTP/1.1 server on asyncio streams, shared by the live monitor and the webhook receiver.

It does what those two need and no more: requests with a ``Content-Length`` body (no chunked
uploads), keep-alive, an optional ``Router`` by path and method, and bounded reads so a hostile
or broken client cannot make it allocate without limit:

- request line and header fields together at most ``max_head`` bytes and ``max_headers``
  fields: beyond that ``431``;
- a body at most ``max_body`` bytes, refused from its ``Content-Length`` before it is read:
  ``413``;
- a malformed request line, header field or length: ``400``; ``Transfer-Encoding``: ``501``;
  a request not read within ``read_timeout_s`` of its first line: ``408``. Each of these
  answers with a JSON ``{"error": ...}`` and closes the connection (after dropping what the
  client still sends, at most 1 MiB for 2 s, so the answer is not lost to a reset);
- a handler that raises answers ``500`` with the exception's type and message, and the
  connection goes on.

Reason phrases come from ``http.HTTPStatus``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_HEAD = 16 * 1024
MAX_HEADERS = 100
MAX_BODY = 64 * 1024
_LINGER_S = 2.0
_LINGER_BYTES = 1 << 20


@dataclass(frozen=True)
class Request:
    """One parsed request; header names are lower-case."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    client_gone: Callable[[], bool] = field(default=lambda: False, repr=False, compare=False)
    """True once the client hung up (a handler that stalls can tell its answer will not arrive)."""

    @property
    def content_type(self) -> str:
        """The media type alone, lower-case (``application/json`` of ``application/json; charset=utf-8``)."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass(frozen=True)
class Response:
    """An answer; ``close`` ends the connection after it."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    close: bool = False


def json_response(status: int, data: Any, headers: Mapping[str, str] | None = None) -> Response:
    """``data`` as strict JSON (NaN is refused: a JSON parser would choke on it)."""
    body = json.dumps(data, allow_nan=False, default=str).encode()
    return Response(status, body, "application/json", headers or {})


def text_response(status: int, text: str, content_type: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, text.encode("utf-8"), content_type, headers or {})


# A handler may answer None: nothing is sent and the connection closes (the client is gone).
Handler = Callable[[Request], Response | None | Awaitable[Response | None]]


async def _call(handler: Handler, req: Request) -> Response | None:
    result = handler(req)
    if inspect.isawaitable(result):
        result = await result
    return result


class Router:
    """Dispatch by exact path and method: ``404`` names the endpoints, ``405`` carries ``Allow``."""

    def __init__(self) -> None:
        self._routes: dict[str, dict[str, Handler]] = {}

    def add(self, method: str, path: str, handler: Handler) -> None:
        self._routes.setdefault(path, {})[method.upper()] = handler

    async def __call__(self, req: Request) -> Response | None:
        methods = self._routes.get(req.path)
        if methods is None:
            return json_response(404, {"error": f"no such endpoint {req.path!r}", "endpoints": sorted(self._routes)})
        handler = methods.get(req.method)
        if handler is None:
            allowed = sorted(methods)
            return json_response(
                405, {"error": f"{req.path} takes {' or '.join(allowed)}"}, {"Allow": ", ".join(allowed)}
            )
        return await _call(handler, req)


class _Reject(Exception):
    """A request refused before its handler runs: answered with ``status`` and closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def encode_response(resp: Response, keep_alive: bool) -> bytes:
    """The response's bytes on the wire: status line, headers, body."""
    head = [f"HTTP/1.1 {resp.status} {_reason(resp.status)}"]
    if resp.content_type:
        head.append(f"Content-Type: {resp.content_type}")
    head += [f"Content-Length: {len(resp.body)}", f"Connection: {'keep-alive' if keep_alive else 'close'}"]
    head += [f"{k}: {v}" for k, v in resp.headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + resp.body


def _wants_keep_alive(version: str, headers: dict[str, str]) -> bool:
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    if "close" in tokens:
        return False
    return version == "HTTP/1.1" or "keep-alive" in tokens


class HTTPServer:
    """Serves ``handler`` (often a ``Router``); ``await start(host, port)`` returns the bound port,
    ``await close()`` stops listening and ends open connections, idle or busy.

    ``idle_timeout_s`` bounds the wait for a request's first line (None: keep-alive
    connections stay open until the client closes them); ``read_timeout_s`` the rest of it.
    ``headers`` go on every answer, the handler's own headers win.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        max_head: int = MAX_HEAD,
        max_headers: int = MAX_HEADERS,
        max_body: int = MAX_BODY,
        read_timeout_s: float = 10.0,
        idle_timeout_s: float | None = 10.0,
        keep_alive: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.handler = handler
        self.max_head = max_head
        self.max_headers = max_headers
        self.max_body = max_body
        self.read_timeout_s = read_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.keep_alive = keep_alive
        self.headers = dict(headers or {})
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[Any]] = set()
        self._closing = False

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (port 0 picks a free one); returns the bound port. Raises ``OSError``."""
        self._closing = False
        # The stream's line limit is the head limit: readuntil() never buffers more than that.
        self._server = await asyncio.start_server(self._serve, host, port, limit=self.max_head)
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def serving(self) -> bool:
        return self._server is not None

    async def close(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        self._closing = True
        server.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        await server.wait_closed()

    # -- one connection -----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            while True:
                try:
                    req, keep = await self._read(reader, writer)
                except _Reject as exc:
                    await self._write(writer, json_response(exc.status, {"error": str(exc)}), keep_alive=False)
                    await self._linger(reader, writer)
                    return
                if req is None:
                    return
                try:
                    resp = await _call(self.handler, req)
                except Exception as exc:  # a handler bug answers 500; the server goes on
                    resp = json_response(500, {"error": f"{type(exc).__name__}: {exc}"})
                if resp is None:
                    return
                keep = keep and self.keep_alive and not resp.close
                await self._write(writer, resp, keep_alive=keep)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            if not self._closing:
                raise
            # close() cancelled this connection: end quietly (a cancelled connection task
            # makes asyncio's stream callback log a spurious traceback)
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _write(self, writer: asyncio.StreamWriter, resp: Response, *, keep_alive: bool) -> None:
        if self.headers:
            resp = Response(resp.status, resp.body, resp.content_type, {**self.headers, **resp.headers}, resp.close)
        writer.write(encode_response(resp, keep_alive))
        await writer.drain()

    @staticmethod
    async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Drop what the client still sends (a refused body), for a bounded time and size: closing
        with unread data would reset the connection, and the client could lose the answer."""
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()
            dropped = 0
            async with asyncio.timeout(_LINGER_S):
                while dropped < _LINGER_BYTES and (chunk := await reader.read(64 * 1024)):
                    dropped += len(chunk)

    async def _line(self, reader: asyncio.StreamReader, size: int) -> tuple[bytes, int]:
        """One line without its CRLF, and the head's size so far; 431 past ``max_head``."""
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise _Reject(431, f"request head longer than {self.max_head} bytes") from None
        size += len(line)
        if size > self.max_head:
            raise _Reject(431, f"request head longer than {self.max_head} bytes")
        return line.rstrip(b"\r\n"), size

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[Request | None, bool]:
        """The next request and whether the client wants the connection kept; (None, False) at EOF."""
        size = 0
        try:
            async with asyncio.timeout(self.idle_timeout_s):
                line = b""
                while not line:  # blank lines before a request line are allowed (RFC 9112, 2.2)
                    line, size = await self._line(reader, size)
        except (asyncio.IncompleteReadError, TimeoutError):
            return None, False  # the client closed, or sent nothing for idle_timeout_s
        try:
            async with asyncio.timeout(self.read_timeout_s):
                return await self._read_rest(reader, writer, line, size)
        except TimeoutError:
            raise _Reject(408, f"request not received within {self.read_timeout_s:g} s") from None

    async def _read_rest(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes, size: int
    ) -> tuple[Request, bool]:
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _Reject(400, "malformed request line")
        method, target, version = parts[0].upper(), parts[1], parts[2]
        headers: dict[str, str] = {}
        while True:
            raw, size = await self._line(reader, size)
            if not raw:
                break
            if len(headers) >= self.max_headers:
                raise _Reject(431, f"more than {self.max_headers} header fields")
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep or not name or name != name.strip() or " " in name:
                raise _Reject(400, "malformed header field")
            key = name.lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        if "transfer-encoding" in headers:
            raise _Reject(501, "Transfer-Encoding is not supported: send the body with a Content-Length")
        length_text = headers.get("content-length", "0")
        lengths = {v.strip() for v in length_text.split(",")}
        if len(lengths) != 1 or not next(iter(lengths)).isdigit() or not next(iter(lengths)).isascii():
            raise _Reject(400, f"bad Content-Length {length_text!r}")
        length = int(next(iter(lengths)))
        if length > self.max_body:
            raise _Reject(413, f"request body of {length} bytes is over the limit of {self.max_body}")
        if length and headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        body = await reader.readexactly(length) if length else b""
        url = urlsplit(target)

        def gone() -> bool:
            return writer.is_closing() or reader.at_eof()

        req = Request(method, url.path or "/", parse_qs(url.query), headers, body, gone)
        return req, _wants_keep_alive(version, headers)


__all__ = [
    "HTTPServer",
    "Handler",
    "Request",
    "Response",
    "Router",
    "encode_response",
    "json_response",
    "text_response",
]
