"""One suite for every storage engine (memory, LevelDB, PostgreSQL), plus cross-engine equality."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loam.errors import ValidationError
from loam.model import Entity, EntityState
from loam.query.ast import And, Compare, In, Not, Or, OrderKey, Query
from loam.storage import StorageEngine, WriteBatch, create_engine

ENGINES = ["memory", "leveldb", "postgres"]
INDEXES = {"items": ["status", "n"]}

Factory = Callable[..., StorageEngine]


@pytest.fixture(params=ENGINES)
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """`make(indexes=...)` builds and opens an engine over this test's storage (same data on every call)."""
    name = request.param
    opened: list[StorageEngine] = []
    params: dict[str, Any] = {}
    if name == "leveldb":
        params = {"path": str(tmp_path / "db")}
    elif name == "postgres":
        params = {"dsn": request.getfixturevalue("pg_database"), "pool_size": 2}
    memory: list[StorageEngine] = []

    def factory(indexes: dict[str, list[str]] | None = INDEXES) -> StorageEngine:
        if name == "memory" and memory:  # nothing to reopen: hand back the same store
            return memory[0]
        for e in opened:
            if name == "leveldb":
                e.close()  # one LevelDB handle per directory
        eng = create_engine(name, indexes=indexes, **params)
        eng.open()
        opened.append(eng)
        if name == "memory":
            memory.append(eng)
        return eng

    factory.engine_name = name  # type: ignore[attr-defined]
    yield factory
    for e in opened:
        e.close()


def S(id: str, clock: int = 1, node: str = "n1", deleted: bool = False, **props: Any) -> EntityState:
    return EntityState(id, props, (clock, node), {}, (clock, node) if deleted else None)


_commit_seq = itertools.count(1)


def write(
    engine: StorageEngine, coll: str, states: list[EntityState], *, new: bool = True, clock: int | None = None
) -> dict:
    clock = clock if clock is not None else max((s.stamp[0] for s in states), default=1)
    commit = {"commit_id": f"n1-{next(_commit_seq)}", "node_id": "n1", "clock": clock, "ops": len(states)}
    engine.apply(
        WriteBatch(states=[(coll, s) for s in states], new_ids={s.id for s in states} if new else set(), commit=commit)
    )
    return commit


def ids(entities: list[Entity]) -> list[str]:
    return [e.id for e in entities]


SAMPLE = [
    S("a1", status="open", n=3, tag="x"),
    S("a2", status="done", n=10, tag="y"),
    S("a3", status="open", n=-2.5),
    S("a4", status=None, n=7, tag="x"),
    S("a5", n="seven", tag=True),
    S("a6", status="open", n=3.0, tag=False),
]


def test_apply_get_and_read_states(make: Factory) -> None:
    e = make()
    write(e, "items", SAMPLE)
    assert e.get("items", "a1") == Entity("a1", {"status": "open", "n": 3, "tag": "x"})
    assert e.get("items", "a3").props["n"] == -2.5
    assert e.get("items", "nope") is None
    assert e.get("other", "a1") is None
    states = e.read_states("items", ["a2", "zz", "a5"])
    assert set(states) == {"a2", "a5"}
    assert states["a2"].values == {"status": "done", "n": 10, "tag": "y"}
    assert states["a2"].stamp == (1, "n1") and states["a2"].stamps == {} and states["a2"].deleted is None
    assert e.read_states("missing", ["a1"]) == {}


def test_partial_stamps_roundtrip(make: Factory) -> None:
    e = make()
    st0 = S("p1", clock=1, a=1, b="x")
    write(e, "items", [st0])
    st1 = e.read_states("items", ["p1"])["p1"]
    st1.merge_write({"b": "y", "c": None}, (5, "n2"))
    write(e, "items", [st1], new=False, clock=5)
    back = e.read_states("items", ["p1"])["p1"]
    assert back.values == {"a": 1, "b": "y", "c": None}
    assert back.stamp == (1, "n1") and back.stamps == {"b": (5, "n2"), "c": (5, "n2")}
    assert e.get("items", "p1") == Entity("p1", {"a": 1, "b": "y", "c": None})


