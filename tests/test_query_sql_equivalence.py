"""The SQL compiler agrees with the Python evaluator on a real PostgreSQL.

Random datasets (null/bool/int/float/str incl. unicode and big numbers, missing
fields) and random queries (where trees, ORDER BY, LIMIT, keyset `after`) must give
identical ids in identical order from `run_query` and from `compile_select` on a
temp table. The database uses an ICU en-US collation when the server has ICU, so a
comparison that silently used the database collation instead of code-point order
would be caught.
"""

from __future__ import annotations

import uuid
from typing import Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from loam.model import Entity
from loam.query import parse
from loam.query.ast import And, Compare, In, Not, Or, OrderKey, Query
from loam.query.evaluate import run_query
from loam.query.sql import compile_select, compile_where

pytestmark = pytest.mark.postgres

FIELDS = ["a", "b", "c", "we'ird %s \\name"]  # the last one exercises field-name quoting
QUERY_FIELDS = FIELDS + ["id", "zz_missing"]

_strings = st.one_of(
    st.sampled_from(["", "a", "A", "b", "B", "ab", "a b", "é", "e", "z", "ß", "😀", "Ω", "10", "true", "null"]),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        max_size=4,
    ),
)
_numbers = st.one_of(
    st.sampled_from([0, 1, -1, 2, 1.0, -0.0, 0.5, 1.5, 2000, 1e23, 10**23, 2**53, 2**53 + 1, 2.0**53, 2.0**64, 2**64]),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=-5, max_value=5),
    st.floats(allow_nan=False, allow_infinity=False),
)
values = st.one_of(st.none(), st.booleans(), _numbers, _strings)
ids = st.text(alphabet="aAbB0_é😀-", min_size=1, max_size=4)


@st.composite
def datasets(draw) -> list[Entity]:
    entity_ids = draw(st.lists(ids, unique=True, max_size=14))
    out = []
    for eid in entity_ids:
        props = draw(st.dictionaries(st.sampled_from(FIELDS), values, max_size=len(FIELDS)))
        out.append(Entity(eid, props))
    return out


def leaves():
    return st.one_of(
        st.builds(Compare, st.sampled_from(QUERY_FIELDS), st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), values),
        st.builds(In, st.sampled_from(QUERY_FIELDS), st.lists(values, max_size=4).map(tuple), st.booleans()),
    )


exprs = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
    ),
    max_leaves=6,
)
order_bys = st.lists(st.builds(OrderKey, st.sampled_from(QUERY_FIELDS), st.booleans()), max_size=3).map(tuple)
queries = st.builds(Query, st.none() | exprs, order_bys, st.none() | st.integers(0, 8))


@pytest.fixture(scope="module")
def conn(pg_dsn: str) -> Iterator[psycopg.Connection]:
    """A connection to a fresh database (ICU en-US collation when available) with temp table `t`."""
    name = f"loam_q_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        try:
            admin.execute(
                f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING UTF8 '
                "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.utf8'"
            )
        except psycopg.Error:  # server built without ICU: the C locale still checks everything else
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING UTF8')
    dsn = psycopg.conninfo.make_conninfo(pg_dsn, dbname=name)
    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute('CREATE TEMP TABLE t (id text COLLATE "C" PRIMARY KEY, doc jsonb NOT NULL)')
            yield c
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _load(conn: psycopg.Connection, entities: list[Entity]) -> None:
    conn.execute("TRUNCATE t")
    if entities:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO t (id, doc) VALUES (%s, %s)", [(e.id, Jsonb(e.props)) for e in entities])


def _sql_ids(conn: psycopg.Connection, query: Query, after: Entity | None, limit: int | None) -> list[str]:
    sql, params = compile_select("t", query, after=after, limit=limit)
    return [row[0] for row in conn.execute(sql, params).fetchall()]


def _py_ids(query: Query, entities: list[Entity], after: Entity | None, limit: int | None) -> list[str]:
    return [e.id for e in run_query(query, entities, after=after, limit=limit)]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), entities=datasets(), query=queries)
