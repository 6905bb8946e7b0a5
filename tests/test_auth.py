"""Identity bound at hello: a server with an authenticator serves each connection as the user its
token maps to, whatever its requests say, over a real WebSocket and through `loam serve --auth`."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import connect

from loam.auth import TokenFileAuthenticator, create_authenticator
from loam.errors import AuthError, PolicyDenied, ValidationError
from loam.node.api import Context
from loam.node.durable import DurableNode
from loam.node.ephemeral import EphemeralNode
from loam.policy import create_policy
from loam.protocol import codec
from loam.protocol import messages as m
from loam.storage import create_engine
from loam.transport.websocket import NodeServer, WebSocketConnector

GUARD_S = 10.0  # hang guard


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    f = tmp_path / "tokens"
    f.write_text("# token  user\nt-alice alice\n\nt-bob   bob\n")
    return f


@pytest.fixture
async def served(tokens: Path) -> AsyncIterator[tuple[DurableNode, NodeServer]]:
    node = DurableNode(create_engine("memory"), policy=create_policy("owner", read="owner"))
    await node.start()
    server = await NodeServer(node, authenticator=TokenFileAuthenticator(tokens)).start()
    try:
        yield node, server
    finally:
        await server.close()
        await node.close()


async def _ephemeral(url: str, token: str | None) -> EphemeralNode:
    e = EphemeralNode(WebSocketConnector(url, token=token, request_timeout=GUARD_S))
    await e.start()
    return e


async def test_the_token_decides_who_the_connection_is(served: tuple[DurableNode, NodeServer]) -> None:
    node, server = served
    bob = await _ephemeral(server.url, "t-bob")
    try:
        # no user in the request: served as bob, so the owner policy accepts bob's entity
        (b,), _ = await bob.create("docs", [{"owner": "bob", "n": 1}], Context())
        assert (await node.get("docs", b, Context(user="bob"))).props["owner"] == "bob"
        # claiming to be alice is refused, and nothing is written or read as her
        (a,), _ = await node.create("docs", [{"owner": "alice", "secret": "s"}], Context(user="alice"))
        with pytest.raises(PolicyDenied, match="authenticated as 'bob'"):
            await bob.create("docs", [{"owner": "alice", "n": 2}], Context(user="alice"))
        with pytest.raises(PolicyDenied, match="authenticated as 'bob'"):
            await bob.fetch("docs", "n >= 0", Context(user="alice"))
        assert await bob.get("docs", a, Context()) is None
        assert [e.props["owner"] for e in await node.fetch("docs", "", Context(user="alice"))] == ["alice"]
    finally:
        await bob.close()


@pytest.mark.parametrize("token", ["t-mallory", None, "t-alice "])
async def test_an_unknown_or_missing_token_is_refused_at_hello(
    served: tuple[DurableNode, NodeServer], token: str | None
) -> None:
    _, server = served
    async with connect(server.url, compression=None, proxy=None) as ws:
        await ws.send(codec.encode(m.Hello(1, token, "mallory")))
        err = codec.decode(await asyncio.wait_for(ws.recv(), GUARD_S))
        assert isinstance(err, m.Error) and err.code == "auth" and "--auth" in err.message
        await asyncio.wait_for(ws.wait_closed(), GUARD_S)
        assert ws.close_code == 1008
    e = EphemeralNode(WebSocketConnector(server.url, token=token, request_timeout=GUARD_S))
    with pytest.raises(AuthError):
        await e.start()
    await e.close()


async def test_a_raw_request_switching_users_gets_an_error_and_the_connection_stays(
    served: tuple[DurableNode, NodeServer],
) -> None:
    node, server = served
    async with connect(server.url, compression=None, proxy=None) as ws:
        await ws.send(codec.encode(m.Hello(1, "t-bob", "raw")))
        assert isinstance(codec.decode(await asyncio.wait_for(ws.recv(), GUARD_S)), m.Welcome)
        tx = {"commit_id": "raw:1", "node_id": "raw", "clock": 1, "ops": [["c", "docs", "d1", {"owner": "alice"}]]}
        await ws.send(
            orjson.dumps({"t": "commit", "rid": 2, "tx": tx, "ctx": {"user": "alice", "data": {}}, "sent_ns": 0})
        )
        err = codec.decode(await asyncio.wait_for(ws.recv(), GUARD_S))
        assert isinstance(err, m.Error) and err.rid == 2 and err.code == "denied"
        await ws.send(codec.encode(m.Ping(3)))
        assert isinstance(codec.decode(await asyncio.wait_for(ws.recv(), GUARD_S)), m.Pong)
    with pytest.raises(ValidationError, match="unknown collection 'docs'"):  # nothing was ever written
        await node.get("docs", "d1", Context(user="alice"))


@pytest.mark.parametrize(
    ("content", "says"), [("", "holds no"), ("t1 alice extra\n", "line 1"), ("t1 alice\nt1 bob\n", "twice")]
)
def test_a_bad_token_file_is_refused(tmp_path: Path, content: str, says: str) -> None:
    f = tmp_path / "tokens"
    f.write_text(content)
    with pytest.raises(ValidationError, match=says):
        TokenFileAuthenticator(f)
    with pytest.raises(ValidationError, match="expected token-file:PATH"):
        create_authenticator("ldap:server")


def test_loam_serve_auth_end_to_end(tokens: Path, tmp_path: Path) -> None:
    serve = [sys.executable, "-m", "loam", "serve", "--storage", "memory", "--policy", "owner"]
    for bad in (["--auth", "token-file:" + str(tmp_path / "missing")], ["--auth", "kerberos"]):
        proc = subprocess.run([*serve, *bad], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(
            "python -m loam serve: error:"
        ), proc.stderr
    proc = subprocess.Popen([*serve, "--auth", f"token-file:{tokens}"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]

        async def use() -> None:
            alice = await _ephemeral(url, "t-alice")
            try:
                (a,), _ = await alice.create("docs", [{"owner": "alice", "n": 1}], Context())
                assert (await alice.get("docs", a, Context())).props["owner"] == "alice"
                with pytest.raises(PolicyDenied):
                    await alice.update("docs", a, {"n": 2}, Context(user="bob"))
            finally:
                await alice.close()
            with pytest.raises(AuthError):
                await _ephemeral(url, "t-nobody")

        asyncio.run(use())
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
