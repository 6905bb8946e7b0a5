"""Storage engines, chosen by name plus parameters.

Adding an engine needs its own module and one registration line below (or a call to
`register_engine` from anywhere, e.g. a plugin package).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from loam.errors import ValidationError
from loam.storage.base import StorageEngine, WriteBatch

_REGISTRY: dict[str, str | Callable[..., StorageEngine]] = {
    "memory": "loam.storage.memory:MemoryEngine",
    "leveldb": "loam.storage.leveldb:LevelDBEngine",
    "postgres": "loam.storage.postgres:PostgresEngine",
}


def register_engine(name: str, factory: str | Callable[..., StorageEngine]) -> None:
    """Register an engine factory (a callable or an 'module:attr' path) under `name`."""
    _REGISTRY[name] = factory


def engine_names() -> list[str]:
    return sorted(_REGISTRY)


def create_engine(name: str, **params: Any) -> StorageEngine:
    """Build (not open) the engine registered as `name` with its parameters."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValidationError(f"unknown storage engine {name!r}; known engines: {', '.join(engine_names())}") from None
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    try:
        return factory(**params)
    except TypeError as exc:
        raise ValidationError(f"storage engine {name!r}: bad parameters {sorted(params)}: {exc}") from None


__all__ = ["StorageEngine", "WriteBatch", "create_engine", "engine_names", "register_engine"]
