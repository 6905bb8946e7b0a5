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
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
)
props = st.dictionaries(names, scalars, max_size=4)
ids = st.text(min_size=1, max_size=12)
entities = st.builds(Entity, ids, props)
ints = st.integers(min_value=0, max_value=2**63 - 1)
rids = st.integers(min_value=1, max_value=2**31)
ctxs = st.builds(
    Context,
    st.none() | st.text(max_size=8),
    st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5), max_size=3),
)
ops = st.one_of(
    st.builds(Create, ids, ids, props),
    st.builds(Update, ids, ids, props),
    st.builds(Delete, ids, ids),
)
txs = st.builds(
    Transaction, st.text(max_size=20), st.text(max_size=16), ints, st.lists(ops, min_size=1, max_size=4).map(tuple)
)
changes = st.builds(
    Change, ids, ids, st.sampled_from(["create", "update", "delete"]), st.none() | entities, st.none() | entities
)
records = st.builds(
    CommitRecord,
    st.text(max_size=20),
    st.text(max_size=16),
    ints,
    st.integers(0, 2**62),
    st.lists(changes, max_size=3).map(tuple),
)
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
    st.builds(
        Query,
        st.none() | exprs,
        st.lists(st.builds(OrderKey, fields, st.booleans()), max_size=2).map(tuple),
        st.none() | st.integers(0, 1000),
        st.none() | st.text(max_size=20),
    ),
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
    st.builds(
        m.Notify,
        ids,
        st.none() | ids,
        st.none() | st.integers(0, 2**62),
        ent_lists,
        ent_lists,
        st.lists(ids, max_size=3),
        st.integers(0, 10),
        ints,
        st.sampled_from(["change", "closed"]),
        st.none() | st.text(max_size=10),
    ),
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


def test_one_schema_the_message_structs_are_the_wire_types() -> None:
    """Each message type is a msgspec Struct tagged by `t`, its fields in wire order with
    `sent_ns` last; the codec has no other description of them."""
    import msgspec

    assert set(m.MESSAGE_TYPES) == set(m.REPLY_OF) | set(m.REPLY_OF.values()) | {"notify", "error"}
    for t, cls in m.MESSAGE_TYPES.items():
        assert issubclass(cls, msgspec.Struct) and cls.TYPE == t
        assert cls.__struct_config__.tag_field == "t" and cls.__struct_config__.tag == t
        assert cls.__struct_fields__[-1] == "sent_ns"
    assert not [name for name in vars(codec) if name.endswith("W") or name in ("_FIELDS", "_DECODERS", "_Reader")]


# --- rejections -----------------------------------------------------------------


def _wire(msg: m.Message) -> dict:
    return orjson.loads(codec.encode(msg))


def _reject(obj: object, match: str) -> None:
    data = obj if isinstance(obj, bytes) else orjson.dumps(obj)
    with pytest.raises(ProtocolError, match=match):
        codec.decode(data)


def test_rejects_non_json_and_non_objects() -> None:
    _reject(b"\x00\x01garbage", "not JSON")
    _reject(b"[1, 2]", "expected a JSON object, got list")
    _reject({"t": "nope", "sent_ns": 0}, "unknown message type 'nope'")
    _reject({"rid": 1, "sent_ns": 0}, "unknown message type None")


def test_rejects_missing_and_extra_fields() -> None:
    d = _wire(m.Get(1, "c", "x"))
    del d["id"]
    _reject(d, "malformed get message: Object missing required field `id`")
    d = _wire(m.Get(1, "c", "x"))
    d["extra"] = 1
    _reject(d, "malformed get message: Object contains unknown field `extra`")
    d = _wire(m.Commit(1, Transaction("c1", "n", 1, (Delete("c", "a"),))))
    d["ctx"]["role"] = "admin"
    _reject(d, "unknown field `role`")


def test_fields_with_a_default_may_be_omitted() -> None:
    """The receiver reads the default: `sent_ns` 0, `version` 1, an empty context, clock 0."""
    d = _wire(m.Ping(1, 5))
    del d["sent_ns"]
    assert codec.decode(orjson.dumps(d)) == m.Ping(1, 0)
    d = _wire(m.Get(1, "c", "x", Context("u")))
    del d["ctx"]
    assert codec.decode(orjson.dumps(d)) == m.Get(1, "c", "x", Context())
    d = _wire(m.Hello(1, None, "n"))
    del d["version"]
    assert codec.decode(orjson.dumps(d)) == m.Hello(1, None, "n", m.PROTOCOL_VERSION)


