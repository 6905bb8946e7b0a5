"""DDL: one PostgreSQL schema per durable node, one JSONB table per collection, change triggers.

Every collection table is `"<schema>"."e_<collection>" (id text primary key, props jsonb)`.
An AFTER INSERT/UPDATE/DELETE row trigger calls `pg_notify(<channel>, payload)` where the
payload is JSON `{"c": collection, "id": id, "op": "I"|"U"|"D", "tx": txid, "ts": µs}`:
`tx` is `txid_current()` (the writer learns the same number from its RETURNING clause and
maps it to the perf_counter_ns at which its COMMIT returned), `ts` the server's wall clock
at the change (a fallback for writes made outside this process). PostgreSQL delivers
notifications only after the transaction commits, and drops them when it rolls back.
"""

from __future__ import annotations

import re
from typing import Any

from sprout_pgnotify.queries import ident, index_expressions, literal

TRIGGER_FUNCTION = "pgnotify_emit"
_COLLECTION = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,50}$")


def check_collection(name: str) -> str:
    if not isinstance(name, str) or not _COLLECTION.match(name):
        raise ValueError(
            f"collection name {name!r} is not usable as a pgnotify table: use letters, digits and "
            "underscores (1-51 characters, not starting with a digit)"
        )
    return name


def table(schema: str, collection: str) -> str:
    """The quoted, schema-qualified table of `collection`."""
    return f"{ident(schema)}.{ident('e_' + check_collection(collection))}"


def channel(schema: str) -> str:
    """The NOTIFY channel of one durable node (its schema name; at most 63 bytes)."""
    return schema


def schema_ddl(schema: str) -> list[str]:
    """Create the schema and the trigger function every collection table uses."""
    s = ident(schema)
    return [
        f"CREATE SCHEMA IF NOT EXISTS {s}",
        f"""CREATE OR REPLACE FUNCTION {s}.{TRIGGER_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  row_id text;
BEGIN
  IF TG_OP = 'DELETE' THEN row_id := OLD.id; ELSE row_id := NEW.id; END IF;
  PERFORM pg_notify(TG_ARGV[0], json_build_object(
    'c', TG_ARGV[1], 'id', row_id, 'op', left(TG_OP, 1), 'tx', txid_current(),
    'ts', floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint)::text);
  RETURN NULL;
END
$fn$""",
    ]


def collection_ddl(schema: str, collection: str, indexed: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Create one collection's table, its change trigger and optional expression indexes."""
    t = table(schema, collection)
    out = [
        f'CREATE TABLE IF NOT EXISTS {t} (id text COLLATE "C" PRIMARY KEY, props jsonb NOT NULL)',
        f"DROP TRIGGER IF EXISTS pgnotify_change ON {t}",
        f"CREATE TRIGGER pgnotify_change AFTER INSERT OR UPDATE OR DELETE ON {t} FOR EACH ROW "
        f"EXECUTE FUNCTION {ident(schema)}.{TRIGGER_FUNCTION}({literal(channel(schema))}, {literal(collection)})",
    ]
    for prop in indexed:
        for n, expr in enumerate(index_expressions(prop)):
            name = ident(f"e_{collection}_{prop}_{n}"[:63])
            out.append(f"CREATE INDEX IF NOT EXISTS {name} ON {t} (({expr}))")
    return out


def check_indexes(value: Any, path: str) -> dict[str, list[str]]:
    """`{collection: [property, ...]}` from a config value, or ValueError naming `path`."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(v, list) and all(isinstance(p, str) for p in v) for v in value.values()
    ):
        raise ValueError(f"{path}: expected {{collection: [property, ...]}}, got {value!r}")
    for c in value:
        check_collection(c)
    return {c: list(v) for c, v in value.items()}