def test_python_and_sql_agree(conn: psycopg.Connection, data, entities: list[Entity], query: Query) -> None:
    _load(conn, entities)
    after = None
    if data.draw(st.booleans(), label="use after"):
        if entities and data.draw(st.booleans(), label="after a stored entity"):
            after = data.draw(st.sampled_from(entities), label="after")
        else:
            after = Entity(
                data.draw(ids, label="after id"),
                data.draw(st.dictionaries(st.sampled_from(FIELDS), values, max_size=3), label="after props"),
            )
    limit = data.draw(st.none() | st.integers(0, 5), label="limit override")
    assert _sql_ids(conn, query, after, limit) == _py_ids(query, entities, after, limit)


def test_where_is_never_null(conn: psycopg.Connection) -> None:
    """Every compiled predicate is TRUE or FALSE (two-valued logic), even on missing fields."""
    _load(conn, [Entity("e1", {}), Entity("e2", {"a": None}), Entity("e3", {"a": True}), Entity("e4", {"a": "x"})])
    for text in ["a = 1", "a != 1", "a > 1", "a < 'x'", "a IN (1, null)", "a NOT IN ('x')", "a >= true", "a = null"]:
        where, params = compile_where(parse(text).where)
        rows = conn.execute(f"SELECT id, ({where}) IS NULL FROM t", params).fetchall()
        assert not any(is_null for _, is_null in rows), text


def test_documented_example(conn: psycopg.Connection) -> None:
    entities = [
        Entity("r1", {"year": 2001, "genre": "rock", "name": "b"}),
        Entity("r2", {"year": 2001, "genre": "jazz", "name": "a"}),
        Entity("r3", {"year": 1999, "genre": "rock", "name": "c"}),
        Entity("r4", {"year": "unknown", "genre": "blues"}),
        Entity("r5", {"year": 2005, "genre": "pop"}),
        Entity("r6", {"year": True, "genre": "rock"}),
    ]
    _load(conn, entities)
    q = parse("year > 2000 AND (genre = 'rock' OR genre IN ('jazz', 'blues')) ORDER BY year DESC, name LIMIT 10")
    expected = ["r4", "r2", "r1"]  # strings rank above numbers; tie on 2001 ordered by name
    assert _py_ids(q, entities, None, None) == expected
    assert _sql_ids(conn, q, None, None) == expected
    assert _sql_ids(conn, q, entities[1], None) == ["r1"]


def test_indexes_can_serve_the_compiled_shapes(conn: psycopg.Connection) -> None:
    """The documented index shapes are matched by the planner (no timing, just the plan)."""
    conn.execute('CREATE TEMP TABLE ix (id text COLLATE "C" PRIMARY KEY, doc jsonb NOT NULL)')
    try:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO ix VALUES (%s, %s)",
                [
                    (f"e{i:05d}", Jsonb({"year": 1900 + i % 120, "name": f"n{i}", "genre": f"g{i % 50}"}))
                    for i in range(3000)
                ],
            )
        conn.execute("CREATE INDEX ix_gin ON ix USING gin (doc jsonb_path_ops)")
        conn.execute("CREATE INDEX ix_year ON ix ((doc -> 'year'))")
        conn.execute("CREATE INDEX ix_name ON ix (((doc ->> 'name') COLLATE \"C\"))")
        conn.execute("ANALYZE ix")
        conn.execute("SET enable_seqscan = off")

        def plan(text: str) -> str:
            sql, params = compile_select("ix", parse(text))
            return "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, params).fetchall())

        assert "ix_gin" in plan("genre = 'g7'")
        assert "ix_gin" in plan("genre IN ('g1', 'g2')")
        assert "ix_year" in plan("year = 1950")
        assert "ix_year" in plan("year >= 1950 AND year < 1960 ORDER BY name")
        assert "ix_year" in plan("year > 2010 AND year <= 1e308")
        assert "ix_name" in plan("name > 'n2999'")
        assert "ix_pkey" in plan("id > 'e02990' LIMIT 3")
        assert "ix_pkey" in plan("ORDER BY id LIMIT 3")
    finally:
        conn.execute("RESET enable_seqscan")
        conn.execute("DROP TABLE ix")
