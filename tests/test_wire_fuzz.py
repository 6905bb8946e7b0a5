"""A wire fuzzer against a real `python -m loam serve --storage leveldb`.

Hypothesis sends, on fresh connections: garbage bytes, malformed JSON, invalid UTF-8 in
text frames, non-object JSON, unknown `t` values, requests before the hello and after
a rejected message, hellos of the wrong version and types, every request type (commit,
get, fetch, subscribe, unsubscribe, ping) with fields missing, added, retyped or
replaced by huge, negative or deeply nested values, oversized frames (over the
`welcome.max_size` the server reports), ids and collection names outside the documented
syntax, and query text and query objects that do not parse.

Every exchange must end in an answer to each frame or a close with 1008/1009 (1007 for a
text frame that is not UTF-8, which `websockets` refuses before loam sees it); a
connection-level error is followed by a 1008/1009 close, no reply is `internal`, and a
hang guard bounds each exchange. A well-behaved ephemeral node stays connected through
the whole module, and after each test its commits are acked and its live query gets
their notifications; the server process must be alive and its log free of tracebacks.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from loam.errors import ProtocolError
from loam.model import collection_error, id_error
from loam.node.api import Context
from loam.node.ephemeral import EphemeralNode
from loam.protocol import codec
from loam.protocol import messages as m
from loam.transport.websocket import WebSocketConnector

GUARD_S = 10.0  # a hang guard per exchange, not a performance bound
MAX_SIZE = 65536  # the server's message limit (small, so oversized frames are cheap)
SENTINEL = 987_654_321  # rid of the ping that ends every exchange still open
CONNECTION_CODES = frozenset({"malformed", "too_large", "auth", "version", "unexpected"})
SERVER_TYPES = (m.Welcome, m.Ack, m.GetResult, m.FetchResult, m.Subscribed, m.Unsubscribed, m.Notify, m.Pong, m.Error)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
CTX: dict[str, Any] = {"user": None, "data": {}}


# --- the server and a client that behaves --------------------------------------------


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[str]
    log: Path

    def check(self) -> None:
        assert self.proc.poll() is None, "the server died under the fuzzer"
        text = self.log.read_text()
        assert "Traceback" not in text, text[-4000:]


class Bystander:
    """An ephemeral node with a live query, on its own event loop in a thread, connected
    for the whole module while the fuzzer runs beside it."""

    def __init__(self, url: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.node = EphemeralNode(WebSocketConnector(url, request_timeout=GUARD_S))
        self.n = 0
        self.lq: Any = self.run(self._start())

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(3 * GUARD_S)

    async def _start(self) -> Any:
        await self.node.start()
        await self.node.create("fuzzed", [{"n": 0}], Context())  # a collection the fuzzer reads
        await self.node.create("bystander", [{"n": 0}], Context())
        return await self.node.subscribe("bystander", "n >= 0", Context())

    def check(self) -> None:
        """Two commits are acked and both arrive as notifications of the live query."""
        self.n += 1
        self.run(self._check(self.n))

    async def _check(self, k: int) -> None:
        ids, _ = await self.node.create("bystander", [{"n": k}, {"n": k + 1000}], Context())
        got: set[str] = set()
        while not set(ids) <= got:
            got |= {e.id for e in (await self.lq.next(timeout=GUARD_S)).added}
        fetched = await self.node.fetch("bystander", f"n >= {k} AND n <= {k}", Context())
        assert [e.id for e in fetched] == ids[:1]

    def close(self) -> None:
        try:
            self.run(self.node.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(GUARD_S)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("fuzz")
    log = tmp / "server.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "loam",
                "serve",
                "--storage",
                "leveldb",
                "--path",
                str(tmp / "db"),
                "--max-message-size",
                str(MAX_SIZE),
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("loam serving on ws://"), line
        srv = Server(line.split()[-1], proc, log)
        yield srv
        srv.check()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


@pytest.fixture(scope="module")
def bystander(server: Server) -> Iterator[Bystander]:
    b = Bystander(server.url)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(autouse=True)
def _unaffected(server: Server, bystander: Bystander) -> Iterator[None]:
    """After every test: the server is alive, logged no traceback, and the bystander works."""
    yield
    server.check()
    bystander.check()


# --- one exchange ----------------------------------------------------------------------


@dataclass
class Frame:
    data: bytes
    text: bool = False  # sent as a text frame, bytes as they are (maybe not UTF-8)


@dataclass
class Outcome:
    replies: list[m.Message] = field(default_factory=list)  # everything but notify, in order
    close: int | None = None  # the close code, or None if the connection stayed open

    def errors(self) -> list[m.Error]:
        return [r for r in self.replies if isinstance(r, m.Error)]


async def exchange(url: str, frames: list[Frame], hello: bool = True) -> Outcome:
    """Send `frames` (after a hello if `hello`), then a ping; collect the replies until
    every frame and the ping are answered, or the server closes. Checks the invariants
    that hold whatever was sent."""
    out = Outcome()
    async with connect(url, compression=None, proxy=None, max_size=None, open_timeout=GUARD_S) as ws:
        if hello:
            await ws.send(codec.encode(m.Hello(1, None, "fuzz")))
            welcome = codec.decode(await asyncio.wait_for(ws.recv(), GUARD_S))
            assert isinstance(welcome, m.Welcome) and welcome.max_size == MAX_SIZE, welcome
        try:
            for f in frames:
                await ws.send(f.data, text=f.text)
            await ws.send(codec.encode(m.Ping(SENTINEL)))
            # Each frame gets one reply (requests may be answered out of order, the ping
            # inline before them), or the connection is closed.
            while len(out.replies) < len(frames) + 1:
                try:
                    raw = await asyncio.wait_for(ws.recv(), GUARD_S)
                except TimeoutError:
                    raise AssertionError(
                        f"no answer within {GUARD_S} s; got {out.replies} for {[f.data[:120] for f in frames]}"
                    ) from None
                msg = codec.decode(raw, 1 << 30)  # whatever the server writes is protocol
                assert isinstance(msg, SERVER_TYPES), msg
                if not isinstance(msg, m.Notify):
                    out.replies.append(msg)
        except ConnectionClosed as exc:
            assert exc.rcvd is not None, "the server dropped the connection without a close frame"
            out.close = exc.rcvd.code
    for e in out.errors():
        assert e.code != "internal", e  # a traceback on the server
    if out.close is None:  # a reply too large to send is `too_large` for its request only
        assert not any(e.code in CONNECTION_CODES - {"too_large"} for e in out.errors()), out
        assert any(isinstance(r, m.Pong) and r.rid == SENTINEL for r in out.replies), out
    elif out.close == 1007:
        assert any(f.text for f in frames), out  # websockets' own answer to text that is not UTF-8
    else:
        assert out.close in (1008, 1009), out
        if out.close == 1008:  # loam's session closes after a connection-level error
            assert out.errors(), out
            # or after a hello (sent by the test: `hello` False) naming a database it refuses
            last = out.errors()[-1].code
            assert last in CONNECTION_CODES or (last == "validation" and not hello), out
    return out


def run(url: str, frames: list[Frame], hello: bool = True) -> Outcome:
    return asyncio.run(asyncio.wait_for(exchange(url, frames, hello), 6 * GUARD_S))


# --- JSON with anything in it ----------------------------------------------------------


def dumps(v: Any) -> bytes:
    """JSON of `v`, integers of any size written as they are (orjson refuses > 64 bits);
    `orjson.Fragment`s (deep nesting, see `nested`) are written verbatim."""
    return orjson.dumps(_big(v))


def _big(v: Any) -> Any:
    if type(v) is int and not -(2**63) <= v < 2**64:
        return orjson.Fragment(str(v).encode())
    if type(v) is dict:
        return {k: _big(x) for k, x in v.items()}
    if type(v) in (list, tuple):
        return [_big(x) for x in v]
    return v


BOUNDARY_INTS = [
    -1,
    -(2**31),
    2**31,
    2**53 - 1,
    2**53,
    2**62,
    2**62 + 1,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    -(2**63),
    -(2**63) - 1,
    10**30,
    -(10**30),
    10**400,
]
huge_ints = st.one_of(st.sampled_from(BOUNDARY_INTS), st.integers(min_value=-(2**70), max_value=2**70))
scalars = st.one_of(
    st.none(), st.booleans(), huge_ints, st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=8), c, max_size=4)),
    max_leaves=20,
)


def nested(depth: int, leaf: Any = 1, as_list: bool = True) -> orjson.Fragment:
    """`leaf` inside `depth` arrays (or objects), as raw JSON: deeper than orjson writes."""
    open_, close = (b"[", b"]") if as_list else (b'{"a":', b"}")
    return orjson.Fragment(open_ * depth + dumps(leaf) + close * depth)


def nots(depth: int) -> orjson.Fragment:
    """A query expression of `depth` nested `not`s."""
    return orjson.Fragment(b'["not",' * depth + b'["cmp","n","=",1]' + b"]" * depth)


deep_values = st.builds(nested, st.sampled_from([65, 200, 900, 1100, 3000]), st.just(1), st.booleans())
bad_names = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        ["", " ", "a/b", "../x", "a\x00b", "\n", "a b", "-x", ".x", ":x", "x" * 129, "y" * 65, "é", "a\\b", "\x7f"]
    ),
)
hostile = st.one_of(
    json_values,
    huge_ints,
    deep_values,
    bad_names,
    st.builds(lambda n: "z" * n, st.sampled_from([MAX_SIZE // 2, MAX_SIZE + 1])),
)


def template(kind: str, rid: int) -> dict[str, Any]:
    """A well-formed client message of `kind`."""
    tx = {"commit_id": f"fuzz:{rid}", "node_id": "fuzz", "clock": 1, "ops": [["c", "fuzzed", f"f{rid}", {"n": 1}]]}
    ast = {
        "where": ["and", [["cmp", "n", ">=", 0], ["in", "n", [1, 2], True]]],
        "order_by": [["n", False]],
        "limit": 3,
        "text": None,
    }
    return {
        "hello": {"t": "hello", "rid": rid, "token": None, "node_id": "fuzz", "version": 1},
        "commit": {"t": "commit", "rid": rid, "tx": tx, "ctx": CTX},
        "get": {"t": "get", "rid": rid, "collection": "fuzzed", "id": "f1", "ctx": CTX},
        "fetch": {"t": "fetch", "rid": rid, "collection": "fuzzed", "query": "n >= 0 ORDER BY n LIMIT 3", "ctx": CTX},
        "fetch_ast": {"t": "fetch", "rid": rid, "collection": "fuzzed", "query": ast, "ctx": CTX},
        "subscribe": {"t": "subscribe", "rid": rid, "collection": "fuzzed", "query": "n >= 0", "ctx": CTX},
        "subscribe_ast": {"t": "subscribe", "rid": rid, "collection": "fuzzed", "query": ast, "ctx": CTX},
        "unsubscribe": {"t": "unsubscribe", "rid": rid, "query_id": "q1"},
        "ping": {"t": "ping", "rid": rid},
    }[kind] | {"sent_ns": 0}


REQUESTS = ["commit", "get", "fetch", "fetch_ast", "subscribe", "subscribe_ast", "unsubscribe", "ping"]


def _paths(v: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in `v` a mutation can hit (dict keys and list indexes), the root excluded."""
    items = v.items() if type(v) is dict else enumerate(v) if type(v) is list else ()
    for k, x in items:
        yield at + (k,)
        yield from _paths(x, at + (k,))