def test_tombstones_are_invisible(make: Factory) -> None:
    e = make()
    write(e, "items", SAMPLE)
    assert e.count("items") == 6
    st = e.read_states("items", ["a1"])["a1"]
    st.merge_delete((2, "n1"))
    write(e, "items", [st], new=False, clock=2)
    assert e.get("items", "a1") is None
    assert e.read_states("items", ["a1"])["a1"].deleted == (2, "n1")
    assert e.count("items") == 5
    assert "a1" not in ids(e.fetch("items", Query()))
    assert ids(e.fetch("items", Query(where=Compare("status", "=", "open")))) == ["a3", "a6"]
    # a tombstone written directly as a new id is invisible too
    write(e, "items", [S("dead", clock=3, deleted=True, status="open")], clock=3)
    assert e.get("items", "dead") is None and e.count("items") == 5
    assert "dead" not in ids(e.fetch("items", Query(where=Compare("status", "=", "open"))))


@pytest.mark.parametrize(
    "where, expected",
    [
        (None, ["a1", "a2", "a3", "a4", "a5", "a6"]),
        (Compare("status", "=", "open"), ["a1", "a3", "a6"]),
        (Compare("status", "!=", "open"), ["a2", "a4", "a5"]),
        (Compare("status", "=", None), ["a4", "a5"]),  # a missing property is null
        (Compare("n", "=", 3), ["a1", "a6"]),  # 3 = 3.0
        (Compare("n", ">", 3), ["a2", "a4", "a5"]),  # strings sort after numbers
        (Compare("n", "<=", 3), ["a1", "a3", "a6"]),
        (In("status", ("done", None)), ["a2", "a4", "a5"]),
        (In("status", ("done", None), negated=True), ["a1", "a3", "a6"]),
        (And((Compare("status", "=", "open"), Compare("n", ">=", 0))), ["a1", "a6"]),
        (Or((Compare("tag", "=", "x"), Compare("n", "<", 0))), ["a1", "a3", "a4"]),
        (Not(Compare("tag", "=", "x")), ["a2", "a3", "a5", "a6"]),
        (Compare("id", "=", "a2"), ["a2"]),
        (In("id", ("a2", "a9", "a5")), ["a2", "a5"]),
        (Compare("id", ">", "a4"), ["a5", "a6"]),
        (Compare("tag", "=", True), ["a5"]),
        (And((Compare("n", ">", 0), Compare("n", "<", 8))), ["a1", "a4", "a6"]),
    ],
)
def test_fetch_predicates(make: Factory, where: Any, expected: list[str]) -> None:
    e = make()
    write(e, "items", SAMPLE)
    assert ids(e.fetch("items", Query(where=where))) == expected
    assert isinstance(e.explain("items", Query(where=where)), str)


def test_order_by_limit_and_keyset(make: Factory) -> None:
    e = make()
    write(e, "items", SAMPLE)
    q = Query(order_by=(OrderKey("n"),))
    # numbers (3 = 3.0 tie broken by id), then the string
    assert ids(e.fetch("items", q)) == ["a3", "a1", "a6", "a4", "a2", "a5"]
    qd = Query(order_by=(OrderKey("n", descending=True),))
    assert ids(e.fetch("items", qd)) == ["a5", "a2", "a4", "a1", "a6", "a3"]
    assert ids(e.fetch("items", Query(order_by=(OrderKey("n"),), limit=2))) == ["a3", "a1"]
    assert ids(e.fetch("items", q, limit=3)) == ["a3", "a1", "a6"]
    q2 = Query(order_by=(OrderKey("status"), OrderKey("n", descending=True)))
    assert ids(e.fetch("items", q2)) == ["a5", "a4", "a2", "a1", "a6", "a3"]
    for query in (q, qd, q2, Query(), Query(where=Compare("n", ">=", 0), order_by=(OrderKey("n"),))):
        full = e.fetch("items", query)
        for page_size in (1, 2, 4):  # keyset pagination reproduces the full order
            pages: list[Entity] = []
            after = None
            while True:
                page = e.fetch("items", query, after=after, limit=page_size)
                pages += page
                if len(page) < page_size:
                    break
                after = page[-1]
            assert ids(pages) == ids(full), (query, page_size)


