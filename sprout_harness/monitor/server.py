"""The monitor's HTTP server: dashboard, JSON API, Prometheus text, graceful stop.

A small asyncio HTTP/1.1 server from the standard library (one request per connection):
the dashboard polls the JSON API, so no WebSocket is needed, and ``websockets``' HTTP
handling only accepts GET (the stop button needs POST). It runs on the monitor thread's loop
(see ``live``); handlers only read ``RunState`` copies.

Endpoints: ``GET /`` dashboard, ``GET /static/plotly.min.js`` (from the installed plotly
package), ``GET /api/status``, ``GET /api/metrics``, ``GET /metrics`` (Prometheus text),
``POST /api/stop``.

Security: binds 127.0.0.1 by default. Another address needs ``public=True`` and a token;
with a token every request must carry it (``X-Sprout-Token`` / ``Authorization: Bearer``
header or ``?token=``). ``POST /api/stop`` also needs a JSON content type, which a cross-site
form cannot send without a CORS preflight this server never grants.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from sprout_harness.monitor.prometheus import CONTENT_TYPE, exposition, make_registry
from sprout_harness.monitor.state import RunState
from sprout_harness.reports.assets import plotly_js

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9090
_MAX_HEAD = 16 * 1024
_MAX_BODY = 64 * 1024
_READ_TIMEOUT_S = 10.0
_REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large", 415: "Unsupported Media Type",
            500: "Internal Server Error"}


class MonitorConfigError(ValueError):
    """The monitor's address / exposure settings are unsafe or malformed."""


def parse_addr(text: str) -> tuple[str, int]:
    """``"127.0.0.1:9090"`` / ``"[::1]:9090"`` / ``":9090"`` -> (host, port); port 0 picks a free one."""
    s = text.strip()
    if s.startswith("["):
        host, _, rest = s[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port_text = s.rpartition(":")
        if not sep:
            raise MonitorConfigError(f"monitor address {text!r} needs a port, like 127.0.0.1:9090")
    try:
        port = int(port_text)
    except ValueError:
        raise MonitorConfigError(f"monitor address {text!r}: port {port_text!r} is not a number; "
                                 "write it like 127.0.0.1:9090") from None
    if not 0 <= port <= 65535:
        raise MonitorConfigError(f"monitor address {text!r}: port {port} is outside 0..65535")
    return (host or DEFAULT_HOST), port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, public: bool, token: str | None) -> None:
    """Refuse a non-loopback bind without ``public`` and a token (the fix is named in the message)."""
    if is_loopback(host):
        return
    if not public:
        raise MonitorConfigError(
            f"monitor address {host!r} is not loopback: the dashboard can stop the run, so binding it "
            "elsewhere needs --monitor-public and --monitor-token TOKEN (or bind 127.0.0.1)")
    if not token:
        raise MonitorConfigError(
            f"--monitor-public on {host!r} needs a token: pass --monitor-token TOKEN "
            "(every request must then carry it)")


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


