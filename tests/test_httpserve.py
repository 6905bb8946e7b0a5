"""The shared HTTP/1.1 server (monitor and webhook receiver) over raw sockets on 127.0.0.1:
routing, keep-alive, bounded reads answered 400/408/413/431/501, handler errors, hang-ups."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from sprout_harness.httpserve import HTTPServer, Request, Response, Router, json_response


async def read_response(reader: asyncio.StreamReader) -> tuple[int, str, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    version, status, reason = head[0].split(" ", 2)
    assert version == "HTTP/1.1"
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in head[1:] if ln)}
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status), reason, headers, body


class Client:
    """One raw connection: send bytes, read answers, see the server hang up."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def ask(self, data: bytes) -> tuple[int, str, dict[str, str], bytes]:
        await self.send(data)
        return await asyncio.wait_for(read_response(self.reader), 5)

    async def closed_by_server(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 5) == b""


def get(path: str, extra: str = "", version: str = "HTTP/1.1") -> bytes:
    return f"GET {path} {version}\r\nHost: x\r\n{extra}\r\n".encode()


@pytest.fixture
async def served() -> AsyncIterator:
    servers: list[HTTPServer] = []
    clients: list[Client] = []

    async def make(handler, **kw) -> tuple[HTTPServer, object]:  # type: ignore[no-untyped-def]
        server = HTTPServer(handler, **kw)
        port = await server.start("127.0.0.1", 0)
        servers.append(server)

        async def connect() -> Client:
            c = Client(*await asyncio.open_connection("127.0.0.1", port))
            clients.append(c)
            return c

        return server, connect

    yield make
    for c in clients:
        c.writer.close()
    for s in servers:
        await s.close()


def echo(req: Request) -> Response:
    return json_response(
        200,
        {
            "method": req.method,
            "path": req.path,
            "query": req.query,
            "body": req.body.decode(),
            "type": req.content_type,
        },
    )


async def test_router_answers_404_405_and_dispatches(served):
    router = Router()
    router.add("GET", "/a", echo)
    router.add("POST", "/a", echo)

    async def later(req: Request) -> Response:
        await asyncio.sleep(0)
        return json_response(200, {"async": True})

    router.add("GET", "/b", later)
    _, connect = await served(router)
    c = await connect()
    status, reason, headers, body = await c.ask(get("/a?x=1&x=2"))
    assert (status, reason) == (200, "OK") and headers["content-type"] == "application/json"
    assert json.loads(body) == {"method": "GET", "path": "/a", "query": {"x": ["1", "2"]}, "body": "", "type": ""}
    status, _, _, body = await c.ask(
        b'POST /a HTTP/1.1\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 7\r\n\r\n{"k":1}'
    )
    assert status == 200 and json.loads(body)["body"] == '{"k":1}' and json.loads(body)["type"] == "application/json"
    assert json.loads((await c.ask(get("/b")))[3]) == {"async": True}
    status, reason, _, body = await c.ask(get("/nope"))
    assert (status, reason) == (404, "Not Found") and json.loads(body)["endpoints"] == ["/a", "/b"]
    status, reason, headers, body = await c.ask(b"DELETE /a HTTP/1.1\r\n\r\n")
    assert (status, reason, headers["allow"]) == (405, "Method Not Allowed", "GET, POST")
    assert "takes GET or POST" in json.loads(body)["error"]


