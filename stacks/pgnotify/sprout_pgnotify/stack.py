"""pgnotify as a sprout stack: durable nodes only, each a PostgreSQL schema with a pool and a listener.

Registered as entry point `sprout_harness.stacks: pgnotify = "sprout_pgnotify.stack:stack"`.
Settings it understands:

- storage.engine: `postgres` (the only one, also when unset); storage.dsn (default: SPROUT_PG_DSN, else a
  throwaway cluster stopped at teardown); storage.pool_size (connections per durable node);
  storage.params.indexes: `{collection: [property, ...]}` expression indexes.
- policy.id: `permissive` only (plain PostgreSQL has no policy agent here).
- stack.params: `schema` (schema name prefix, default `pgnotify`).

Capabilities: create/get/fetch/update/delete, live queries with ORDER BY + LIMIT windows.
No ephemeral nodes and no connectors: phases targeting ephemerals report "unsupported".
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any, Sequence

from psycopg.conninfo import conninfo_to_dict

from sprout_harness.contracts import Capabilities, ConfigError, Link, StackError, StackSettings, Unsupported
from sprout_harness.contracts.variants import BenchVariant, QueryFields
from sprout_harness.services.postgres import PostgresUnavailable, ensure_postgres
from sprout_pgnotify import __version__, schema
from sprout_pgnotify.client import PgClient
from sprout_pgnotify.listener import Commits, Listener

_STACK_PARAMS = {"schema"}
_STORAGE_KEYS = {"engine", "dsn", "pool_size", "indexes", "path"}  # `path` is the config's default, unused
_SCHEMA_PREFIX = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
NO_EPHEMERAL = (
    "pgnotify is plain PostgreSQL: it has durable nodes only (no ephemeral nodes, no connectors); "
    "target durable nodes, or use a stack with ephemeral nodes such as loam"
)


class PgNotifyStack:
    """The factory the runner calls (see sprout_harness/contracts/stack.py)."""

    name = "pgnotify"

    @classmethod
    def benchmark_variants(cls, query_fields: QueryFields) -> Sequence[BenchVariant]:
        """One variant, durable only; expression indexes take single properties."""
        indexes = {c: [f for f in fields if isinstance(f, str)] for c, fields in query_fields.items()}
        return [
            BenchVariant(
                "pgnotify",
                {"engine": "postgres", "pool_size": 4, "params": {"indexes": indexes}},
                needs=("postgres",),
                policy={"id": "permissive"},
            )
        ]

    @classmethod
    def validate(cls, settings: StackSettings) -> None:
        engine = settings.storage.get("engine", "postgres")
        if engine != "postgres":
            raise ConfigError(
                f"got {engine!r}; pgnotify stores entities in PostgreSQL only: set it to postgres", "storage.engine"
            )
        for key in settings.storage:
            if key not in _STORAGE_KEYS:
                raise ConfigError(
                    f"unknown pgnotify storage parameter; allowed: {', '.join(sorted(_STORAGE_KEYS - {'engine', 'path'}))}",
                    f"storage.params.{key}",
                )
        try:
            schema.check_indexes(settings.storage.get("indexes"), "storage.params.indexes")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        dsn = settings.storage.get("dsn")
        if dsn is not None:
            try:  # libpq's own parser: a DSN it cannot read fails here, not at the first connect
                conninfo_to_dict(dsn)
            except Exception as exc:
                raise ConfigError(f"libpq cannot parse it: {str(exc).strip()[:200]}", "storage.dsn") from None
        policy = settings.policy.get("id", "permissive")
        if policy != "permissive":
            raise ConfigError(f"got {policy!r}; pgnotify has no policy agents: use permissive", "policy.id")
        for key in settings.params:
            if key not in _STACK_PARAMS:
                raise ConfigError(
                    f"unknown pgnotify stack parameter; allowed: {', '.join(sorted(_STACK_PARAMS))}",
                    f"stack.params.{key}",
                )
        prefix = settings.params.get("schema", "pgnotify")
        if not isinstance(prefix, str) or not _SCHEMA_PREFIX.match(prefix):
            raise ConfigError(
                f"got {prefix!r}; use lower-case letters, digits, underscores (max 41)", "stack.params.schema"
            )

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.dsn: str | None = settings.storage.get("dsn")
        self.pool_size = int(settings.storage.get("pool_size", 4))
        self.indexes = schema.check_indexes(settings.storage.get("indexes"), "storage.params.indexes")
        self.prefix = settings.params.get("schema", "pgnotify")
        self.run_tag = uuid.uuid4().hex[:8]
        self.pg: Any = None
        self.clients: dict[int, PgClient] = {}

    def capabilities(self) -> Capabilities:
        return Capabilities(
            subscribe=True,
            live_limit=True,
            order_by=True,
            ephemeral=False,
            connectors=(),
            extra={"live_queries": "triggers + LISTEN/NOTIFY, windows refilled by SQL"},
        )

    async def start(self) -> None:
        if self.dsn:
            return
        try:
            self.pg = await asyncio.to_thread(ensure_postgres)
        except PostgresUnavailable as exc:
            raise StackError(str(exc)) from None
        self.settings.add_cleanup(self.pg.stop)
        self.dsn = self.pg.dsn

    def context(self, role: str, index: int) -> dict[str, Any]:
        return {"role": role, "index": index}

    def _schema_name(self, index: int) -> str:
        if self.pg is not None and self.pg.origin == "throwaway":
            return f"{self.prefix}_d{index}"
        # A server we do not own: a schema of our own per run, dropped at teardown.
        return f"{self.prefix}_{self.run_tag}_d{index}"

    async def durable(self, index: int, context: Any) -> PgClient:
        from psycopg_pool import AsyncConnectionPool

        if not self.dsn:
            raise StackError("pgnotify: durable() before start(): no PostgreSQL DSN")
        name = self._schema_name(index)
        pool = AsyncConnectionPool(
            self.dsn,
            min_size=1,
            max_size=self.pool_size,
            open=False,
            kwargs={"autocommit": True},
            name=f"pgnotify-{name}",
        )
        try:
            await pool.open(wait=True, timeout=30)
        except Exception as exc:
            await pool.close()
            raise StackError(
                f"pgnotify durable-{index}: cannot connect to PostgreSQL: {exc}; check storage.dsn / SPROUT_PG_DSN"
            ) from None
        try:
            async with pool.connection() as conn:
                for stmt in schema.schema_ddl(name):
                    await conn.execute(stmt)
            if self.pg is None or self.pg.origin != "throwaway":
                self.settings.add_cleanup(lambda dsn=self.dsn, s=name: _drop_schema(dsn, s))
            commits = Commits()
            listener = Listener(self.dsn, name, pool, commits)
            await listener.start()
        except BaseException:
            await pool.close()
            raise
        client = PgClient(index, pool, listener, commits, name, self.indexes)
        self.clients[index] = client
        return client

    async def connector(self, link: Link, durable: Any) -> Any:
        raise Unsupported(NO_EPHEMERAL)

    async def ephemeral(self, index: int, connector: Any, context: Any) -> Any:
        raise Unsupported(NO_EPHEMERAL)

    async def close(self) -> None:
        for i in list(self.clients):
            await self.clients.pop(i).close()

    def storage_details(self) -> dict[str, Any]:
        return {f"durable-{i}": c.describe() for i, c in self.clients.items()}

    def describe(self) -> dict[str, Any]:
        storage: dict[str, Any] = {
            "engine": "postgres",
            "pool_size": self.pool_size,
            "indexes": self.indexes,
            "layout": "one schema per durable node, one JSONB table per collection",
        }
        if self.clients:
            storage["nodes"] = self.storage_details()
        if self.pg is not None:
            storage["server"] = self.pg.describe()
        return {
            "stack": "pgnotify",
            "version": __version__,
            "storage": storage,
            "policy": {"id": "permissive"},
            "connectors": [],
        }


def _drop_schema(dsn: str, name: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema.ident(name)} CASCADE")


stack = PgNotifyStack
"""The entry point object: a StackFactory (class taking StackSettings)."""

__all__ = ["NO_EPHEMERAL", "PgNotifyStack", "stack"]
