"""Several databases (namespaces) served by one loam process.

Each database is its own `DurableNode` over its own storage namespace, so no read,
fetch, live query or commit listener can see another database's entities: the same
collection and entity id in two databases are two different entities.

Namespaces per engine (`storage_factory(kind, **params)` builds the factory):
- memory: a separate engine per database;
- leveldb: a subdirectory `<path>/<name>` per database (a LevelDB directory is one lock);
- postgres: a schema `<schema_prefix><name>` per database, in one PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any, Callable

from loam.errors import ValidationError
from loam.node.durable import DurableNode
from loam.policy.base import PolicyAgent
from loam.storage import create_engine
from loam.storage.base import StorageEngine

StorageFactory = Callable[[str], StorageEngine]
PolicyFactory = Callable[[str], PolicyAgent]

# Lower case only: PostgreSQL folds unquoted names, a case-insensitive filesystem merges
# directories; 48 characters leave room for a schema prefix within PostgreSQL's 63.
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


def check_database_name(name: object) -> str:
    """A database name: 1-48 of a-z, 0-9, '_', starting with a letter."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValidationError(
            f"database name {name!r} is invalid: use 1-48 characters of a-z, 0-9 and '_', starting with a letter"
        )
    return name


def storage_factory(kind: str, **params: Any) -> StorageFactory:
    """A factory giving each database its own namespace of engine `kind`.

    leveldb needs `path` (the parent directory), postgres needs `dsn` and takes
    `schema_prefix` (default "loam_"); other parameters go to every engine."""
    if kind == "memory":
        return lambda name: create_engine("memory", **params)
    if kind == "leveldb":
        if "path" not in params:
            raise ValidationError("leveldb databases need path=<parent directory>; each database is a subdirectory")
        root = os.fspath(params.pop("path"))

        def leveldb(name: str) -> StorageEngine:
            os.makedirs(root, exist_ok=True)  # LevelDB creates the database directory, not its parents
            return create_engine("leveldb", path=os.path.join(root, name), **params)

        return leveldb
    if kind == "postgres":
        prefix = params.pop("schema_prefix", "loam_")
        if "schema" in params:
            raise ValidationError("postgres databases: pass schema_prefix, not schema (each database is a schema)")
        if not re.match(r"^[a-z_][a-z0-9_]{0,14}$", prefix):
            raise ValidationError(f"schema_prefix {prefix!r}: use up to 15 characters of a-z, 0-9 and '_'")
        return lambda name: create_engine("postgres", schema=prefix + name, **params)
    # Other engines have no namespace notion we know of: refuse rather than share one store.
    raise ValidationError(f"no per-database namespace for storage engine {kind!r}; use memory, leveldb or postgres")


class DatabaseHost:
    """Named databases, each a started `DurableNode`; `open_database` creates or reopens one.

    `policy` is one agent shared by every database, or a callable `name -> agent`.
    `node_options` are passed to every `DurableNode`."""

    def __init__(
        self,
        storage_factory: StorageFactory,
        policy: PolicyAgent | PolicyFactory | None = None,
        *,
        max_databases: int = 1000,
        **node_options: Any,
    ) -> None:
        self._factory = storage_factory
        self._policy = policy
        self.max_databases = max_databases
        self._node_options = node_options
        self._nodes: dict[str, DurableNode] = {}
        self._opening: dict[str, asyncio.Future[DurableNode]] = {}
        self._closed = False

    def _policy_for(self, name: str) -> PolicyAgent | None:
        p = self._policy
        if p is None or hasattr(p, "check_write"):
            return p  # type: ignore[return-value]
        return p(name)  # type: ignore[operator]

    async def open_database(self, name: str) -> DurableNode:
        """The started node of database `name`, opening (and creating) its storage on first use."""
        check_database_name(name)
        if self._closed:
            raise ValidationError(f"cannot open database {name!r}: the database host is closed")
        node = self._nodes.get(name)
        if node is not None:
            return node
        pending = self._opening.get(name)
        if pending is not None:  # opened concurrently: share the one node
            return await asyncio.shield(pending)
        if len(self._nodes) + len(self._opening) >= self.max_databases:
            raise ValidationError(
                f"cannot open database {name!r}: {self.max_databases} databases are open (max_databases); close one"
            )
        fut: asyncio.Future[DurableNode] = asyncio.get_running_loop().create_future()
        self._opening[name] = fut
        try:
            node = DurableNode(self._factory(name), self._policy_for(name), **self._node_options)
            await node.start()
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # nobody may be waiting
            raise
        finally:
            self._opening.pop(name, None)
        self._nodes[name] = node
        fut.set_result(node)
        return node

    def database(self, name: str) -> DurableNode:
        """The node of an open database; a ValidationError names the open ones otherwise."""
        node = self._nodes.get(name)
        if node is None:
            check_database_name(name)
            known = ", ".join(sorted(self._nodes)) or "(none)"
            raise ValidationError(f"database {name!r} is not open; open databases: {known}. Call open_database first")
        return node

    def names(self) -> list[str]:
        return sorted(self._nodes)

    async def close_database(self, name: str, reason: str = "database closed") -> None:
        node = self.database(name)
        del self._nodes[name]
        await node.close(reason)

    async def close(self, reason: str = "database host closed") -> None:
        """Close every database (their live queries get kind="closed" with `reason`)."""
        self._closed = True
        nodes, self._nodes = list(self._nodes.values()), {}
        await asyncio.gather(*(n.close(reason) for n in nodes))

    async def __aenter__(self) -> DatabaseHost:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def stats(self) -> dict[str, Any]:
        return {name: node.stats() for name, node in sorted(self._nodes.items())}


__all__ = ["DatabaseHost", "StorageFactory", "check_database_name", "storage_factory"]