def test_index_follows_value_changes(make: Factory) -> None:
    e = make()
    write(e, "items", [S(f"e{i}", status="todo", n=i) for i in range(10)])
    changed = []
    for i in (2, 5, 7):
        st = e.read_states("items", [f"e{i}"])[f"e{i}"]
        st.merge_write({"status": "done", "n": 100 + i}, (2, "n1"))
        changed.append(st)
    write(e, "items", changed, new=False, clock=2)
    assert ids(e.fetch("items", Query(where=Compare("status", "=", "done")))) == ["e2", "e5", "e7"]
    assert len(e.fetch("items", Query(where=Compare("status", "=", "todo")))) == 7
    assert ids(e.fetch("items", Query(where=Compare("n", ">", 50)))) == ["e2", "e5", "e7"]
    assert ids(e.fetch("items", Query(where=Compare("n", "<", 3)))) == ["e0", "e1"]
    assert ids(e.fetch("items", Query(order_by=(OrderKey("n", descending=True),), limit=2))) == ["e7", "e5"]
    # property removed by setting null; entity deleted -> leaves the index
    st = e.read_states("items", ["e5"])["e5"]
    st.merge_write({"status": None}, (3, "n1"))
    st7 = e.read_states("items", ["e7"])["e7"]
    st7.merge_delete((3, "n1"))
    write(e, "items", [st, st7], new=False, clock=3)
    assert ids(e.fetch("items", Query(where=Compare("status", "=", "done")))) == ["e2"]
    assert ids(e.fetch("items", Query(where=Compare("status", "=", None)))) == ["e5"]
    assert ids(e.fetch("items", Query(where=Compare("n", ">", 50)))) == ["e2", "e5"]
    plan = e.explain("items", Query(where=Compare("status", "=", "done")))
    if make.engine_name == "leveldb":  # type: ignore[attr-defined]
        assert "index" in plan and "status" in plan
        assert "full scan" in e.explain("items", Query(where=Compare("tag", "=", 1)))


def test_commit_log_and_last_clock(make: Factory) -> None:
    e = make()
    assert e.last_clock() == 0 and e.commits_since(0) == []
    c1 = write(e, "items", [S("x1", clock=3)], clock=3)
    c2 = write(e, "items", [S("x2", clock=7)], clock=7)
    c3 = write(e, "other", [S("x3", clock=5)], clock=5)
    assert e.last_clock() == 7
    assert e.commits_since(0) == [c1, c3, c2]
    assert e.commits_since(4) == [c3, c2]
    assert e.commits_since(7) == []
    # a commit without states still lands in the log (one entry per transaction)
    e.apply(WriteBatch(commit={"commit_id": "n2-1", "node_id": "n2", "clock": 9}))
    assert e.last_clock() == 9 and e.commits_since(8)[0]["commit_id"] == "n2-1"


def test_collections_and_count(make: Factory) -> None:
    e = make()
    assert e.collections() == [] and e.count("items") == 0
    write(e, "items", SAMPLE[:3])
    write(e, "Other Things", [S("o1", k=1)])
    assert e.collections() == ["Other Things", "items"]
    assert e.count("items") == 3 and e.count("Other Things") == 1 and e.count("nothing") == 0
    assert ids(e.fetch("Other Things", Query(where=Compare("k", "=", 1)))) == ["o1"]
    assert e.fetch("nothing", Query()) == []


@pytest.mark.parametrize("make", ["leveldb", "postgres"], indirect=True)  # memory is not persistent
def test_reopen_keeps_everything(make: Factory) -> None:
    e = make()
    write(e, "items", SAMPLE, clock=4)
    st = e.read_states("items", ["a2"])["a2"]
    st.merge_delete((5, "n1"))
    write(e, "items", [st], new=False, clock=5)
    e.close()
    e.close()  # idempotent
    # reopen with one more declared index: it is built from the stored states
    e2 = make(indexes={"items": ["status", "n", "tag"]})
    assert e2.last_clock() == 5
    assert e2.count("items") == 5 and e2.collections() == ["items"]
    assert e2.get("items", "a1") == Entity("a1", {"status": "open", "n": 3, "tag": "x"})
    assert e2.get("items", "a2") is None
    assert ids(e2.fetch("items", Query(where=Compare("tag", "=", "x")))) == ["a1", "a4"]
    assert ids(e2.fetch("items", Query(where=Compare("status", "=", "open")))) == ["a1", "a3", "a6"]
    assert [c["clock"] for c in e2.commits_since(0)] == [4, 5]
    # and with an index dropped, queries still answer correctly
    e3 = make(indexes={"items": ["tag"]})
    assert ids(e3.fetch("items", Query(where=Compare("status", "=", "open")))) == ["a1", "a3", "a6"]
    assert ids(e3.fetch("items", Query(where=Compare("tag", "=", "x")))) == ["a1", "a4"]


def test_describe(make: Factory) -> None:
    d = make().describe()
    assert d["engine"] == make.engine_name  # type: ignore[attr-defined]


# --- cross-engine equality on random data --------------------------------------------------

