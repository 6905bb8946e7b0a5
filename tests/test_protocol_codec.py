"""Wire codec: every message round-trips; malformed, mistyped and oversized input is rejected."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loam.errors import ProtocolError
from loam.model import Change, CommitRecord, Create, Delete, Entity, Transaction, Update
from loam.node.api import Context
from loam.protocol import codec
from loam.protocol import messages as m
from loam.query.ast import And, Compare, In, Not, Or, OrderKey, Query

# --- strategies ---------------------------------------------------------------

names = st.text(min_size=1, max_size=8).filter(lambda s: s != "id")
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10),
)
props = st.dictionaries(names, scalars, max_size=4)
ids = st.text(min_size=1, max_size=12)
entities = st.builds(Entity, ids, props)
ints = st.integers(min_value=0, max_value=2**63 - 1)
rids = st.integers(min_value=1, max_value=2**31)
ctxs = st.builds(Context, st.none() | st.text(max_size=8),
                 st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5), max_size=3))
ops = st.one_of(
    st.builds(Create, ids, ids, props), st.builds(Update, ids, ids, props), st.builds(Delete, ids, ids),
)
txs = st.builds(Transaction, st.text(max_size=20), st.text(max_size=16), ints, st.lists(ops, min_size=1, max_size=4).map(tuple))
changes = st.builds(Change, ids, ids, st.sampled_from(["create", "update", "delete"]), st.none() | entities,
                    st.none() | entities)
records = st.builds(CommitRecord, st.text(max_size=20), st.text(max_size=16), ints, st.integers(0, 2**62),
                    st.lists(changes, max_size=3).map(tuple))
fields = st.sampled_from(["id", "a", "b", "name"])
exprs = st.recursive(
    st.one_of(
        st.builds(Compare, fields, st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), scalars),
        st.builds(In, fields, st.lists(scalars, max_size=3).map(tuple), st.booleans()),
    ),
    lambda inner: st.one_of(
        st.builds(And, st.lists(inner, min_size=2, max_size=3).map(tuple)),
        st.builds(Or, st.lists(inner, min_size=2, max_size=3).map(tuple)),
        st.builds(Not, inner),
    ),
    max_leaves=6,
)
queries = st.one_of(
    st.text(max_size=30),
    st.builds(Query, st.none() | exprs, st.lists(st.builds(OrderKey, fields, st.booleans()), max_size=2).map(tuple),
              st.none() | st.integers(0, 1000), st.none() | st.text(max_size=20)),
)
ent_lists = st.lists(entities, max_size=4)

messages = st.one_of(
    st.builds(m.Hello, rids, st.none() | st.text(max_size=10), st.text(max_size=10), st.just(m.PROTOCOL_VERSION)),
    st.builds(m.Welcome, rids, st.text(max_size=10), ints, st.integers(1, 5), st.integers(0, 2**30)),
    st.builds(m.Commit, rids, txs, ctxs),
    st.builds(m.Ack, rids, records),
    st.builds(m.Get, rids, ids, ids, ctxs),
    st.builds(m.GetResult, rids, st.none() | entities),
    st.builds(m.Fetch, rids, ids, queries, ctxs),
    st.builds(m.FetchResult, rids, ent_lists),
    st.builds(m.Subscribe, rids, ids, queries, ctxs),
    st.builds(m.Subscribed, rids, ids, ent_lists, ints),
    st.builds(m.Unsubscribe, rids, ids),
    st.builds(m.Unsubscribed, rids, ids),
    st.builds(m.Notify, ids, st.none() | ids, st.none() | st.integers(0, 2**62), ent_lists, ent_lists,
              st.lists(ids, max_size=3), st.integers(0, 10), ints, st.sampled_from(["change", "closed"]),
              st.none() | st.text(max_size=10)),
    st.builds(m.Error, st.none() | rids, st.sampled_from(sorted(m.ERROR_CODES)), st.text(max_size=30)),
    st.builds(m.Ping, rids),
    st.builds(m.Pong, rids),
)


@given(messages, st.integers(min_value=-(2**62), max_value=2**62))
def test_every_message_round_trips(msg: m.Message, sent_ns: int) -> None:
    msg.sent_ns = sent_ns
    data = codec.encode(msg)
    assert isinstance(data, bytes)
    back = codec.decode(data)
    assert back == msg
    assert type(back) is type(msg)
    # types survive: bool stays bool, float stays float
    assert codec.encode(back) == data


def test_all_message_types_are_covered() -> None:
    assert set(m.MESSAGE_TYPES) == set(codec._FIELDS) == set(codec._DECODERS)


# --- rejections -----------------------------------------------------------------


def _wire(msg: m.Message) -> dict:
    return orjson.loads(codec.encode(msg))


def _reject(obj: object, match: str) -> None:
    data = obj if isinstance(obj, bytes) else orjson.dumps(obj)
    with pytest.raises(ProtocolError, match=match):
        codec.decode(data)


def test_rejects_non_json_and_non_objects() -> None:
    _reject(b"\x00\x01garbage", "not JSON")
    _reject(b"[1, 2]", "expected a JSON object")
    _reject({"t": "nope", "sent_ns": 0}, "unknown message type 'nope'")
    _reject({"rid": 1, "sent_ns": 0}, "unknown message type None")


def test_rejects_missing_and_extra_fields() -> None:
    d = _wire(m.Ping(1))
    del d["sent_ns"]
    _reject(d, "sent_ns")
    d = _wire(m.Get(1, "c", "x"))
    del d["id"]
    _reject(d, r"missing fields \['id'\]")
    d = _wire(m.Get(1, "c", "x"))
    d["extra"] = 1
    _reject(d, r"unexpected fields \['extra'\]")


def test_rejects_wrong_types() -> None:
    d = _wire(m.Get(1, "c", "x"))
    d["rid"] = "1"
    _reject(d, "'rid' must be an integer, got str")
    d["rid"] = True  # bool is not an int on the wire
    _reject(d, "'rid' must be an integer, got bool")
    d = _wire(m.Get(1, "c", "x"))
    d["ctx"] = {"user": 3, "data": {}}
    _reject(d, "ctx.user")
    d = _wire(m.FetchResult(1, [Entity("a", {"x": 1})]))
    d["entities"][0] = ["a", {"x": [1, 2]}]
    _reject(d, "list is not a scalar")
    d["entities"][0] = ["a", {"id": 1}]
    _reject(d, "reserved")
    d["entities"][0] = {"id": "a"}
    _reject(d, "entity must be")
    d = _wire(m.Notify("q", None, None, [], [], [], 0, 0, "change", None, 0))
    d["kind"] = "weird"
    _reject(d, "kind")
    d = _wire(m.Error(None, "auth", "x"))
    d["code"] = "nope"
    _reject(d, "unknown error code")


@pytest.mark.parametrize("field,value,match", [
    ("query_id", 1, "'query_id' must be a string, got int"),
    ("commit_id", 1, "'commit_id' must be a string or null"),
    ("commit_ns", "1", "'commit_ns' must be an integer or null"),
    ("commit_ns", True, "'commit_ns' must be an integer or null, got bool"),
    ("gap_filled", -1, "'gap_filled' must be >= 0"),
    ("gap_filled", False, "'gap_filled' must be an integer, got bool"),
    ("clock", 1.5, "'clock' must be an integer, got float"),
    ("kind", 3, "'kind' must be a string"),
    ("reason", 3, "'reason' must be a string or null"),
    ("removed", "a", "'removed' must be an array"),
    ("removed", ["a", 1], "'removed' must be an array of strings, found int"),
    ("added", {}, "'added' must be an array"),
    ("added", [["b", {"x": {"y": 1}}]], r"added\[0\]\.x: dict is not a scalar"),
    ("updated", [["a", {"x": 1}], ["b", {"": 1}]], r"updated\[1\]: property names must be non-empty"),
    ("updated", [["a", {"x": 1}], ["b", {"id": "c"}]], r"updated\[1\]: property name 'id' is reserved"),
    ("updated", [[1, {}]], r"updated\[0\]: an entity must be"),
])
def test_notify_rejects_each_bad_field_by_name(field: str, value: object, match: str) -> None:
    # A notify is decoded by an inline fast path; whatever it does not accept must still be
    # refused with the message naming the field.
    d = _wire(m.Notify("q", "c1", 5, [Entity("a", {"x": 1.5, "y": None, "z": True})], [], ["r"], 1, 2, "change",
                       None, 0))
    assert codec.decode(orjson.dumps(d)) == m.Notify(
        "q", "c1", 5, [Entity("a", {"x": 1.5, "y": None, "z": True})], [], ["r"], 1, 2, "change", None, d["sent_ns"])
    d[field] = value
    _reject(d, match)


def test_rejects_bad_ops_and_queries() -> None:
    tx = Transaction("c1", "n", 1, (Create("c", "a", {"x": 1}),))
    d = _wire(m.Commit(1, tx))
    d["tx"]["ops"] = []
    _reject(d, "must not be empty")
    d["tx"]["ops"] = [["x", "c", "a"]]
    _reject(d, "an op must be")
    d["tx"]["ops"] = [["d", "", "a"]]
    _reject(d, "non-empty strings")
    d["tx"]["ops"] = [["c", "c", "a", {"v": {"nested": 1}}]]
    _reject(d, "dict is not a scalar")
    d["tx"]["clock"] = -1
    _reject(d, "must be >= 0")
    q = Query(Compare("a", "=", 1), (OrderKey("a"),), 3, None)
    d = _wire(m.Fetch(1, "c", q))
    d["query"]["where"] = ["cmp", "a", "~", 1]
    _reject(d, "bad query expression")
    d["query"]["where"] = None
    d["query"]["limit"] = -1
    _reject(d, "limit must be >= 0")
    d["query"]["limit"] = None
    d["query"]["order_by"] = [["a", "asc"]]
    _reject(d, "order_by")
    deep: list = ["cmp", "a", "=", 1]
    for _ in range(100):
        deep = ["not", deep]
    d["query"] = {"where": deep, "order_by": [], "limit": None, "text": None}
    _reject(d, "nested deeper")


def test_size_limit_on_both_sides() -> None:
    big = m.FetchResult(1, [Entity("a", {"x": "y" * 2000})])
    with pytest.raises(ProtocolError, match="over the 1000-byte limit"):
        codec.encode(big, max_size=1000)
    data = codec.encode(big)
    with pytest.raises(ProtocolError, match="over the 1000-byte limit"):
        codec.decode(data, max_size=1000)
    assert codec.decode(data, max_size=len(data)) == big
    assert codec.DEFAULT_MAX_SIZE == 1 << 20


def test_unencodable_values_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match="64 bits"):
        codec.encode(m.GetResult(1, Entity("a", {"x": 2**70})))


def test_change_notify_fast_encoder_gives_the_same_bytes() -> None:
    """The server's hot-path encoder and `encode(Notify(...))` agree byte for byte."""
    from loam.model import Entity

    a, u = [Entity("a1", {"n": 1, "s": "x", "f": 1.5, "b": True, "z": None})], [Entity("u1", {"n": 2})]
    msg = m.Notify("q1", "c-1", 123, a, u, ["r1", "r2"], 1, 7, "change", None, 0)
    msg.sent_ns = 99
    assert codec.encode_change_notify("q1", "c-1", 123, tuple(a), tuple(u), ("r1", "r2"), 1, 7, 99) == codec.encode(msg)
    back = codec.decode(codec.encode_change_notify("q1", None, None, (), (), (), 0, 0, 5))
    assert isinstance(back, m.Notify) and back.commit_id is None and back.sent_ns == 5 and back.kind == "change"
    with pytest.raises(ProtocolError, match="over the 50-byte limit"):
        codec.encode_change_notify("q1", "c-1", 123, tuple(a), (), (), 0, 0, 1, max_size=50)