def test_rejects_wrong_types() -> None:
    d = _wire(m.Get(1, "c", "x"))
    d["rid"] = "1"
    _reject(d, r"Expected `int`, got `str` - at `\$.rid`")
    d["rid"] = True  # bool is not an int on the wire
    _reject(d, r"Expected `int`, got `bool` - at `\$.rid`")
    d = _wire(m.Get(1, "c", "x"))
    d["ctx"] = {"user": 3, "data": {}}
    _reject(d, r"\$.ctx.user")
    d = _wire(m.FetchResult(1, [Entity("a", {"x": 1})]))
    d["entities"][0] = ["a", {"x": [1, 2]}]
    _reject(d, r"got `array` - at `\$.entities\[0\]\[1\]")
    d["entities"][0] = ["a", {"id": 1}]
    _reject(d, r"entities\[0\]: property names must be non-empty and not 'id'")
    d["entities"][0] = {"id": "a"}
    _reject(d, r"Expected `array`, got `object` - at `\$.entities\[0\]`")
    d = _wire(m.Notify("q", None, None, [], [], [], 0, 0, "change", None, 0))
    d["kind"] = "weird"
    _reject(d, r"Invalid enum value 'weird' - at `\$.kind`")
    d = _wire(m.Error(None, "auth", "x"))
    d["code"] = "nope"
    _reject(d, r"Invalid enum value 'nope' - at `\$.code`")


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("query_id", 1, r"Expected `str`, got `int` - at `\$.query_id`"),
        ("commit_id", 1, r"Expected `str \| null`, got `int` - at `\$.commit_id`"),
        ("commit_ns", "1", r"Expected `int \| null`, got `str` - at `\$.commit_ns`"),
        ("commit_ns", True, r"Expected `int \| null`, got `bool` - at `\$.commit_ns`"),
        ("gap_filled", -1, r"Expected `int` >= 0 - at `\$.gap_filled`"),
        ("gap_filled", False, r"Expected `int`, got `bool` - at `\$.gap_filled`"),
        ("clock", 1.5, r"Expected `int`, got `float` - at `\$.clock`"),
        ("kind", 3, r"Expected `str`, got `int` - at `\$.kind`"),
        ("reason", 3, r"Expected `str \| null`, got `int` - at `\$.reason`"),
        ("removed", "a", r"Expected `array`, got `str` - at `\$.removed`"),
        ("removed", ["a", 1], r"Expected `str`, got `int` - at `\$.removed\[1\]`"),
        ("added", {}, r"Expected `array`, got `object` - at `\$.added`"),
        ("added", [["b", {"x": {"y": 1}}]], r"got `object` - at `\$.added\[0\]\[1\]"),
        ("updated", [["a", {"x": 1}], ["b", {"": 1}]], r"updated\[1\]: property names must be non-empty"),
        (
            "updated",
            [["a", {"x": 1}], ["b", {"id": "c"}]],
            r"updated\[1\]: property names must be non-empty and not 'id'",
        ),
        ("updated", [[1, {}]], r"Expected `str`, got `int` - at `\$.updated\[0\]\[0\]`"),
    ],
)
def test_notify_rejects_each_bad_field_by_name(field: str, value: object, match: str) -> None:
    d = _wire(
        m.Notify("q", "c1", 5, [Entity("a", {"x": 1.5, "y": None, "z": True})], [], ["r"], 1, 2, "change", None, 0)
    )
    assert codec.decode(orjson.dumps(d)) == m.Notify(
        "q", "c1", 5, [Entity("a", {"x": 1.5, "y": None, "z": True})], [], ["r"], 1, 2, "change", None, d["sent_ns"]
    )
    d[field] = value
    _reject(d, match)