FIELDS = ["a", "b", "c"]
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.sampled_from([-1.5, 0.0, 2.5, 3.0, 1e9]),
    st.sampled_from(["", "a", "ab", "b", "B", "é", "zz"]),
)
props = st.dictionaries(st.sampled_from(FIELDS), values, max_size=3)
fields = st.sampled_from(FIELDS + ["id"])


def _leaf() -> st.SearchStrategy:
    return st.one_of(
        st.builds(Compare, fields, st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), values),
        st.builds(In, fields, st.lists(values, min_size=1, max_size=3).map(tuple), st.booleans()),
    )


exprs = st.recursive(
    _leaf(),
    lambda inner: st.one_of(
        st.builds(And, st.lists(inner, min_size=2, max_size=3).map(tuple)),
        st.builds(Or, st.lists(inner, min_size=2, max_size=3).map(tuple)),
        st.builds(Not, inner),
    ),
    max_leaves=4,
)
queries = st.builds(
    Query,
    where=st.none() | exprs,
    order_by=st.lists(st.builds(OrderKey, fields, st.booleans()), max_size=2, unique_by=lambda k: k.field).map(tuple),
    limit=st.none() | st.integers(1, 5),
)


# Compound indexes in the randomized comparison: ORDER BY b / c with equality on their
# leading fields plans ordered walks of them (see compound_queries).
THREE_INDEXES = {"*": ["a", "b", ["a", "b"], ["b", "c"], ["a", "b", "c"]]}


def _lead(field: str) -> st.SearchStrategy:
    return st.one_of(
        st.builds(Compare, st.just(field), st.just("="), values),
        st.builds(In, st.just(field), st.lists(values, min_size=1, max_size=3).map(tuple), st.just(False)),
    )


@st.composite
def compound_queries(draw: st.DrawFn) -> Query:
    """Queries shaped for a compound index: equality / IN on the leading field(s), ORDER BY
    the last one (either direction, maybe a second key), a LIMIT, maybe an extra conjunct."""
    fs = draw(st.sampled_from([("a", "b"), ("b", "c"), ("a", "b", "c")]))
    items = [draw(_lead(f)) for f in fs[:-1]]
    items += draw(
        st.lists(
            st.one_of(_leaf(), st.builds(Compare, st.just(fs[-1]), st.sampled_from(["<", "<=", ">", ">="]), values)),
            max_size=2,
        )
    )
    order = [OrderKey(fs[-1], draw(st.booleans()))]
    if draw(st.booleans()):
        order.append(OrderKey(draw(st.sampled_from([f for f in FIELDS + ["id"] if f != fs[-1]])), draw(st.booleans())))
    return Query(
        where=And(tuple(items)) if len(items) > 1 else items[0], order_by=tuple(order), limit=draw(st.integers(1, 5))
    )


@pytest.fixture
def three(tmp_path: Path, pg_database: str) -> Iterator[list[StorageEngine]]:
    engines = [
        create_engine("memory"),
        create_engine("leveldb", path=str(tmp_path / "x"), indexes=THREE_INDEXES),
        create_engine("postgres", dsn=pg_database, pool_size=2, indexes=THREE_INDEXES),
    ]
    for e in engines:
        e.open()
    yield engines
    for e in engines:
        e.close()


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    data=st.lists(props, min_size=0, max_size=12),
    updates=st.lists(st.tuples(st.integers(0, 11), props, st.booleans()), max_size=4),
    qs=st.lists(queries | compound_queries(), min_size=1, max_size=4),
    after_pick=st.integers(0, 20),
)
def test_engines_agree(three: list[StorageEngine], data: list, updates: list, qs: list[Query], after_pick: int) -> None:
    coll = "c" + uuid.uuid4().hex[:10]  # a fresh collection per example
    engines = list(three)
    states = [S(f"id{i:02d}", **p) for i, p in enumerate(data)]
    for e in engines:
        write(e, coll, [EntityState(s.id, dict(s.values), s.stamp) for s in states])
    changed: dict[str, EntityState] = {}
    for idx, p, delete in updates:
        if idx >= len(states):
            continue
        s = changed.get(states[idx].id) or EntityState(states[idx].id, dict(states[idx].values), states[idx].stamp)
        s.merge_write(p, (2, "n2"))
        if delete:
            s.merge_delete((2, "n2"))
        changed[s.id] = s
    if changed:
        for e in engines:
            write(
                e,
                coll,
                [EntityState(s.id, dict(s.values), s.stamp, dict(s.stamps), s.deleted) for s in changed.values()],
                new=False,
                clock=2,
            )
    for q in qs:
        results = [ids(e.fetch(coll, q)) for e in engines]
        assert results[0] == results[1] == results[2], (q, results)
        full = engines[0].fetch(coll, Query(where=q.where, order_by=q.order_by))
        if full:
            after = full[after_pick % len(full)]
            paged = [ids(e.fetch(coll, q, after=after)) for e in engines]
            assert paged[0] == paged[1] == paged[2], (q, after, paged)
    counts = [e.count(coll) for e in engines]
    assert counts[0] == counts[1] == counts[2]


