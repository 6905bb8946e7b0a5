"""pgnotify: a sprout stack on plain PostgreSQL — JSONB tables, change triggers, LISTEN/NOTIFY live queries.

It shares no code with loam; it plugs into the harness only through the
`sprout_harness.stacks` entry point (`pgnotify = "sprout_pgnotify.stack:stack"`).
Modules: schema (DDL + triggers), queries (QuerySpec -> SQL), listener (live queries),
client (the harness's Client surface), stack (the factory).
"""

__version__ = "0.2.0"