def test_rejects_bad_ops_and_queries() -> None:
    tx = Transaction("c1", "n", 1, (Create("c", "a", {"x": 1}),))
    d = _wire(m.Commit(1, tx))
    d["tx"]["ops"] = []
    _reject(d, r"Expected `array` of length >= 1 - at `\$.tx.ops`")
    d["tx"]["ops"] = [["x", "c", "a"]]
    _reject(d, r"Invalid value 'x' - at `\$.tx.ops\[0\]\[0\]`")
    d["tx"]["ops"] = [["d", "", "a"]]
    _reject(d, r"Expected `str` of length >= 1 - at `\$.tx.ops\[0\]\[1\]`")
    d["tx"]["ops"] = [["c", "c", "a", {"v": {"nested": 1}}]]
    _reject(d, r"got `object` - at `\$.tx.ops\[0\]\[3\]")
    d["tx"]["ops"] = [["c", "c", "a", {"v": 1}]]
    d["tx"]["clock"] = -1
    _reject(d, r"Expected `int` >= 0 - at `\$.tx.clock`")
    q = Query(Compare("a", "=", 1), (OrderKey("a"),), 3, None)
    d = _wire(m.Fetch(1, "c", q))
    d["query"]["where"] = ["cmp", "a", "~", 1]
    _reject(d, r"Invalid enum value '~' - at `\$.query.where\[2\]`")
    d["query"]["where"] = None
    d["query"]["limit"] = -1
    _reject(d, r"Expected `int` >= 0 - at `\$.query.limit`")
    d["query"]["limit"] = None
    d["query"]["order_by"] = [["a", "asc"]]
    _reject(d, r"\$.query.order_by\[0\]\[1\]")
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
    m.Ack(
        3,
        CommitRecord(
            "c",
            "n",
            4,
            9,
            (Change("k", "a", "update", Entity("a", {"x": 0}), _E), Change("k", "b", "delete", Entity("b", {}), None)),
        ),
        5,
        77,
    ),
    m.GetResult(4, _E, 6, 77),
    m.GetResult(4, None, 6, 77),
    m.FetchResult(5, [_E, Entity("b", {"x": "y"})], 7, 77),
    m.Subscribed(6, "q1", [_E], 8, 77),
    m.Commit(
        7,
        Transaction("n:1", "n", 3, (Create("k", "a", {"x": 1}), Update("k", "a", {"y": None}), Delete("k", "b"))),
        Context("u", {"role": ["a"]}),
        77,
    ),
    m.Get(8, "k", "a", Context(None, {}), 77),
]
_ENTITY_MESSAGES = [
    x for x in _TYPED_MESSAGES if x.TYPE not in ("commit", "get") and not (x.TYPE == "get_result" and x.entity is None)
]


@pytest.mark.parametrize("msg", _TYPED_MESSAGES, ids=lambda x: x.TYPE)
def test_key_order_carries_no_meaning(msg: m.Message) -> None:
    """`encode` writes "t" first; the same message with its keys in any order decodes the same."""
    data = codec.encode(msg)
    assert data.startswith(b'{"t":"%s"' % msg.TYPE.encode())
    reordered = orjson.dumps(dict(reversed(list(orjson.loads(data).items()))))
    assert codec.decode(reordered) == codec.decode(data) == msg
    assert type(codec.decode(reordered)) is type(msg)


def _entity_paths(msg: m.Message) -> list[tuple[str, ...]]:
    """Where `_E` sits in the wire form of each message that carries entities."""
    return {
        "notify": [("added", "0")],
        "ack": [("record", "changes", "0", "4")],
        "get_result": [("entity",)],
        "fetch_result": [("entities", "0")],
        "subscribed": [("results", "0")],
    }[msg.TYPE]


@pytest.mark.parametrize("msg", _ENTITY_MESSAGES, ids=lambda x: x.TYPE)
@pytest.mark.parametrize(
    "bad",
    [
        ["a", {"x": 1}, "extra"],
        ["a", {"x": "INF"}],
        ["a", {"id": 1}],
        ["a", {"": 1}],
        ["a"],
        ["a", {"x": [1]}],
        [1, {}],
    ],
    ids=str,
)
def test_bad_entities_are_malformed_wherever_they_sit(msg: m.Message, bad: list) -> None:
    d = _wire(msg)
    for path in _entity_paths(msg):
        at = d
        for k in path[:-1]:
            at = at[int(k)] if isinstance(at, list) else at[k]
        at[int(path[-1]) if isinstance(at, list) else path[-1]] = bad
    data = orjson.dumps(d).replace(b'"INF"', b"1e999")  # JSON has no infinity; 1e999 overflows
    with pytest.raises(ProtocolError, match="malformed"):
        codec.decode(data)


def test_replies_without_clock_read_zero() -> None:
    """Peers may omit `clock` on ack/get_result/fetch_result: it reads 0."""
    for msg in _TYPED_MESSAGES[1:5]:  # ack, get_result (x2), fetch_result
        d = _wire(msg)
        del d["clock"]
        back = codec.decode(orjson.dumps(d))
        assert back.clock == 0 and type(back) is type(msg)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "bad",
    [
        ["c", "k", "a"],
        ["u", "k", "a", {"id": 1}],
        ["c", "k", "a", {"": 1}],
        ["c", "", "a", {}],
        ["d", "k", ""],
        ["x", "k", "a"],
        ["d", "k", "a", {}],
        ["u", "k", "a", {"x": {"y": 1}}],
        ["c", "k", 1, {}],
    ],
    ids=str,
)
def test_bad_ops_are_malformed_naming_the_op(bad: list) -> None:
    d = _wire(_TYPED_MESSAGES[-2])
    d["tx"]["ops"][1] = bad
    with pytest.raises(ProtocolError, match=r"malformed commit message: .*(tx\.ops\[1\]|length 2)"):
        codec.decode(orjson.dumps(d))
    d["tx"]["ops"] = []
    with pytest.raises(ProtocolError, match="length >= 1"):
        codec.decode(orjson.dumps(d))
    d = _wire(_TYPED_MESSAGES[-1])
    d["ctx"] = {"user": None, "data": 3}
    with pytest.raises(ProtocolError, match="ctx"):
        codec.decode(orjson.dumps(d))