# --- LevelDB query planning ------------------------------------------------------------------


@pytest.fixture
def ldb(tmp_leveldb_path: Path) -> Iterator[StorageEngine]:
    e = create_engine("leveldb", path=str(tmp_leveldb_path), indexes={"items": ["n", "status"]})
    e.open()
    write(e, "items", [S(f"k{i:03d}", n=i % 17, status=("a", "b", None)[i % 3]) for i in range(120)])
    yield e
    e.close()


def test_leveldb_reader_is_get_bound_to_a_collection(tmp_leveldb_path: Path) -> None:
    """The durable node's direct-read path: `reader(c)(id) == get(c, id)` for live, partly
    stamped, deleted and missing ids, and through a close and reopen."""
    e = create_engine("leveldb", path=str(tmp_leveldb_path))
    e.open()
    write(e, "items", SAMPLE)
    st = e.read_states("items", ["a1"])["a1"]
    st.merge_delete((2, "n1"))
    write(e, "items", [st], new=False, clock=2)
    st = e.read_states("items", ["a2"])["a2"]
    st.merge_write({"n": 11}, (3, "n2"))
    write(e, "items", [st], new=False, clock=3)
    read, other = e.reader("items"), e.reader("other")  # type: ignore[attr-defined]
    probes = ["a1", "a2", "a3", "a5", "nope"]
    expected = [None, Entity("a2", {"status": "done", "n": 11, "tag": "y"})]
    assert [read(i) for i in probes] == [e.get("items", i) for i in probes]
    assert [read(i) for i in probes[:2]] == expected
    assert other("a3") is None
    e.close()
    e.open()
    assert [read(i) for i in probes] == [e.get("items", i) for i in probes]
    e.close()


