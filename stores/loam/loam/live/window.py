"""The ordered result of one live query, kept up to date change by change.

`Window` is pure bookkeeping (no storage, no asyncio): the live query feeds it the
new value of every changed entity, asks how many members are `missing`, reads that
many entities after `boundary()` from storage, hands them to `extend`, and `finish`
returns the net diff of the batch.

Invariant (between batches): the window holds the first `len(window)` matching
entities in query order; with `complete` it holds *all* of them (fewer than LIMIT
exist), otherwise it is full (exactly LIMIT members) and more matches may exist
after the last member. Without LIMIT the window is the whole result and always
complete.

Decisions use only the current membership and the entity's *new* value, never the
change's `before`, so applying the same value twice is a no-op (refills may already
have read a value whose change is still queued).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Callable

from loam.model import Entity

_ABSENT = object()


class Window:
    __slots__ = ("key", "limit", "complete", "_keys", "_ents", "_key_of", "_before", "_filled")

    def __init__(self, key: Callable[[Entity], Any], limit: int | None) -> None:
        self.key = key
        self.limit = limit
        self.complete = True
        self._keys: list[Any] = []  # sort keys (unique: they end with the id), ascending
        self._ents: list[Entity] = []  # parallel to _keys
        self._key_of: dict[str, Any] = {}
        self._before: dict[str, Entity | None] = {}  # first-touch value per id in the current batch
        self._filled: set[str] = set()  # ids inserted by `extend` in the current batch

    # --- reading -----------------------------------------------------------

    @property
    def results(self) -> list[Entity]:
        return list(self._ents)

    def __len__(self) -> int:
        return len(self._ents)

    def __contains__(self, id: str) -> bool:
        return id in self._key_of

    def boundary(self) -> Entity | None:
        """The last member: refills read strictly after it."""
        return self._ents[-1] if self._ents else None

    def missing(self) -> int:
        """How many members a refill must look for (0 when full or complete)."""
        if self.limit is None or self.complete:
            return 0
        return max(0, self.limit - len(self._ents))

    # --- loading and changing ------------------------------------------------

    def load(self, entities: list[Entity], complete: bool) -> None:
        """Initial result, already in query order."""
        key = self.key
        self._ents = list(entities)
        self._keys = [key(e) for e in self._ents]
        self._key_of = {e.id: k for e, k in zip(self._ents, self._keys)}
        self.complete = complete or self.limit is None

    def _touch(self, id: str, prev: Entity | None) -> None:
        if id not in self._before:
            self._before[id] = prev

    def _insert(self, k: Any, e: Entity) -> None:
        i = bisect_left(self._keys, k)
        self._keys.insert(i, k)
        self._ents.insert(i, e)
        self._key_of[e.id] = k

    def _pop(self, i: int) -> Entity:
        self._keys.pop(i)
        e = self._ents.pop(i)
        del self._key_of[e.id]
        return e

    def apply(self, id: str, entity: Entity | None) -> None:
        """Account for `id`'s new value; `entity` is None when it no longer matches (or is gone/unreadable)."""
        limit = self.limit
        if limit == 0:
            return
        old = self._key_of.get(id, _ABSENT)
        if old is not _ABSENT:
            i = bisect_left(self._keys, old)
            if id not in self._before:  # self._touch(id, self._ents[i]), inline
                self._before[id] = self._ents[i]
            if entity is None:
                self._pop(i)
                return
            k = self.key(entity)
            if k == old:
                self._ents[i] = entity
                return
            self._pop(i)
            if limit is not None and not self.complete and (not self._keys or k > self._keys[-1]):
                # It moved past the last member; unknown matches may lie in between,
                # so it leaves and the refill decides who comes next.
                return
            self._insert(k, entity)
            return
        if entity is None:
            return
        k = self.key(entity)
        if limit is None:
            self._touch(id, None)
            self._insert(k, entity)
            return
        n = len(self._keys)
        if n >= limit:
            if k < self._keys[-1]:
                self._touch(id, None)
                self._insert(k, entity)
                last = self._ents[-1]
                self._touch(last.id, last)
                self._pop(len(self._keys) - 1)
            self.complete = False  # a match now exists after the last member
            return
        if self.complete or (self._keys and k < self._keys[-1]):
            self._touch(id, None)
            self._insert(k, entity)
        # else: it sorts after the boundary of an incomplete window: the refill will read it

    def extend(self, fetched: list[Entity], exhausted: bool) -> None:
        """Add refilled entities (read after `boundary()`); `exhausted`: storage has no more."""
        for e in fetched:
            old = self._key_of.get(e.id, _ABSENT)
            if old is not _ABSENT:  # storage is ahead of the queued changes: take its value
                i = bisect_left(self._keys, old)
                self._touch(e.id, self._ents[i])
                self._pop(i)
            else:
                self._touch(e.id, None)
                self._filled.add(e.id)
            self._insert(self.key(e), e)
        if self.limit is not None:
            while len(self._keys) > self.limit:
                last = self._ents[-1]
                self._touch(last.id, last)
                self._pop(len(self._keys) - 1)
                self.complete = False
        if exhausted:
            self.complete = True

    def finish(self) -> tuple[tuple[Entity, ...], tuple[Entity, ...], tuple[str, ...], int]:
        """Net diff since the last finish: (added in result order, updated, removed ids, gap_filled)."""
        if not self._before:
            self._filled.clear()
            return (), (), (), 0
        added: list[tuple[Any, Entity]] = []
        updated: list[Entity] = []
        removed: list[str] = []
        filled = 0
        key_of = self._key_of
        for id, prev in self._before.items():
            k = key_of.get(id, _ABSENT)
            if k is _ABSENT:
                if prev is not None:
                    removed.append(id)
                continue
            cur = self._ents[bisect_left(self._keys, k)]
            if prev is None:
                added.append((k, cur))
                if id in self._filled:
                    filled += 1
            elif cur is not prev and cur.props != prev.props:
                updated.append(cur)
        self._before = {}
        if self._filled:
            self._filled = set()
        if not added:  # the common case on a busy window: an update in place
            return (), tuple(updated), tuple(removed), filled
        if len(added) > 1:
            added.sort(key=_first)
        return tuple([e for _, e in added]), tuple(updated), tuple(removed), filled

    def size_estimate(self) -> int:
        """Rough bytes held (containers plus entity property dicts)."""
        import sys

        n = sys.getsizeof(self._keys) + sys.getsizeof(self._ents) + sys.getsizeof(self._key_of)
        for e, k in zip(self._ents, self._keys):
            n += sys.getsizeof(e) + sys.getsizeof(e.props) + sys.getsizeof(k)
        return n


def _first(pair: tuple[Any, Entity]) -> Any:
    return pair[0]