_E = Entity("a", {"x": 1.5, "y": None, "z": True, "s": "t", "n": -3})
_TYPED_MESSAGES = [
    m.Notify("q", "c1", 5, [_E], [Entity("b", {})], ["r"], 1, 2, "change", None, 77),
    m.Ack(3, CommitRecord("c", "n", 4, 9, (Change("k", "a", "update", Entity("a", {"x": 0}), _E),
                                          Change("k", "b", "delete", Entity("b", {}), None))), 5, 77),
    m.GetResult(4, _E, 6, 77),
    m.GetResult(4, None, 6, 77),
    m.FetchResult(5, [_E, Entity("b", {"x": "y"})], 7, 77),
    m.Subscribed(6, "q1", [_E], 8, 77),
    m.Commit(7, Transaction("n:1", "n", 3, (Create("k", "a", {"x": 1}), Update("k", "a", {"y": None}),
                                            Delete("k", "b"))), Context("u", {"role": ["a"]}), 77),
    m.Get(8, "k", "a", Context(None, {}), 77),
]
_ENTITY_MESSAGES = [x for x in _TYPED_MESSAGES if x.TYPE not in ("commit", "get")
                    and not (x.TYPE == "get_result" and x.entity is None)]


@pytest.mark.parametrize("msg", _TYPED_MESSAGES, ids=lambda x: x.TYPE)
def test_typed_pass_and_field_readers_agree(msg: m.Message) -> None:
    """`encode` writes "t" first, so these take the typed pass; the same message with its
    keys in another order takes the field readers; both give the message back."""
    data = codec.encode(msg)
    assert data.startswith(b'{"t":"%s"' % msg.TYPE.encode())
    typed = codec._typed(data)
    assert typed == msg and type(typed) is type(msg)
    reordered = orjson.dumps(dict(reversed(list(orjson.loads(data).items()))))
    assert codec._typed(reordered) is None
    assert codec.decode(reordered) == codec.decode(data) == msg


