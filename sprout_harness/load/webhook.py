"""A local webhook receiver (HTTP/1.1 on 127.0.0.1) for trigger scenarios and tests.

HTTP comes from ``sprout_harness.httpserve`` (asyncio streams): requests with a
Content-Length body (what webhook senders send), keep-alive connections that stay open
while the sender keeps them. Every request is recorded with its `perf_counter_ns` arrival
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

from sprout_harness.httpserve import HTTPServer, Request, Response

# (status) or (status, delay before answering in seconds)
Reply = Union[int, tuple[int, float]]
Responder = Callable[[dict[str, Any], int], Union[Reply, Awaitable[Reply]]]

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

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, respond: Responder | None = None, id_field: str = "delivery_id"
    ) -> None:
        self.host = host
        self.port = port
        self.respond = respond or _ok
        self.id_field = id_field
        self.requests: list[Received] = []
        self.accepted: dict[str, Received] = {}
        self.duplicates = 0
        self._attempts: dict[str, int] = {}
        # No idle timeout: a sender's pooled connection must not be closed under it.
        self._http = HTTPServer(self._serve, max_body=_MAX_BODY, idle_timeout_s=None)
        self._changed = asyncio.Event()

    @property
    def url(self) -> str:
        if not self._http.serving:
            raise RuntimeError("WebhookReceiver is not started; await start() (or use `async with`) first")
        return f"http://{self.host}:{self.port}/hook"

    async def start(self) -> str:
        self.port = await self._http.start(self.host, self.port)
        return self.url

    async def close(self) -> None:
        await self._http.close()

    async def __aenter__(self) -> WebhookReceiver:
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

    async def _serve(self, req: Request) -> Response | None:
        received_ns = time.perf_counter_ns()
        did, body, status = await self._handle(req.body)
        if req.client_gone():  # the sender hung up while we stalled: not delivered, nothing to answer
            self._record(Received(did, body, received_ns, 499))
            return None
        # No await between this and the server writing the answer: a waiter sees it answered.
        self._record(Received(did, body, received_ns, status))
        return Response(status)

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


__all__ = ["Received", "Responder", "Reply", "WebhookReceiver"]
