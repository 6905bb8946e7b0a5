"""In-memory storage engine (dicts): for unit tests and as the reference behaviour."""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

from loam.errors import StorageError
from loam.model import Entity, EntityState
from loam.query.ast import Query
from loam.query.evaluate import run_query
from loam.storage.base import WriteBatch


def _copy(st: EntityState) -> EntityState:
    # Callers keep mutating their EntityState objects; the engine must not share them.
    return EntityState(st.id, dict(st.values), st.stamp, dict(st.stamps), st.deleted)


class MemoryEngine:
    """Dict-backed engine; queries are full scans evaluated in Python. Nothing is durable."""

    name: ClassVar[str] = "memory"
    blocking: ClassVar[bool] = False

    def __init__(self, indexes: dict[str, list[str]] | None = None) -> None:
        # `indexes` is accepted for configuration parity with the other engines; scans only.
        self.indexes = {c: list(f) for c, f in (indexes or {}).items()}
        self._data: dict[str, dict[str, EntityState]] = {}
        self._commits: dict[str, dict[str, Any]] = {}  # by commit_id: a re-sent commit is stored once
        self._last_clock = 0
        self._closed = False

    def open(self) -> None:
        self._closed = False

    def close(self) -> None:
        self._closed = True

    def _coll(self, collection: str) -> dict[str, EntityState]:
        if self._closed:
            raise StorageError("memory engine is closed; open() it again or create a new engine")
        return self._data.get(collection) or {}

    def read_states(self, collection: str, ids: Sequence[str]) -> dict[str, EntityState]:
        coll = self._coll(collection)
        return {i: _copy(coll[i]) for i in ids if i in coll}

    def apply(self, batch: WriteBatch) -> None:
        self._coll("")  # closed check
        for collection, st in batch.states:
            self._data.setdefault(collection, {})[st.id] = _copy(st)
        if batch.commit is not None:
            self._commits.setdefault(str(batch.commit["commit_id"]), dict(batch.commit))
            self._last_clock = max(self._last_clock, int(batch.commit["clock"]))

    def get(self, collection: str, id: str) -> Entity | None:
        st = self._coll(collection).get(id)
        if st is None or st.deleted is not None:
            return None
        return Entity(id, dict(st.values))

    def fetch(
        self, collection: str, query: Query, *, after: Entity | None = None, limit: int | None = None
    ) -> list[Entity]:
        entities = [Entity(st.id, dict(st.values)) for st in self._coll(collection).values() if st.deleted is None]
        return run_query(query, entities, after=after, limit=limit if limit is not None else query.limit)

    def count(self, collection: str) -> int:
        return sum(1 for st in self._coll(collection).values() if st.deleted is None)

    def collections(self) -> list[str]:
        self._coll("")
        return sorted(c for c, d in self._data.items() if d)

    def last_clock(self) -> int:
        return self._last_clock

    def commits_since(self, clock: int) -> list[dict[str, Any]]:
        return sorted(
            (dict(c) for c in self._commits.values() if c["clock"] > clock), key=lambda c: (c["clock"], c["commit_id"])
        )

    def explain(self, collection: str, query: Query) -> str:
        return f"memory: full scan of {collection!r} ({len(self._coll(collection))} states), filter+sort in Python"

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "durable": False, "indexes": self.indexes}


__all__ = ["MemoryEngine"]