async def test_keep_alive_and_close(served):
    _, connect = await served(echo, headers={"X-Content-Type-Options": "nosniff"})
    c = await connect()
    for _ in range(3):  # one connection, several requests; two of them sent in one write
        status, _, headers, _ = await c.ask(get("/x"))
        assert (
            status == 200 and headers["connection"] == "keep-alive" and headers["x-content-type-options"] == "nosniff"
        )
    await c.send(get("/1") + get("/2"))
    assert [json.loads((await read_response(c.reader))[3])["path"] for _ in range(2)] == ["/1", "/2"]
    status, _, headers, _ = await c.ask(get("/x", "Connection: close\r\n"))
    assert status == 200 and headers["connection"] == "close" and await c.closed_by_server()

    old = await connect()  # HTTP/1.0 closes unless it asks to keep the connection
    assert (await old.ask(get("/x", version="HTTP/1.0")))[2]["connection"] == "close"
    assert await old.closed_by_server()
    kept = await connect()
    assert (await kept.ask(get("/x", "Connection: keep-alive\r\n", "HTTP/1.0")))[2]["connection"] == "keep-alive"

    _, connect_once = await served(echo, keep_alive=False)
    once = await connect_once()
    assert (await once.ask(get("/x")))[2]["connection"] == "close" and await once.closed_by_server()


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", 431),  # one header line past the head limit
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n", 431),  # a request line past it
        (b"GET / HTTP/1.1\r\n" + (b"X-A: " + b"b" * 500 + b"\r\n") * 10 + b"\r\n", 431),  # lines adding up past it
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(21)) + b"\r\n", 431),  # too many fields
        (b"POST / HTTP/1.1\r\nContent-Length: 1000001\r\n\r\n", 413),  # refused before the body is read
        (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 12abc\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 501),
        (b"NONSENSE\r\n\r\n", 400),
        (b"GET / SPDY/3\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
    ],
)
async def test_hostile_requests_are_refused_and_closed(served, request_bytes, status):
    seen: list[Request] = []

    def handler(req: Request) -> Response:
        seen.append(req)
        return Response(200)

    _, connect = await served(handler, max_head=4096, max_headers=20, max_body=1_000_000)
    c = await connect()
    got, reason, headers, body = await c.ask(request_bytes)
    assert got == status, body
    assert reason and headers["connection"] == "close" and "error" in json.loads(body)
    assert await c.closed_by_server()
    assert seen == []  # the handler never saw it


async def test_a_refused_body_still_gets_its_answer(served):
    _, connect = await served(echo, max_body=1000)
    c = await connect()
    # The client sends the whole body before it reads: closing on it unread would reset the
    # connection and lose the 413, so the server drops it for a moment first.
    c.writer.write(b"POST / HTTP/1.1\r\nContent-Length: 3000000\r\n\r\n" + b"x" * 3_000_000)
    status, _, headers, _ = await asyncio.wait_for(read_response(c.reader), 10)
    assert status == 413 and headers["connection"] == "close"


async def test_a_body_at_the_limit_is_read_and_expect_continue_is_answered(served):
    _, connect = await served(lambda req: Response(200, str(len(req.body)).encode(), "text/plain"), max_body=1000)
    c = await connect()
    assert (await c.ask(b"POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000))[3] == b"1000"
    await c.send(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    assert await asyncio.wait_for(c.reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert (await c.ask(b"abc"))[3] == b"3"


async def test_handler_errors_answer_500_and_the_connection_goes_on(served):
    def handler(req: Request) -> Response:
        if req.path == "/boom":
            raise KeyError("oops")
        return Response(204)

    _, connect = await served(handler)
    c = await connect()
    status, reason, _, body = await c.ask(get("/boom"))
    assert (status, reason) == (500, "Internal Server Error") and json.loads(body) == {"error": "KeyError: 'oops'"}
    status, reason, headers, body = await c.ask(get("/fine"))
    assert (status, reason, body) == (204, "No Content", b"") and "content-type" not in headers


async def test_slow_requests_time_out_and_idle_connections_close(served):
    _, connect = await served(echo, read_timeout_s=0.2, idle_timeout_s=0.3)
    c = await connect()
    await c.send(b"GET / HTTP/1.1\r\nX-Slow: ")  # a request that never ends
    status, reason, _, _ = await asyncio.wait_for(read_response(c.reader), 5)
    assert (status, reason) == (408, "Request Timeout") and await c.closed_by_server()
    idle = await connect()
    assert (await idle.ask(get("/")))[0] == 200
    assert await idle.closed_by_server()  # nothing more within idle_timeout_s: closed without an answer


async def test_close_ends_idle_and_busy_connections(served):
    started = asyncio.Event()

    async def handler(req: Request) -> Response:
        if req.path == "/stall":
            started.set()
            await asyncio.sleep(60)
        return Response(200)

    server, connect = await served(handler, idle_timeout_s=None)
    idle, busy = await connect(), await connect()
    assert (await idle.ask(get("/")))[0] == 200
    await busy.send(get("/stall"))
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(server.close(), 5)
    assert await idle.closed_by_server() and await busy.closed_by_server()
    assert not server.serving


async def test_a_handler_sees_the_client_hang_up_and_may_answer_nothing(served):
    outcome: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    async def handler(req: Request) -> Response | None:
        await asyncio.sleep(0.3)
        outcome.set_result(req.client_gone())
        return None if req.client_gone() else Response(200)

    _, connect = await served(handler)
    c = await connect()
    await c.send(get("/"))
    c.writer.close()
    assert await asyncio.wait_for(outcome, 5) is True