def _entity_paths(msg: m.Message) -> list[tuple[str, ...]]:
    """Where `_E` sits in the wire form of each typed message."""
    return {"notify": [("added", "0")], "ack": [("record", "changes", "0", "4")], "get_result": [("entity",)],
            "fetch_result": [("entities", "0")], "subscribed": [("results", "0")]}[msg.TYPE]


@pytest.mark.parametrize("msg", _ENTITY_MESSAGES, ids=lambda x: x.TYPE)
@pytest.mark.parametrize("bad", [["a", {"x": 1}, "extra"], ["a", {"x": "INF"}], ["a", {"id": 1}], ["a", {"": 1}],
                                 ["a"], ["a", {"x": [1]}], [1, {}]], ids=str)
def test_typed_pass_refuses_what_the_readers_refuse(msg: m.Message, bad: list) -> None:
    d = _wire(msg)
    for path in _entity_paths(msg):
        at = d
        for k in path[:-1]:
            at = at[int(k)] if isinstance(at, list) else at[k]
        at[int(path[-1]) if isinstance(at, list) else path[-1]] = bad
    data = orjson.dumps(d).replace(b'"INF"', b"1e999")  # JSON has no infinity; 1e999 overflows
    assert codec._typed(data) is None
    with pytest.raises(ProtocolError, match="malformed"):
        codec.decode(data)