class MonitorServer:
    """Serves one ``RunState``; ``await start()`` then ``url``; ``await close()``."""

    def __init__(self, state: RunState, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 public: bool = False, token: str | None = None, poll_ms: int = 1000) -> None:
        check_exposure(host, public, token)
        self.state = state
        self.host = host
        self.port = port
        self.token = token or None
        self.poll_ms = poll_ms
        self.registry = make_registry(state)
        self._server: asyncio.Server | None = None
        self._bound_port: int | None = None

    async def start(self) -> "MonitorServer":
        try:
            self._server = await asyncio.start_server(self._handle, self.host, self.port, limit=_MAX_HEAD)
        except OSError as exc:
            raise MonitorConfigError(
                f"monitor cannot listen on {self.host}:{self.port} ({exc.strerror or exc}); "
                "pick another --monitor-addr (port 0 picks a free one)") from None
        self._bound_port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def bound_port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("MonitorServer.start() has not run")
        return self._bound_port

    @property
    def url(self) -> str:
        """The dashboard's address (with the token, when there is one)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
        return f"http://{host}:{self.bound_port}/" + (f"?token={quote(self.token)}" if self.token else "")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> "MonitorServer":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # -- HTTP ---------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(_READ_TIMEOUT_S):
                    req = await self._read(reader)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                await self._send(writer, 400, {"error": "malformed or incomplete HTTP request"})
                return
            if req is None:
                return
            status, body, ctype, extra = self._route(req)
            await self._send(writer, status, body, ctype, extra)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, asyncio.CancelledError):
                pass

    async def _read(self, reader: asyncio.StreamReader) -> _Request | None:
        line = await reader.readline()
        if not line:
            return None
        parts = line.decode("latin-1").strip().split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise ValueError("bad request line")
        method, target = parts[0].upper(), parts[1]
        headers: dict[str, str] = {}
        for _ in range(100):
            h = await reader.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            name, sep, value = h.decode("latin-1").partition(":")
            if not sep:
                raise ValueError("bad header line")
            headers[name.strip().lower()] = value.strip()
        else:
            raise ValueError("too many headers")
        length = int(headers.get("content-length", "0") or 0)
        if length < 0 or length > _MAX_BODY:
            raise ValueError("body too large")
        body = await reader.readexactly(length) if length else b""
        url = urlsplit(target)
        return _Request(method, url.path or "/", parse_qs(url.query), headers, body)

    async def _send(self, writer: asyncio.StreamWriter, status: int, body: Any,
                    ctype: str = "application/json", extra: dict[str, str] | None = None) -> None:
        if isinstance(body, (dict, list)):
            data = json.dumps(body, allow_nan=False, default=str).encode()
        elif isinstance(body, str):
            data = body.encode("utf-8")
        else:
            data = bytes(body)
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}", f"Content-Type: {ctype}",
                f"Content-Length: {len(data)}", "Connection: close", "X-Content-Type-Options: nosniff",
                "Cache-Control: " + ("max-age=3600" if ctype.startswith("text/javascript") else "no-store")]
        head += [f"{k}: {v}" for k, v in (extra or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
        await writer.drain()

    def _authorized(self, req: _Request) -> bool:
        if self.token is None:
            return True
        given = (req.headers.get("x-sprout-token")
                 or (req.headers.get("authorization", "")[7:] if req.headers.get("authorization", "").lower().startswith("bearer ") else "")
                 or (req.query.get("token") or [""])[0])
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _route(self, req: _Request) -> tuple[int, Any, str, dict[str, str] | None]:
        if not self._authorized(req):
            return 401, {"error": "this monitor needs its token: add ?token=... to the URL or send "
                                  "an X-Sprout-Token header"}, "application/json", None
        routes = {
            "/": ("GET", self._dashboard), "/index.html": ("GET", self._dashboard),
            "/static/plotly.min.js": ("GET", self._plotly), "/api/status": ("GET", self._status),
            "/api/metrics": ("GET", self._metrics), "/metrics": ("GET", self._prometheus),
            "/api/stop": ("POST", self._stop),
        }
        route = routes.get(req.path)
        if route is None:
            return 404, {"error": f"no such endpoint {req.path!r}", "endpoints": sorted(routes)}, "application/json", None
        method, fn = route
        if req.method != method:
            return 405, {"error": f"{req.path} takes {method}"}, "application/json", {"Allow": method}
        try:
            return fn(req)
        except Exception as exc:  # a monitor bug must not take the run down
            return 500, {"error": f"{type(exc).__name__}: {exc}"}, "application/json", None

    def _dashboard(self, req: _Request) -> tuple[int, Any, str, None]:
        tmpl = resources.files("sprout_harness.monitor").joinpath("dashboard.html").read_text(encoding="utf-8")
        page = (tmpl.replace("__TOKEN_JSON__", json.dumps(self.token).replace("<", "\\u003c"))
                .replace("__TOKEN_QUERY__", f"?token={quote(self.token)}" if self.token else "")
                .replace("__POLL_MS__", str(int(self.poll_ms))))
        return 200, page, "text/html; charset=utf-8", None

    def _plotly(self, req: _Request) -> tuple[int, Any, str, None]:
        return 200, plotly_js(), "text/javascript; charset=utf-8", None

    def _status(self, req: _Request) -> tuple[int, Any, str, None]:
        return 200, self.state.status_dict(), "application/json", None

    def _metrics(self, req: _Request) -> tuple[int, Any, str, None]:
        return 200, self.state.metrics_dict(), "application/json", None

    def _prometheus(self, req: _Request) -> tuple[int, Any, str, None]:
        return 200, exposition(self.registry), CONTENT_TYPE, None

    def _stop(self, req: _Request) -> tuple[int, Any, str, None]:
        ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return 415, {"error": "POST /api/stop needs Content-Type: application/json"}, "application/json", None
        if self.state.status_dict()["terminal"]:
            return 409, {"stopping": False, "error": f"the run already ended ({self.state.status})"}, "application/json", None
        ok = self.state.request_stop("stopped from the monitor")
        if not ok:
            return 409, {"stopping": False, "error": "the run cannot be stopped now"}, "application/json", None
        return 202, {"stopping": True, "status": self.state.status}, "application/json", None
