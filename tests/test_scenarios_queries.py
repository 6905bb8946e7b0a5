"""The query scenarios (query-simple, -complex, -sorted, -paginated, -large) at small sizes: on
loam (LevelDB, PostgreSQL) and on the in-test minimal stack; every answer is checked against
the reference evaluator, a stack that gets answers wrong fails each of them, and the
per-query-type latencies reach every report format.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from sprout_harness.cli import cli
from sprout_harness.config import config_from_dict, load_config
from sprout_harness.contracts import AllOf, AnyOf, Cond, QuerySpec
from sprout_harness.contracts.errors import ConfigError
from sprout_harness.topology.runner import run
from support.scenarios import ROOT, all_reports, assert_ok, assert_phase_figures
from support.stacks import DictClient, DictStack, Store

TYPES = {
    "query-simple": ["eq", "gt", "lt"],
    "query-complex": ["and", "or", "in", "not", "nested"],
    "query-sorted": ["asc", "desc", "string", "multi", "top_k"],
    "query-paginated": ["page_by_id", "page_by_field"],
    "query-large": ["range", "in", "sorted", "all"],
}
TINY = [
    "datasets.albums=400",
    "phases.query-simple.params.queries=30",
    "phases.query-complex.params.queries=30",
    "phases.query-sorted.params.queries=30",
    "phases.query-paginated.params.queries=10",
    "phases.query-paginated.params.page_size=20",
    "phases.query-large.params.queries=8",
    "phases.query-large.params.min_rows=250",
]


def _check_all(result, tmp_path) -> None:
    assert_ok(result)
    assert [p.name for p in result.phases] == [f"{n}@durable" for n in TYPES]
    reports = all_reports(result, tmp_path)
    for name, types in TYPES.items():
        p = result.phase(f"{name}@durable")
        assert sorted(p.latencies) == sorted(f"query:{t}" for t in types), (name, sorted(p.latencies))
        counters = ["rows_returned", "walks", "pages"] if name == "query-paginated" else ["queries", "rows_returned"]
        assert_phase_figures(reports, p.name, [f"query:{t}" for t in types], counters)
    large = result.phase("query-large@durable")
    assert large.counters["rows_returned"] >= 250 * 8
    walks = result.phase("query-paginated@durable")
    assert walks.counters["pages"] > walks.counters["walks"]  # walks really span several pages


async def test_query_scenarios_on_leveldb(tmp_path):
    cfg = load_config(ROOT / "configs" / "queries-leveldb.yaml", TINY, check_stack=True)
    _check_all(await run(cfg), tmp_path)


@pytest.mark.postgres
async def test_query_scenarios_on_postgres(pg_database, tmp_path):
    cfg = load_config(
        ROOT / "configs" / "queries-postgres.yaml", [*TINY, f"storage.dsn={pg_database}"], check_stack=True
    )
    result = await run(cfg)
    assert result.metadata.storage["engine"] == "postgres"
    _check_all(result, tmp_path)


def _dict_cfg(phases, **extra):
    return config_from_dict(
        {
            "name": "dict-queries",
            "stack": {"name": "dict"},
            "storage": {"engine": "dict"},
            "datasets": {"albums": 400, "pets": 100},
            "phases": phases,
            **extra,
        }
    )


async def test_queries_suite_runs_on_a_stack_that_is_not_loam(tmp_path):
    cfg = _dict_cfg([], suite="queries", workload={"queries": 30, "min_rows": 250})
    result = await run(cfg, factory=DictStack)
    _check_all(result, tmp_path)


async def test_queries_on_pets_and_on_ephemerals():
    cfg = config_from_dict(
        {
            "name": "dict-pets",
            "stack": {"name": "dict"},
            "storage": {"engine": "dict"},
            "topology": {"durable": 1, "ephemeral": 2, "connector": "direct"},
            "datasets": {"albums": 0, "pets": 300},
            "phases": [
                {
                    "name": n,
                    "target": "ephemeral",
                    "params": {
                        "collection": "pets",
                        "queries": 10,
                        **({"min_rows": 200} if n == "query-large" else {}),
                    },
                }
                for n in TYPES
            ],
        }
    )
    assert_ok(await run(cfg, factory=DictStack))


# --- wrong answers fail -----------------------------------------------------------------------


class DropsOneRow(DictClient):
    """Answers every query with more than one row without its last row."""

    async def fetch(self, collection, query):
        rows = await super().fetch(collection, query)
        return rows[:-1] if len(rows) > 1 else rows


class SwapsOrder(DictClient):
    """Right rows, but the first two of an ordered answer swapped."""

    async def fetch(self, collection, query):
        rows = await super().fetch(collection, query)
        if query.order_by and len(rows) > 2:
            rows[0], rows[1] = rows[1], rows[0]
        return rows


def _inclusive(p):
    if isinstance(p, Cond) and p.field == "id" and p.op == ">":
        return Cond("id", ">=", p.value)
    if isinstance(p, (AllOf, AnyOf)):
        return type(p)(tuple(_inclusive(i) for i in p.items))
    return p


class InclusiveCursor(DictClient):
    """Off-by-one cursor: `id > x` evaluated as `id >= x`, so each page repeats the last row of the one before."""

    async def fetch(self, collection, query):
        q = QuerySpec(_inclusive(query.where), query.order_by, query.limit, query.kind)
        return await super().fetch(collection, q)


def _stack(client_cls):
    class Wrong(DictStack):
        async def durable(self, index, context):
            self.stores.append(Store())
            return client_cls(self.stores[-1])

    return Wrong


@pytest.mark.parametrize("name", list(TYPES))
async def test_a_dropped_row_fails_each_query_scenario(name):
    params = {"queries": 10, **({"min_rows": 250} if name == "query-large" else {})}
    result = await run(_dict_cfg([{"name": name, "params": params}]), factory=_stack(DropsOneRow))
    p = result.phases[0]
    assert p.status == "failed", (name, p.reason)
    expected = (
        "every walk's pages concatenate" if name == "query-paginated" else "every query equals the expected answer"
    )
    assert expected in p.reason


async def test_a_wrong_order_fails_query_sorted():
    result = await run(_dict_cfg([{"name": "query-sorted", "params": {"queries": 10}}]), factory=_stack(SwapsOrder))
    assert result.phases[0].status == "failed"
    assert "position 0: got id" in result.phases[0].reason


async def test_a_repeated_row_at_a_page_boundary_fails_query_paginated():
    result = await run(
        _dict_cfg([{"name": "query-paginated", "params": {"queries": 6, "page_size": 15}}]),
        factory=_stack(InclusiveCursor),
    )
    p = result.phases[0]
    assert p.status == "failed" and "returned twice" in p.reason, p.reason


# --- knobs, catalog, CLI ----------------------------------------------------------------------


async def test_query_large_on_a_small_collection_says_what_to_change():
    result = await run(_dict_cfg([{"name": "query-large", "params": {"min_rows": 5000}}]), factory=DictStack)
    p = result.phases[0]
    assert p.status == "failed" and "raise datasets.albums or lower min_rows" in p.reason


@pytest.mark.parametrize(
    "params, path",
    [
        ({"collection": "songs"}, "phases[0].params.collection"),
        ({"queries": 0}, "phases[0].params.queries"),
        ({"page_size": 0}, "phases[0].params.page_size"),
    ],
)
def test_query_knobs_are_validated(params, path):
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"stack": {"name": "loam"}, "phases": [{"name": "query-paginated", "params": params}]})
    assert exc.value.path == path


def test_sprout_list_shows_the_query_scenarios_and_suites():
    out = CliRunner().invoke(cli, ["list"]).output
    for name in TYPES:
        assert f"  {name} " in out, name
    assert "page_size=25" in out and "min_rows=2000" in out and "top_k=10" in out
    assert "query-simple -> query-complex -> query-sorted -> query-paginated -> query-large" in out
    for c in (
        "queries-leveldb",
        "queries-postgres",
        "ycsb-leveldb",
        "ycsb-postgres",
        "crud-leveldb",
        "open-loop-leveldb",
    ):
        assert f"  {c}" in out


def test_every_query_knob_is_documented():
    from sprout_harness.workloads import catalog

    doc = (ROOT / "docs" / "workloads.md").read_text()
    for name in TYPES:
        for knob, _, _ in catalog.knob_docs(catalog.get_phase(name)):
            assert f"`{knob}`" in doc, (name, knob)
