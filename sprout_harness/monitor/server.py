"""The monitor's HTTP server: dashboard, JSON API, Prometheus text, graceful stop.

HTTP comes from ``sprout_harness.httpserve`` (asyncio streams, keep-alive, bounded reads):
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

import hmac
import ipaddress
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import quote

import jinja2

from sprout_harness.httpserve import HTTPServer, Request, Response, Router, json_response, text_response
from sprout_harness.monitor.prometheus import CONTENT_TYPE, exposition, make_registry
from sprout_harness.monitor.state import RunState
from sprout_harness.reports.assets import plotly_js

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9090
# Every answer: no MIME sniffing, and live figures are never cached (plotly.js overrides it).
_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


@lru_cache(maxsize=1)
def _dashboard_template() -> jinja2.Template:
    """dashboard.html as an autoescaped jinja2 template (the token reaches its script via ``tojson``)."""
    text = resources.files("sprout_harness.monitor").joinpath("dashboard.html").read_text(encoding="utf-8")
    return jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(text)


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
        raise MonitorConfigError(
            f"monitor address {text!r}: port {port_text!r} is not a number; write it like 127.0.0.1:9090"
        ) from None
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
            "elsewhere needs --monitor-public and --monitor-token TOKEN (or bind 127.0.0.1)"
        )
    if not token:
        raise MonitorConfigError(
            f"--monitor-public on {host!r} needs a token: pass --monitor-token TOKEN (every request must then carry it)"
        )


class MonitorServer:
    """Serves one ``RunState``; ``await start()`` then ``url``; ``await close()``."""

    def __init__(
        self,
        state: RunState,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        public: bool = False,
        token: str | None = None,
        poll_ms: int = 1000,
    ) -> None:
        check_exposure(host, public, token)
        self.state = state
        self.host = host
        self.port = port
        self.token = token or None
        self.poll_ms = poll_ms
        self.registry = make_registry(state)
        self._router = Router()
        for method, path, handler in (
            ("GET", "/", self._dashboard),
            ("GET", "/index.html", self._dashboard),
            ("GET", "/static/plotly.min.js", self._plotly),
            ("GET", "/api/status", self._status),
            ("GET", "/api/metrics", self._metrics),
            ("GET", "/metrics", self._prometheus),
            ("POST", "/api/stop", self._stop),
        ):
            self._router.add(method, path, handler)
        self._http = HTTPServer(self._handle, headers=_HEADERS)
        self._bound_port: int | None = None

    async def start(self) -> MonitorServer:
        try:
            self._bound_port = await self._http.start(self.host, self.port)
        except OSError as exc:
            raise MonitorConfigError(
                f"monitor cannot listen on {self.host}:{self.port} ({exc.strerror or exc}); "
                "pick another --monitor-addr (port 0 picks a free one)"
            ) from None
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
        await self._http.close()

    async def __aenter__(self) -> MonitorServer:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # -- HTTP ---------------------------------------------------------------------------------

    async def _handle(self, req: Request) -> Response | None:
        if not self._authorized(req):
            return json_response(
                401,
                {"error": "this monitor needs its token: add ?token=... to the URL or send an X-Sprout-Token header"},
            )
        return await self._router(req)

    def _authorized(self, req: Request) -> bool:
        if self.token is None:
            return True
        given = (
            req.headers.get("x-sprout-token")
            or (
                req.headers.get("authorization", "")[7:]
                if req.headers.get("authorization", "").lower().startswith("bearer ")
                else ""
            )
            or (req.query.get("token") or [""])[0]
        )
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _dashboard(self, req: Request) -> Response:
        page = _dashboard_template().render(
            token=self.token, poll_ms=int(self.poll_ms), token_query=f"?token={quote(self.token)}" if self.token else ""
        )
        return text_response(200, page, "text/html; charset=utf-8")

    def _plotly(self, req: Request) -> Response:
        # The library only changes with the installed plotly: let the browser keep it.
        return text_response(200, plotly_js(), "text/javascript; charset=utf-8", {"Cache-Control": "max-age=3600"})

    def _status(self, req: Request) -> Response:
        return json_response(200, self.state.status_dict())

    def _metrics(self, req: Request) -> Response:
        return json_response(200, self.state.metrics_dict())

    def _prometheus(self, req: Request) -> Response:
        return Response(200, exposition(self.registry), CONTENT_TYPE)

    def _stop(self, req: Request) -> Response:
        if req.content_type != "application/json":
            return json_response(415, {"error": "POST /api/stop needs Content-Type: application/json"})
        if self.state.status_dict()["terminal"]:
            return json_response(409, {"stopping": False, "error": f"the run already ended ({self.state.status})"})
        if not self.state.request_stop("stopped from the monitor"):
            return json_response(409, {"stopping": False, "error": "the run cannot be stopped now"})
        return json_response(202, {"stopping": True, "status": self.state.status})
