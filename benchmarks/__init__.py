"""sprout's asv benchmark suite (see asv.conf.json and docs/asv.md).

The workload families (`bench_create`, `bench_fetch`, `bench_live_limit`, `bench_writers`,
`bench_churn`, `bench_fanout`, `bench_realtime`) re-export the stack-neutral families of
`sprout_harness.asvsuite` (one copy of the code; a store's own repository gets the same
modules from `sprout asv init`). The modules defined here are sprout's own: `anchors` (the raw
libraries under loam), `gate`, `targets`, the loam-native get in `bench_fetch`,
`monitor_overhead` and `harness_overhead`.

asv installs the project per commit and imports these files from the working tree. A commit
whose harness predates `sprout_harness.asvsuite` gets the working tree's copy of it, loaded
under the same name (its project modules are still imported from the commit, lazily, so what
that commit lacks reads n/a), with the stack axis that commit was benchmarked with.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_SUITE = "sprout_harness.asvsuite"
_QUERY_FIELDS = {"albums": ["genre", "year", "rating", ["genre", "rating"]], "pets": ["shelter", "species"]}
_SINGLE = {c: [f for f in fs if isinstance(f, str)] for c, fs in _QUERY_FIELDS.items()}
_PERMISSIVE = {"id": "permissive"}
# The stack axis of a harness without `asvtools.variants` (the names the published history uses).
_LEGACY_VARIANTS = (
    {
        "name": "loam-leveldb",
        "stack": "loam",
        "storage": {"engine": "leveldb", "params": {"indexes": _QUERY_FIELDS}},
        "connectors": ("inprocess", "websocket"),
        "policy": _PERMISSIVE,
    },
    {
        "name": "loam-postgres",
        "stack": "loam",
        "storage": {"engine": "postgres", "pool_size": 4, "params": {"indexes": _SINGLE}},
        "connectors": ("inprocess", "websocket"),
        "needs": ("postgres",),
        "policy": _PERMISSIVE,
    },
    {
        "name": "pgnotify",
        "stack": "pgnotify",
        "storage": {"engine": "postgres", "pool_size": 4, "params": {"indexes": _SINGLE}},
        "needs": ("postgres",),
        "policy": _PERMISSIVE,
    },
)


def _load_suite() -> None:
    try:
        importlib.import_module(_SUITE)
        return
    except ImportError:
        pass
    here = Path(__file__).resolve().parent.parent / "sprout_harness" / "asvsuite"
    spec = importlib.util.spec_from_file_location(_SUITE, here / "__init__.py", submodule_search_locations=[str(here)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_SUITE] = module
    spec.loader.exec_module(module)
    module.LEGACY_VARIANTS = _LEGACY_VARIANTS


_load_suite()