def test_typed_pass_takes_replies_without_clock() -> None:
    """Older peers omit `clock` on ack/get_result/fetch_result: 0, by either path."""
    for msg in _TYPED_MESSAGES[1:5]:  # ack, get_result (x2), fetch_result
        d = _wire(msg)
        del d["clock"]
        back = codec._typed(orjson.dumps(d))
        assert back is not None and back.clock == 0 and codec.decode(orjson.dumps(d)) == back


@pytest.mark.parametrize("bad", [["c", "k", "a"], ["u", "k", "a", {"id": 1}], ["c", "k", "a", {"": 1}],
                                 ["c", "", "a", {}], ["d", "k", ""], ["x", "k", "a"], ["d", "k", "a", {}],
                                 ["u", "k", "a", {"x": {"y": 1}}], ["c", "k", 1, {}]], ids=str)
def test_typed_commit_refuses_what_the_readers_refuse(bad: list) -> None:
    d = _wire(_TYPED_MESSAGES[-2])
    d["tx"]["ops"][1] = bad
    data = orjson.dumps(d)
    assert codec._typed(data) is None
    with pytest.raises(ProtocolError, match=r"malformed commit message: tx\.ops\[1\]"):
        codec.decode(data)
    d["tx"]["ops"] = []
    assert codec._typed(orjson.dumps(d)) is None
    with pytest.raises(ProtocolError, match="must not be empty"):
        codec.decode(orjson.dumps(d))
    d = _wire(_TYPED_MESSAGES[-1])
    d["ctx"] = {"user": None}
    assert codec._typed(orjson.dumps(d)) is None
    with pytest.raises(ProtocolError, match="ctx"):
        codec.decode(orjson.dumps(d))


def test_deeply_nested_request_data_decodes_or_is_malformed_never_a_recursion_error():
    """msgspec's typed pass gives up on nesting orjson still reads (RecursionError): the field
    readers then take the message, and past orjson's own limit it is malformed."""
    from loam.errors import ProtocolError
    from loam.protocol import codec
    from loam.protocol import messages as m

    def get_with(depth: int) -> bytes:
        deep = "[" * depth + "]" * depth
        return (b'{"t":"get","rid":1,"collection":"a","id":"b","ctx":{"user":null,"data":{"x":'
                + deep.encode() + b'}},"sent_ns":0}')

    assert isinstance(codec.decode(get_with(1000)), m.Get)
    with pytest.raises(ProtocolError):
        codec.decode(get_with(5000))