def _get_with(data: bytes) -> bytes:
    return b'{"t":"get","rid":1,"collection":"a","id":"b","ctx":{"user":null,"data":{"x":' + data + b'}},"sent_ns":0}'


@pytest.mark.parametrize("as_list", [True, False])
def test_nesting_is_decoded_up_to_max_depth_and_refused_beyond(as_list: bool) -> None:
    """`ctx.data` may hold any JSON; the message nests at most MAX_DEPTH levels (its own object
    is level 1, `ctx` 2, `data` 3). Deeper is malformed, naming the depth, however deep: never
    a RecursionError, whatever the caller's stack."""

    def nested(k: int) -> bytes:
        open_, close = (b"[", b"]") if as_list else (b'{"a":', b"}")
        return open_ * k + b"1" + close * k

    k = codec.MAX_DEPTH - 3  # the innermost container sits at MAX_DEPTH
    msg = codec.decode(_get_with(nested(k)))
    assert isinstance(msg, m.Get) and msg.rid == 1
    for deeper in (k + 1, 1000, 5000, 100_000):
        with pytest.raises(ProtocolError, match="depth"):
            codec.decode(_get_with(nested(deeper)))


def test_nesting_beyond_the_recursion_limit_is_refused_from_a_deep_stack() -> None:
    """From a caller already deep in its stack, msgspec runs out of C stack before the depth
    check: still a ProtocolError, not a RecursionError."""

    def at_depth(n: int) -> None:
        if n:
            return at_depth(n - 1)
        with pytest.raises(ProtocolError, match="depth"):
            codec.decode(_get_with(b"[" * 900 + b"]" * 900))

    at_depth(200)


def test_query_expressions_nest_at_most_64_levels() -> None:
    def fetch_with(depth: int) -> bytes:
        where = b'["not",' * depth + b'["cmp","n","=",1]' + b"]" * depth
        return (
            b'{"t":"fetch","rid":1,"collection":"a","query":{"where":'
            + where
            + b',"order_by":[],"limit":null,"text":null},"ctx":{"user":null,"data":{}},"sent_ns":0}'
        )

    assert isinstance(codec.decode(fetch_with(63)), m.Fetch)  # 63 nots around a comparison: 64 levels
    for depth in (64, 500, 5000):
        with pytest.raises(ProtocolError, match="nested deeper|depth"):
            codec.decode(fetch_with(depth))


def test_integers_beyond_64_bits_stay_exact_and_are_never_encoded() -> None:
    """Decoding keeps any integer exact (never rounded to a float), wherever it sits; loam's
    encoder refuses integers beyond 64 bits (and storage refuses to keep them, by name)."""
    big = 2**70 + 1
    msgs = [
        b'{"t":"get_result","rid":1,"entity":["a",{"n":%d}],"clock":0,"sent_ns":0}' % big,
        b'{"sent_ns":0,"clock":0,"entity":["a",{"n":%d}],"rid":1,"t":"get_result"}' % big,  # any key order
    ]
    for data in msgs:
        got = codec.decode(data)
        assert isinstance(got, m.GetResult) and got.entity is not None
        assert got.entity.props["n"] == big and type(got.entity.props["n"]) is int
    got = codec.decode(_get_with(b'[%d, {"k": %d}]' % (big, -big)))
    assert isinstance(got, m.Get) and got.ctx.data["x"] == [big, {"k": -big}]
    commit = (
        b'{"t":"commit","rid":1,"tx":{"commit_id":"a","node_id":"b","clock":%d,"ops":[["c","p","x",{"n":%d}]]},'
        b'"ctx":{"user":null,"data":{}},"sent_ns":%d}' % (big, big, big)
    )
    got = codec.decode(commit)
    assert isinstance(got, m.Commit) and got.tx.clock == big and got.sent_ns == big
    with pytest.raises(ProtocolError, match="64 bits"):
        codec.encode(got)