def _copy(v: Any) -> Any:
    return orjson.loads(orjson.dumps(v))


@st.composite
def mutated(draw: st.DrawFn, kinds: list[str], rid: int = 7) -> dict[str, Any]:
    """A template of one of `kinds` with 1-3 fields deleted, added or replaced."""
    msg: dict[str, Any] = _copy(template(draw(st.sampled_from(kinds)), rid))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(msg))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = msg
        for k in path[:-1]:
            parent = parent[k]
        action = draw(st.sampled_from(["delete", "replace", "replace", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "replace":
            parent[path[-1]] = draw(hostile)
        elif type(parent) is dict:
            parent[draw(st.sampled_from(["extra", "t", "rid", "id", "", "sent_ns", "clock", "database"]))] = draw(
                hostile
            )
        else:
            parent.append(draw(hostile))
    return msg


# --- the properties ----------------------------------------------------------------------


malformed_json = st.one_of(
    st.text(max_size=60).map(str.encode),
    st.lists(
        st.sampled_from(
            [
                "{",
                "}",
                "[",
                "]",
                '"t"',
                ":",
                ",",
                '"ping"',
                '"rid"',
                "1",
                "-",
                "null",
                "tru",
                '"\\u',
                '"\\ud800"',
                "NaN",
                "1e999",
                '"',
                " ",
            ]
        ),
        max_size=20,
    ).map(lambda xs: "".join(xs).encode()),
    st.sampled_from(
        [
            b"",
            b"{",
            b'{"t":"ping","rid":1,"sent_ns":0',
            b'{"t":"ping"}}',
            b"\x00",
            b"[" * 3000,
            b'{"a":' * 2000,
            b'{"t":"ping","rid":1,"sent_ns":0}\x00',
        ]
    ),
)
non_objects = json_values.filter(lambda v: type(v) is not dict).map(dumps)
garbage = st.one_of(st.binary(max_size=300), malformed_json, non_objects)


@FUZZ
@given(data=garbage, as_text=st.booleans(), hello=st.booleans())
def test_garbage_closes_the_connection(server: Server, data: bytes, as_text: bool, hello: bool) -> None:
    out = run(server.url, [Frame(data, as_text)], hello)
    assert out.close in (1007, 1008), out
    if out.close == 1008:
        assert [e.code for e in out.errors()] == ["malformed"], out


@FUZZ
@given(data=st.binary(min_size=1, max_size=200).filter(lambda b: not _utf8(b)), hello=st.booleans())
def test_text_frames_that_are_not_utf8(server: Server, data: bytes, hello: bool) -> None:
    assert run(server.url, [Frame(data, text=True)], hello).close == 1007
    assert run(server.url, [Frame(data)], hello).close == 1008  # the same bytes in a binary frame


def _utf8(b: bytes) -> bool:
    try:
        b.decode()
    except UnicodeDecodeError:
        return False
    return True


@FUZZ
@given(
    t=st.one_of(st.text(max_size=12), json_values).filter(lambda t: not (type(t) is str and t in m.MESSAGE_TYPES)),
    hello=st.booleans(),
)
def test_unknown_types_are_malformed(server: Server, t: Any, hello: bool) -> None:
    out = run(server.url, [Frame(dumps({"t": t, "rid": 3, "sent_ns": 0}))], hello)
    assert out.close == 1008 and [e.code for e in out.errors()] == ["malformed"], out


SERVER_SIDE = ["welcome", "ack", "get_result", "fetch_result", "subscribed", "unsubscribed", "notify", "pong", "error"]


@FUZZ
@given(kind=st.sampled_from(REQUESTS + SERVER_SIDE), hello=st.booleans(), then=st.sampled_from(REQUESTS))
def test_messages_in_the_wrong_state(server: Server, kind: str, hello: bool, then: str) -> None:
    """A request before the hello, a second hello, a server-side message from a client:
    `unexpected` and a 1008 close; nothing sent after it (pipelined) is answered."""
    if kind in SERVER_SIDE:
        first = {"t": kind, "rid": 5, "sent_ns": 0}  # malformed or unexpected, depending on its fields
    elif kind in REQUESTS and hello:
        first = template("hello", 5)
    else:
        first = template(kind, 5)
    out = run(server.url, [Frame(dumps(first)), Frame(dumps(template(then, 6)))], hello)
    assert out.close == 1008, out
    assert len(out.replies) == 1 and isinstance(out.replies[0], m.Error), out
    assert out.replies[0].code in ("unexpected", "malformed"), out
    if kind not in SERVER_SIDE:
        assert out.replies[0].code == "unexpected" and out.replies[0].rid == 5, out


@FUZZ
@given(msg=mutated(["hello"], rid=1))
def test_hello_of_the_wrong_shape(server: Server, msg: dict[str, Any]) -> None:
    out = run(server.url, [Frame(dumps(msg))], hello=False)
    if out.close is None:  # still a hello this server takes (another node_id, a token it ignores)
        assert isinstance(out.replies[0], m.Welcome), out
    elif out.close == 1008:
        assert out.errors()[0].code in ("malformed", "version", "validation", "unexpected"), out


@FUZZ
@given(version=st.one_of(huge_ints, st.integers(-5, 5)).filter(lambda v: v != 1))
def test_hello_of_another_version(server: Server, version: int) -> None:
    out = run(server.url, [Frame(dumps(template("hello", 1) | {"version": version}))], hello=False)
    assert out.close == 1008, out
    # integers of any size are read exactly: never a float that happens to equal 1
    assert [(e.code, e.rid) for e in out.errors()] == [("version", 1)], out


@settings(FUZZ, max_examples=250)
@given(msgs=st.lists(mutated(REQUESTS), min_size=1, max_size=3))
def test_mutated_requests(server: Server, msgs: list[dict[str, Any]]) -> None:
    """Fields missing, extra, retyped, huge, negative, nested: each request is answered
    (a reply or an error naming it), or the connection is closed with 1008/1009."""
    out = run(server.url, [Frame(dumps(msg)) for msg in msgs])
    if out.close is None:
        assert len(out.replies) == len(msgs) + 1, out


@FUZZ
@given(kind=st.sampled_from(REQUESTS), rid=huge_ints.filter(lambda r: not 0 <= r <= m.MAX_RID))
def test_request_ids_out_of_range(server: Server, kind: str, rid: int) -> None:
    out = run(server.url, [Frame(dumps(template(kind, 1) | {"rid": rid}))])
    assert out.close == 1008 and [(e.code, e.rid) for e in out.errors()] == [("malformed", None)], out


@FUZZ
@given(kind=st.sampled_from(REQUESTS), rid=st.integers(0, m.MAX_RID))
def test_request_ids_in_range_are_echoed(server: Server, kind: str, rid: int) -> None:
    out = run(server.url, [Frame(dumps(template(kind, rid)))])
    assert out.close is None and rid in [getattr(r, "rid", None) for r in out.replies], out


@FUZZ
@given(clock=huge_ints)
def test_commit_clocks(server: Server, clock: int) -> None:
    """A clock out of range never gets an ack: negative or beyond 64 bits is malformed,
    above 2**62 (or too far ahead) is refused with `validation`."""
    msg = template("commit", 9)
    msg["tx"] = msg["tx"] | {"clock": clock, "commit_id": f"clock:{clock}"}
    out = run(server.url, [Frame(dumps(msg))])
    codes = [e.code for e in out.errors()]
    if clock < 0:
        assert out.close == 1008 and codes == ["malformed"], out
    elif clock > 2**62:
        assert codes in (["validation"], ["malformed"]) and not any(isinstance(r, m.Ack) for r in out.replies), out


@FUZZ
@given(
    kind=st.sampled_from(["commit", "get", "fetch", "subscribe", "delete", "update"]),
    name=bad_names.filter(bool),
    which=st.sampled_from(["id", "collection"]),
)
def test_ids_and_collections_outside_the_syntax(server: Server, kind: str, name: str, which: str) -> None:
    """`validation` naming the request, and the connection stays open."""
    bad = id_error(name) if which == "id" else collection_error(name)
    if bad is None or (which == "id" and kind in ("fetch", "subscribe")):
        return
    collection, eid = ("fuzzed", name) if which == "id" else (name, "f1")
    if kind in ("commit", "delete", "update"):
        msg = template("commit", 11)
        op = {
            "commit": ["c", collection, eid, {"n": 1}],
            "update": ["u", collection, eid, {"n": 1}],
            "delete": ["d", collection, eid],
        }[kind]
        msg["tx"]["ops"] = [op]
    else:
        msg = template(kind, 11) | {"collection": collection, **({"id": eid} if kind == "get" else {})}
    out = run(server.url, [Frame(dumps(msg))])
    assert out.close is None and [(e.code, e.rid) for e in out.errors()] == [("validation", 11)], out


QUERY_WORDS = [
    "n",
    "name",
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "AND",
    "OR",
    "NOT",
    "(",
    ")",
    "IN",
    "[",
    "]",
    "ORDER",
    "BY",
    "LIMIT",
    "DESC",
    "ASC",
    "'x'",
    "'",
    '"',
    "1",
    "-1",
    "2.5",
    "99999999999999999999999",
    "1e999",
    "null",
    "true",
    "false",
    ",",
    "\x00",
    "id",
    "-",
    "*",
    ";",
    "\\",
]
queries = st.one_of(st.text(max_size=40), st.lists(st.sampled_from(QUERY_WORDS), max_size=12).map(" ".join))


@settings(FUZZ, max_examples=150)
@given(query=queries, kind=st.sampled_from(["fetch", "subscribe"]))
def test_query_text(server: Server, query: str, kind: str) -> None:
    """Query text that does not parse is a `query` error for that request; the
    connection stays open either way."""
    out = run(server.url, [Frame(dumps(template(kind, 13) | {"query": query}))])
    assert out.close is None, out
    first = next(r for r in out.replies if getattr(r, "rid", None) == 13)
    assert isinstance(first, (m.FetchResult, m.Subscribed)) or first.code in ("query", "validation"), first  # type: ignore[union-attr]


exprs = st.recursive(
    st.one_of(
        st.tuples(
            st.just("cmp"),
            st.sampled_from(["n", "", "id", "x.y"]),
            st.sampled_from(["=", "!=", "<", ">=", "~", ""]),
            scalars,
        ).map(list),
        st.tuples(st.just("in"), st.sampled_from(["n", "id"]), st.lists(scalars, max_size=3), st.booleans()).map(list),
        json_values,
    ),
    lambda c: st.one_of(
        st.tuples(st.sampled_from(["and", "or"]), st.lists(c, max_size=3)).map(list),
        st.tuples(st.just("not"), c).map(list),
    ),
    max_leaves=8,
)


@FUZZ
@given(
    where=st.one_of(exprs, st.builds(nots, st.sampled_from([63, 64, 65, 500]))),
    order=st.lists(
        st.one_of(st.tuples(st.sampled_from(["n", "id", ""]), st.booleans()).map(list), json_values), max_size=2
    ),
    limit=st.one_of(st.none(), huge_ints, st.integers(-2, 5)),
    kind=st.sampled_from(["fetch", "subscribe"]),
)
def test_query_objects(server: Server, where: Any, order: list[Any], limit: Any, kind: str) -> None:
    query = {"where": where, "order_by": order, "limit": limit, "text": None}
    run(server.url, [Frame(dumps(template(kind, 15) | {"query": query}))])


@FUZZ
@given(
    kind=st.sampled_from(REQUESTS + ["hello"]),
    extra=st.integers(1, 3 * MAX_SIZE),
    hello=st.booleans(),
    as_text=st.booleans(),
)
def test_oversized_frames(server: Server, kind: str, extra: int, hello: bool, as_text: bool) -> None:
    """Over `welcome.max_size`: closed with 1009 by the WebSocket layer, before any decoding."""
    msg = template(kind, 17) | {"pad": "p" * (MAX_SIZE + extra)}
    out = run(server.url, [Frame(dumps(msg), as_text)], hello)
    assert out.close == 1009 and out.replies == [], out


@FUZZ
@given(size=st.integers(MAX_SIZE - 200, MAX_SIZE))
def test_frames_at_the_limit(server: Server, size: int) -> None:
    """Just under the limit: decoded like any other (here a props value too long for nothing
    to refuse it but its size), answered, and the connection stays open."""
    msg = template("commit", 19)
    head = len(dumps(msg)) - 1  # the value "1" is replaced by a string of the right length
    msg["tx"]["ops"][0][3] = {"n": "s" * max(0, size - head - 2)}
    out = run(server.url, [Frame(dumps(msg))])
    assert out.close is None and len(out.replies) == 2, out


async def test_a_hostile_burst_beside_a_well_behaved_client(server: Server) -> None:
    """Many hostile connections at once while an ephemeral node commits and reads: its
    commits are acked and its live query sees them."""
    node = EphemeralNode(WebSocketConnector(server.url, request_timeout=GUARD_S))
    await node.start()
    try:
        await node.create("burst", [{"n": 0}], Context())
        lq = await node.subscribe("burst", "n >= 0", Context())
        frames = [
            b"\xff" * 10,
            b'{"t":"commit"}',
            b"[" * 3000,
            b'{"a":' * 1000 + b"1" + b"}" * 1000,
            dumps(template("get", 1) | {"ctx": {"user": None, "data": nested(1000, 1, False)}}),
            b"x" * (MAX_SIZE + 1),
            dumps(template("commit", 2) | {"rid": -1}),
        ]
        hostile = [exchange(server.url, [Frame(f)]) for f in frames * 3]
        ids, _ = await node.create("burst", [{"n": i} for i in range(1, 11)], Context())
        results = await asyncio.gather(*hostile, return_exceptions=True)
        assert not [r for r in results if isinstance(r, BaseException)], results
        got: set[str] = set()
        while not set(ids) <= got:
            got |= {e.id for e in (await lq.next(timeout=GUARD_S)).added}
        assert {e.id for e in await node.fetch("burst", "n >= 1", Context())} == set(ids)
    finally:
        await node.close()


# --- regressions found by the fuzzer ------------------------------------------------------


@pytest.mark.parametrize("kind", ["commit", "get"])
def test_deep_context_data_is_decoded_or_refused_not_a_recursion_error(kind: str) -> None:
    """msgspec raised RecursionError on a `ctx.data` nested ~1000 deep: the server's
    connection handler died with a traceback and closed with 1000 and no error reply. A
    message nests at most `codec.MAX_DEPTH` levels: within it is decoded, beyond it (any
    depth) is malformed, naming the depth."""
    msg = template(kind, 21) | {"ctx": {"user": None, "data": {"x": nested(100, 1, False)}}}
    assert codec.decode(dumps(msg)).rid == 21  # type: ignore[union-attr]
    for depth in (200, 1000, 3000):
        with pytest.raises(ProtocolError, match="depth"):
            codec.decode(dumps(template(kind, 21) | {"ctx": {"user": None, "data": {"x": nested(depth)}}}))


def test_deep_context_data_over_the_wire(server: Server) -> None:
    msg = template("get", 23) | {"ctx": {"user": None, "data": {"x": nested(100, 1, False)}}}
    out = run(server.url, [Frame(dumps(msg))])
    # requests are served concurrently: the closing ping's pong may overtake the get's reply
    assert out.close is None and any(isinstance(r, m.GetResult) and r.rid == 23 for r in out.replies), out
    msg = template("get", 24) | {"ctx": {"user": None, "data": {"x": nested(1000, 1, False)}}}
    out = run(server.url, [Frame(dumps(msg))])
    assert out.close == 1008 and [(e.code, e.rid) for e in out.errors()] == [("malformed", 24)], out
    assert "depth" in out.errors()[0].message


@pytest.mark.parametrize(
    "data",
    [
        b'{"t":"commit","rid":1,"tx":{"commit_id":"a","node_id":"b","clock":1,"ops":[[[1],"p","x",{}]]},'
        b'"ctx":{"user":null,"data":{}},"sent_ns":0}',
        b'{"t":"commit","rid":1,"tx":{"commit_id":"a","node_id":"b","clock":1,"ops":[[{},"p","x"]]},'
        b'"ctx":{"user":null,"data":{}},"sent_ns":0}',
        b'{"t":"ack","rid":1,"record":{"commit_id":"a","node_id":"b","clock":1,"durable_ns":1,'
        b'"changes":[["p","x",[],null,null]]},"sent_ns":0}',
        b'{"t":"fetch","rid":1,"collection":"p","query":{"where":["cmp","n",{},1],"order_by":[],"limit":null,'
        b'"text":null},"ctx":{"user":null,"data":{}},"sent_ns":0}',
    ],
)
def test_unhashable_tags_are_malformed_not_a_type_error(data: bytes) -> None:
    """An array or object where an op tag, a change kind or a comparison operator belongs
    raised TypeError (unhashable) from a set lookup: a traceback on the server and a
    connection dropped with 1000 and no error reply."""
    with pytest.raises(ProtocolError, match="malformed"):
        codec.decode(data)


def test_an_unknown_type_beyond_ascii_closes_with_1008(server: Server) -> None:
    """The error quotes the type; with non-ASCII in it the close reason (cut at 120
    characters) was over the 123 bytes a close frame holds, websockets refused to send it
    and the connection ended with 1000 after a traceback. Peer input is now quoted ASCII."""
    out = run(server.url, [Frame(dumps({"t": "\u00e9" * 60, "rid": 1, "sent_ns": 0}))], hello=False)
    assert out.close == 1008 and [e.code for e in out.errors()] == ["malformed"], out
    assert out.errors()[0].message.isascii()
    out = run(server.url, [Frame(dumps(template("ping", 2) | {"\u00e9" * 60: 1}))])
    assert out.close == 1008 and [e.code for e in out.errors()] == ["malformed"], out


def test_a_database_name_beyond_ascii(tmp_path: Path) -> None:
    """The refusal of a `database` (service.py) quotes the name in the close reason: with
    non-ASCII in it the close frame is too long, the server logs a traceback and the
    connection ends with 1000 instead of 1008. Its own server: it leaves a traceback."""
    log = tmp_path / "server.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "loam", "serve", "--storage", "leveldb", "--path", str(tmp_path / "db")],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        out = run(url, [Frame(dumps(template("hello", 1) | {"database": "\u00e9" * 40}))], hello=False)
        assert [e.code for e in out.errors()] == ["validation"], out
        assert out.close == 1008 and "Traceback" not in log.read_text(), out
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