@pytest.mark.parametrize(
    "query, words",
    [
        (Query(where=Compare("id", "=", "k005")), "point get"),
        (Query(where=In("status", ("a", "b"))), "index scan items.status"),
        (Query(where=And((Compare("n", ">", 3), Compare("n", "<=", 9)))), "range scan of index items.n"),
        (Query(order_by=(OrderKey("n", descending=True),), limit=5), "ordered walk with early stop of index items.n"),
        (Query(where=Compare("id", ">=", "k100"), limit=3), "ordered walk with early stop of state keys"),
        (Query(where=Compare("other", "=", 1)), "full scan"),
        (Query(order_by=(OrderKey("n"),)), "full scan"),  # no LIMIT: nothing to stop early for
    ],
)
def test_leveldb_plans(ldb: StorageEngine, query: Query, words: str) -> None:
    assert words in ldb.explain("items", query)
    mem = create_engine("memory")
    write(mem, "items", [S(f"k{i:03d}", n=i % 17, status=("a", "b", None)[i % 3]) for i in range(120)])
    assert ids(ldb.fetch("items", query)) == ids(mem.fetch("items", query))
    full = mem.fetch("items", Query(where=query.where, order_by=query.order_by))
    for after in full[:: max(1, len(full) // 7)]:
        assert ids(ldb.fetch("items", query, after=after)) == ids(mem.fetch("items", query, after=after))


def test_leveldb_index_keys_follow_total_order(tmp_leveldb_path: Path) -> None:
    """Byte order of encoded index values is the query total order (null < bools < numbers < strings)."""
    from loam.query.order import value_key
    from loam.storage.codec import encode_value

    vals = [
        None,
        False,
        True,
        -1e300,
        -(2**63),
        -2.5,
        -0.0,
        0,
        1,
        1.5,
        2**53,
        2**53 + 1,
        1e300,
        "",
        "\x00",
        "a",
        "a\x00",
        "a\x00b",
        "a\x01",
        "ab",
        "é",
        "\uffff",
        "😀",
    ]
    by_bytes = sorted(vals, key=lambda v: (encode_value(v), repr(v)))
    for a, b in zip(by_bytes, by_bytes[1:]):
        assert value_key(a) <= value_key(b), (a, b)
    assert encode_value(-0.0) == encode_value(0) == encode_value(0.0)
    assert encode_value(3) == encode_value(3.0)


def test_leveldb_nul_strings_scan_correctly(tmp_leveldb_path: Path) -> None:
    strs = ["", "\x00", "a", "a\x00", "a\x00b", "a\x01", "ab", "b"]
    ldb = create_engine("leveldb", path=str(tmp_leveldb_path), indexes={"items": ["s"]})
    ldb.open()
    mem = create_engine("memory")
    data = [S(f"k{i}{j}", s=v) for i, v in enumerate(strs) for j in range(2)]
    for e in (ldb, mem):
        write(e, "items", data)
    for v in strs:
        for op in ("=", "<", "<=", ">", ">="):
            for q in (
                Query(where=Compare("s", op, v)),
                Query(where=Compare("s", op, v), order_by=(OrderKey("s", descending=True),), limit=3),
            ):
                assert ids(ldb.fetch("items", q)) == ids(mem.fetch("items", q)), q
    for desc in (False, True):  # keyset positions on NUL-extended strings (ordered walk)
        q = Query(order_by=(OrderKey("s", descending=desc),), limit=3)
        for after in mem.fetch("items", Query(order_by=q.order_by)):
            assert ids(ldb.fetch("items", q, after=after)) == ids(mem.fetch("items", q, after=after)), (q, after)
    ldb.close()


# --- compound indexes ------------------------------------------------------------------------

WINDOW_DATA = [
    S(f"w{i:03d}", genre=("rock", "jazz", "pop", None)[i % 4], rating=(i * 7) % 11, year=1990 + i % 5)
    for i in range(160)
] + [
    S("w900", genre="rock"),
    S("w901", genre="rock", rating="x"),
    S("w902", genre="rock", rating=2.5),
    S("w903", rating=3),
]


def _compound_ldb(path: Path, indexes: dict | None = None) -> StorageEngine:
    e = create_engine(
        "leveldb",
        path=str(path),
        indexes=indexes if indexes is not None else {"albums": ["genre", ["genre", "rating"]]},
    )
    e.open()
    return e


def _index_keys(e: StorageEngine, name: str) -> list[bytes]:
    return list(e._handle().iterator(prefix=b"i\x00albums\x00" + name.encode() + b"\x00", include_value=False))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "query",
    [
        Query(where=Compare("genre", "=", "rock"), order_by=(OrderKey("rating", descending=True),), limit=3),
        Query(where=Compare("genre", "=", "rock"), order_by=(OrderKey("rating"),), limit=4),
        Query(where=In("genre", ("jazz", "rock", None)), order_by=(OrderKey("rating", descending=True),), limit=5),
        Query(
            where=And((Compare("genre", "=", "pop"), Compare("rating", "<", 6))),
            order_by=(OrderKey("rating", descending=True), OrderKey("year")),
            limit=3,
        ),
        Query(
            where=And((Compare("genre", "=", "rock"), Compare("year", "=", 1992))),
            order_by=(OrderKey("rating"),),
            limit=2,
        ),
        Query(
            where=And((Compare("genre", "=", "rock"), Compare("rating", ">=", 4))),
            order_by=(OrderKey("rating"),),
            limit=6,
        ),
    ],
)
def test_leveldb_compound_index_walk(tmp_leveldb_path: Path, query: Query) -> None:
    """Equality on the leading field + ORDER BY the next one with a LIMIT walks the compound
    index, and returns exactly what the memory engine returns, from every keyset position."""
    ldb = _compound_ldb(tmp_leveldb_path)
    mem = create_engine("memory")
    for e in (ldb, mem):
        write(e, "albums", WINDOW_DATA)
    assert "ordered walk with early stop of compound index albums.genre+rating" in ldb.explain("albums", query)
    assert ("descending" in ldb.explain("albums", query)) == query.order_by[0].descending
    assert ids(ldb.fetch("albums", query)) == ids(mem.fetch("albums", query))
    for after in mem.fetch("albums", Query(where=query.where, order_by=query.order_by)):
        assert ids(ldb.fetch("albums", query, after=after)) == ids(mem.fetch("albums", query, after=after)), after
    for lim in (1, 2, 7, 50):
        assert ids(ldb.fetch("albums", query, limit=lim)) == ids(mem.fetch("albums", query, limit=lim))
    ldb.close()


def test_leveldb_compound_plan_only_when_it_fits(tmp_leveldb_path: Path) -> None:
    ldb = _compound_ldb(tmp_leveldb_path)
    write(ldb, "albums", WINDOW_DATA)
    rock = Compare("genre", "=", "rock")
    assert "compound" not in ldb.explain("albums", Query(where=rock, order_by=(OrderKey("rating"),)))  # no LIMIT
    assert "compound" not in ldb.explain("albums", Query(where=rock, order_by=(OrderKey("year"),), limit=3))
    assert "compound" not in ldb.explain("albums", Query(order_by=(OrderKey("rating"),), limit=3))  # no equality
    assert "point get" in ldb.explain(
        "albums", Query(where=And((rock, Compare("id", "=", "w000"))), order_by=(OrderKey("rating"),), limit=3)
    )
    many = In("genre", tuple(f"g{i}" for i in range(40)))  # too many walks: the prefix scan reads less
    assert "index scan albums.genre" in ldb.explain(
        "albums", Query(where=many, order_by=(OrderKey("rating"),), limit=3)
    )
    ldb.close()


def test_leveldb_compound_index_maintenance(tmp_leveldb_path: Path) -> None:
    """Entries follow creates, updates of either component, deletes; the index is built when
    newly declared at open and dropped when no longer declared."""
    ldb = _compound_ldb(tmp_leveldb_path, {"albums": ["genre"]})
    write(ldb, "albums", WINDOW_DATA)
    assert _index_keys(ldb, "genre+rating") == []
    ldb.close()
    ldb = _compound_ldb(tmp_leveldb_path)  # newly declared: built from the stored states
    assert len(_index_keys(ldb, "genre+rating")) == len(WINDOW_DATA)
    q = Query(where=Compare("genre", "=", "rock"), order_by=(OrderKey("rating", descending=True),), limit=3)
    mem = create_engine("memory")
    write(mem, "albums", WINDOW_DATA)
    assert ids(ldb.fetch("albums", q)) == ids(mem.fetch("albums", q))
    changed = []
    for i, patch in (
        (0, {"rating": 99}),
        (1, {"genre": "rock"}),
        (4, {"genre": None, "rating": None}),
        (8, {"year": 1}),
        (12, {}),
    ):
        st = ldb.read_states("albums", [f"w{i:03d}"])[f"w{i:03d}"]
        st.merge_write(patch, (2, "n1"))
        if i == 12:
            st.merge_delete((2, "n1"))
        changed.append(st)
    for e in (ldb, mem):
        write(
            e,
            "albums",
            [EntityState(s.id, dict(s.values), s.stamp, dict(s.stamps), s.deleted) for s in changed],
            new=False,
            clock=2,
        )
    keys = _index_keys(ldb, "genre+rating")
    assert len(keys) == len(WINDOW_DATA) - 1  # one per visible entity: old entries removed
    live = {e.id: e for e in mem.fetch("albums", Query())}
    from loam.storage.codec import encode_values

    base = b"i\x00albums\x00genre+rating\x00"
    assert sorted(keys) == sorted(
        base + encode_values((e.props.get("genre"), e.props.get("rating"))) + e.id.encode() for e in live.values()
    )
    for after in [None, *mem.fetch("albums", Query(where=q.where, order_by=q.order_by))]:
        assert ids(ldb.fetch("albums", q, after=after)) == ids(mem.fetch("albums", q, after=after))
    assert ids(ldb.fetch("albums", q))[:2] == ["w901", "w000"]  # a string rating ranks above numbers
    ldb.close()
    ldb = _compound_ldb(tmp_leveldb_path, {"albums": ["genre"]})  # undeclared: dropped
    assert _index_keys(ldb, "genre+rating") == [] and len(_index_keys(ldb, "genre")) == len(WINDOW_DATA) - 1
    assert "compound" not in ldb.explain("albums", q)
    assert ids(ldb.fetch("albums", q)) == ids(mem.fetch("albums", q))
    ldb.close()


def test_leveldb_compound_keys_with_nul_strings(tmp_leveldb_path: Path) -> None:
    """A leading string that embeds NUL (00 FF) never leaks into a shorter string's prefix walk."""
    strs = ["", "\x00", "a", "a\x00", "a\x00b", "a\x01", "ab"]
    ldb = _compound_ldb(tmp_leveldb_path, {"albums": [["genre", "rating"]]})
    mem = create_engine("memory")
    data = [S(f"k{i}{j}", genre=g, rating=r) for i, g in enumerate(strs) for j, r in enumerate(strs[:4] + [1, None])]
    for e in (ldb, mem):
        write(e, "albums", data)
    for g in strs:
        for desc in (False, True):
            q = Query(where=Compare("genre", "=", g), order_by=(OrderKey("rating", descending=desc),), limit=3)
            assert "compound" in ldb.explain("albums", q)
            for after in [None, *mem.fetch("albums", Query(where=q.where, order_by=q.order_by))]:
                assert ids(ldb.fetch("albums", q, after=after)) == ids(mem.fetch("albums", q, after=after)), (g, after)
    ldb.close()


@pytest.mark.parametrize("engine", ["leveldb", "postgres"])
@pytest.mark.parametrize("bad", [[["genre", "id"]], [["genre", "genre"]], [[]], ["a+b", ["a", "b"]], [3]])
def test_compound_index_declarations_are_validated(engine: str, bad: list, tmp_path: Path) -> None:
    from loam.errors import ValidationError

    if engine == "postgres" and bad == ["a+b", ["a", "b"]]:
        return  # PostgreSQL names indexes by hash: no key-name clash to reject
    params = {"path": str(tmp_path / "x")} if engine == "leveldb" else {"dsn": "postgresql://unused"}
    with pytest.raises(ValidationError):
        create_engine(engine, indexes={"albums": bad}, **params)


@pytest.mark.parametrize("make", ["leveldb", "postgres"], indirect=True)
def test_compound_index_declared_on_reopen(make: Factory) -> None:
    e = make(indexes={"items": ["status"]})
    write(e, "items", [S(f"r{i:02d}", status=("a", "b")[i % 2], n=i % 7) for i in range(30)])
    e.close()
    e2 = make(indexes={"items": ["status", ["status", "n"]]})
    assert e2.describe()["indexes"] == {"items": ["status", ["status", "n"]]}
    q = Query(where=Compare("status", "=", "a"), order_by=(OrderKey("n", descending=True),), limit=4)
    assert ids(e2.fetch("items", q)) == ["r06", "r20", "r12", "r26"]
    e2.close()
    e3 = make(indexes={"items": ["status"]})
    assert ids(e3.fetch("items", q)) == ["r06", "r20", "r12", "r26"]


@pytest.mark.parametrize("desc", [False, True])
def test_leveldb_refills_through_tie_groups(tmp_leveldb_path: Path, desc: bool) -> None:
    """Keyset refills (`after` = any entity, small limits) through long runs of equal ORDER BY
    values: the walk skips the boundary's own tie group up to its id on the index key, and
    agrees with the memory engine; with a second ORDER BY key nothing may be skipped."""
    ldb = _compound_ldb(tmp_leveldb_path, {"albums": [["genre", "rating"]]})
    mem = create_engine("memory")
    data = [S(f"k{i:03d}", genre="rock" if i % 3 else "jazz", rating=i % 4, year=(i * 7) % 5) for i in range(60)]
    for e in (ldb, mem):
        write(e, "albums", data)
    for order in (
        (OrderKey("rating", descending=desc),),
        (OrderKey("rating", descending=desc), OrderKey("year", descending=not desc)),
    ):
        q = Query(where=Compare("genre", "=", "rock"), order_by=order, limit=10)
        assert "compound" in ldb.explain("albums", q)
        for after in [None, *mem.fetch("albums", Query(where=q.where, order_by=order))]:
            for limit in (1, 3, 10):
                assert ids(ldb.fetch("albums", q, after=after, limit=limit)) == ids(
                    mem.fetch("albums", q, after=after, limit=limit)
                ), (order, after, limit)
    ldb.close()


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**30])
def test_integers_beyond_64_bits_are_a_clear_error_or_stored(make: Factory, value: int) -> None:
    """The model takes any int; the JSON engines hold 64 bits. Those refuse the write with a
    ValidationError naming the property, and nothing of the batch is written; memory stores it."""
    e = make()
    big = [S("ok", n=1), S("big", n=2, huge=value)]
    if make.engine_name == "memory":  # type: ignore[attr-defined]
        write(e, "items", big)
        assert e.get("items", "big").props["huge"] == value  # type: ignore[union-attr]
        return
    with pytest.raises(ValidationError, match=r"property 'huge' of big: -?\d+ does not fit in 64 bits.*strings"):
        write(e, "items", big)
    assert e.get("items", "ok") is None and e.count("items") == 0
    write(e, "items", [S("edge", lo=-(2**63), hi=2**64 - 1)])
    assert e.get("items", "edge").props == {"lo": -(2**63), "hi": 2**64 - 1}  # type: ignore[union-attr]
