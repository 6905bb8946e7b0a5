"""LevelDB storage engine (plyvel): one key space, states + declared indexes + commit log.

Key layout (all keys UTF-8, `\\x00`-separated; docs/storage.md has the full story):

    s\\x00<coll>\\x00<id>                        -> encoded state (codec.encode_state)
    i\\x00<coll>\\x00<field>\\x00<value>\\x00<id>  -> b''   (declared indexes, visible entities only)
    i\\x00<coll>\\x00<f1>+<f2>\\x00<v1>\\x00<v2>\\x00<id>  -> b''   (compound index [f1, f2])
    c\\x00<20-digit clock>\\x00<commit id>       -> orjson commit entry (one per transaction)
    m\\x00coll\\x00<coll>                        -> orjson list of the indexes built for it
                                                (a field name, or a list of them: compound)
    m\\x00count\\x00<coll>                       -> visible entity count (ASCII int)

A query is planned from the top-level AND conjuncts of its WHERE: id equality -> point gets;
equality/IN on the leading field(s) of a compound index whose last field is the first
ORDER BY key, with a LIMIT -> one ordered walk of the compound prefix per equality value
combination, each stopping after LIMIT matches past the keyset `after`;
equality/IN on an indexed field -> index prefix scans (unless ORDER BY another indexed
field with a LIMIT and the equality matches more than sqrt(limit x count) entities: then
the ordered walk below stops sooner); a range on an indexed field (or ORDER BY an indexed
field with a LIMIT) -> an ordered index walk that stops early; else a full scan of the
collection. The full predicate is always re-checked on fetched states, then
`run_query` sorts, applies the keyset `after` and the limit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Sequence

import orjson
import plyvel

from loam.errors import StorageError, StorageLockedError, ValidationError
from loam.model import Entity, EntityState
from loam.query.ast import Query
from loam.query.evaluate import compile_predicate, index_candidates, run_query
from loam.storage.base import WriteBatch
from loam.storage.codec import (
    SEP,
    decode_state,
    decode_visible,
    encode_state,
    encode_value,
    encode_values,
    unstorable,
)

_loads = orjson.loads
_dumps = orjson.dumps


_S = b"s\x00"
_I = b"i\x00"
_C = b"c\x00"
_M_COLL = b"m\x00coll\x00"
_M_COUNT = b"m\x00count\x00"
_MAX_WALKS = 32  # compound plan: at most this many equality value combinations (one walk each)


def _check_name(kind: str, name: str) -> bytes:
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValidationError(f"{kind} {name!r}: must be a non-empty string without NUL characters")
    return name.encode()


Spec = tuple[str, ...]  # the fields of one index, in key order (one field: a plain index)


def _spec(coll: str, entry: Any) -> Spec:
    """Normalise one declared index: a field name, or a list of them (compound index)."""
    fields = (entry,) if isinstance(entry, str) else tuple(entry) if isinstance(entry, (list, tuple)) else None
    if not fields:
        raise ValidationError(f"index {entry!r} on {coll}: declare a field name or a non-empty list of field names")
    for f in fields:
        _check_name("index field", f)
        if f == "id":
            raise ValidationError(f"index on {coll}.id: ids are the primary key already, do not declare them")
        if len(fields) > 1 and "+" in f:
            raise ValidationError(
                f"compound index {list(fields)} on {coll}: field {f!r} contains '+' (the key name separator)"
            )
    if len(set(fields)) != len(fields):
        raise ValidationError(f"compound index {list(fields)} on {coll}: a field is repeated")
    return fields


def _spec_json(spec: Spec) -> Any:
    return spec[0] if len(spec) == 1 else list(spec)


class _Coll:
    """Per-collection cached key prefixes, indexes (field tuple, key prefix) and visible count."""

    __slots__ = ("name", "sp", "bases", "count", "delta", "registered", "shapes")

    def __init__(self, name: str, specs: Sequence[Spec], count: int, registered: bool) -> None:
        nb = _check_name("collection name", name)
        self.name = name
        self.sp = _S + nb + SEP
        self.bases = [(fs, _I + nb + SEP + "+".join(fs).encode() + SEP) for fs in specs]
        self.count = count
        self.delta = 0
        self.registered = registered
        # compound-walk shapes by (where, first ORDER BY key): a live query's refills plan
        # the same query again and again; a new _Coll (new indexes) starts empty
        self.shapes: dict[tuple[Any, Any], _Shape | None] = {}


@dataclass(frozen=True, slots=True)
class _Shape:
    """The part of a compound-index plan that depends on the query only (not on `after`)."""

    fields: Spec
    prefixes: tuple[bytes, ...]  # index base + encoded equality values, one per walk
    lo: bytes | None  # inclusive bounds of a range on the ordered field
    hi: bytes | None
    reverse: bool
    index_field: str


_UNCACHEABLE = object()


@dataclass(slots=True)
class _Plan:
    """How `fetch` reads candidates; `describe` is what `explain` returns."""

    kind: str  # "ids" | "prefixes" | "walk" | "scan"
    describe: str
    ids: list[str] = field(default_factory=list)
    prefixes: list[bytes] = field(default_factory=list)
    index_field: str | None = None  # None: the walk is over state keys (ordered by id)
    walks: list[tuple[bytes, bytes, bytes]] = field(default_factory=list)  # compound: (prefix, start, stop)
    base: bytes = b""  # key prefix of the walked index / state keys
    start: bytes | None = None
    stop: bytes | None = None
    reverse: bool = False
    early_stop: bool = False
    shape: _Shape | None = None  # compound walks: what `describe` is built from (only by explain)
    bounded: bool = False

    def text(self, collection: str) -> str:
        sh = self.shape
        if sh is None:
            return self.describe
        fs = sh.fields
        return (
            f"ordered walk with early stop of compound index {collection}.{'+'.join(fs)} "
            f"({len(self.walks)} prefix(es) {', '.join(fs[:-1])} = ..., by {sh.index_field})"
            + (" [bounded]" if self.bounded else "")
            + (" descending" if self.reverse else "")
        )


class LevelDBEngine:
    """Embedded, single-process engine. `sync=True` fsyncs every `apply` (durable on power loss)."""

    name: ClassVar[str] = "leveldb"
    blocking: ClassVar[bool] = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        create_if_missing: bool = True,
        sync: bool = False,
        indexes: dict[str, list[str | list[str]]] | None = None,
        write_buffer_size: int = 16 << 20,
        lru_cache_size: int = 32 << 20,
    ) -> None:
        self.path = os.fspath(path)
        self.create_if_missing = create_if_missing
        self.sync = sync
        self._specs: dict[str, list[Spec]] = {}
        for c, entries in (indexes or {}).items():
            _check_name("collection name", c)  # "*": every collection
            specs = list(dict.fromkeys(_spec(c, e) for e in entries))
            names = ["+".join(fs) for fs in specs]
            if len(set(names)) != len(names):
                raise ValidationError(f"indexes on {c}: two declared indexes share the key name {names}")
            self._specs[c] = specs
        self.indexes = {c: [_spec_json(fs) for fs in specs] for c, specs in self._specs.items()}
        self.write_buffer_size = write_buffer_size
        self.lru_cache_size = lru_cache_size
        self._db: plyvel.DB | None = None
        self._get: Callable[[bytes], bytes | None] = self._lazy_get
        self._sp: dict[str, bytes] = {}  # collection -> state key prefix (read fast path)
        self._colls: dict[str, _Coll] = {}
        self._last_clock = 0

    # --- lifecycle -----------------------------------------------------------------------

    def open(self) -> None:
        if self._db is not None:
            return
        try:
            db = plyvel.DB(
                self.path,
                create_if_missing=self.create_if_missing,
                write_buffer_size=self.write_buffer_size,
                lru_cache_size=self.lru_cache_size,
            )
        except plyvel.IOError as exc:
            if "lock" in str(exc).lower():
                raise StorageLockedError(
                    f"LevelDB directory {self.path} is locked: another process (or another open engine "
                    "in this process) holds it; close that one or use another directory"
                ) from None
            raise StorageError(f"cannot open LevelDB directory {self.path}: {exc}") from None
        except plyvel.Error as exc:
            raise StorageError(f"cannot open LevelDB directory {self.path}: {exc}") from None
        self._db = db
        self._get = db.get
        self._colls = {}
        for key, raw in db.iterator(prefix=_M_COLL):
            name = key[len(_M_COLL) :].decode()
            cnt = db.get(_M_COUNT + key[len(_M_COLL) :])
            specs = [tuple(e) if isinstance(e, list) else (e,) for e in _loads(raw)]
            c = self._colls[name] = _Coll(name, specs, int(cnt) if cnt else 0, True)
            self._sp[name] = c.sp
        self._last_clock = 0
        for key in db.iterator(prefix=_C, reverse=True, include_value=False):
            self._last_clock = int(key[2:22])
            break
        self._sync_indexes()

    def close(self) -> None:
        db, self._db = self._db, None
        self._get = self._lazy_get
        if db is not None:
            db.close()

    def _handle(self) -> plyvel.DB:
        db = self._db
        if db is None:
            self.open()
            db = self._db
        return db  # type: ignore[return-value]

    def _sync_indexes(self) -> None:
        """Build indexes declared since the last open and drop undeclared ones (one batch)."""
        db = self._db
        assert db is not None
        for name, c in list(self._colls.items()):
            built = [f for f, _ in c.bases]
            wanted = self._wanted(name)
            if built == wanted:
                continue
            with db.write_batch(sync=self.sync) as wb:
                for f, base in c.bases:
                    if f not in wanted:
                        for k in db.iterator(prefix=base, include_value=False):
                            wb.delete(k)
                new = _Coll(name, wanted, c.count, True)
                add = [(f, b) for f, b in new.bases if f not in built]
                if add:
                    for key, raw in db.iterator(prefix=c.sp):
                        values = decode_visible(raw)
                        if values is None:
                            continue
                        idb = key[len(c.sp) :]
                        for fs, base in add:
                            wb.put(base + encode_values(values.get(f) for f in fs) + idb, b"")
                wb.put(_M_COLL + name.encode(), _dumps([_spec_json(fs) for fs in wanted]))
            self._colls[name] = new

    def _wanted(self, name: str) -> list[Spec]:
        """Declared indexes of a collection (`"*"` declares them for every collection)."""
        return self._specs.get(name, self._specs.get("*", []))

    def _coll(self, name: str) -> _Coll:
        c = self._colls.get(name)
        if c is None:
            c = _Coll(name, self._wanted(name), 0, False)
            self._colls[name] = c
            self._sp[name] = c.sp
        return c

    # --- writes --------------------------------------------------------------------------

    def apply(self, batch: WriteBatch) -> None:
        db = self._handle()
        new_ids = batch.new_ids
        touched: dict[str, _Coll] = {}
        pending: dict[bytes, EntityState] = {}
        colls = self._colls
        wb = db.write_batch(sync=self.sync)
        put = wb.put
        try:
            for cname, st in batch.states:
                c = colls.get(cname) or self._coll(cname)
                if cname not in touched:
                    touched[cname] = c
                sid = st.id
                if "\x00" in sid:
                    _check_name("entity id", sid)
                idb = sid.encode()
                key = c.sp + idb
                if sid in new_ids and not c.bases:
                    # Hot path: blind insert, no read-before-write, no index work; a new
                    # state (one stamp, not deleted) encoded inline as encode_state does.
                    if st.deleted is None and not st.stamps:
                        try:
                            put(key, _dumps((st.values, st.stamp[0], st.stamp[1])))
                        except TypeError as exc:
                            raise unstorable(sid, st.values, exc) from None
                        c.delta += 1
                    else:
                        put(key, encode_state(st))
                        if st.deleted is None:
                            c.delta += 1
                    continue
                if sid in new_ids:
                    old = None
                else:
                    old = pending.get(key)
                    if old is None:
                        raw = db.get(key)
                        old = decode_state(sid, raw) if raw is not None else None
                    pending[key] = st
                put(key, encode_state(st))
                vis_old = old is not None and old.deleted is None
                vis_new = st.deleted is None
                c.delta += vis_new - vis_old
                for fs, base in c.bases:
                    if len(fs) == 1:
                        f = fs[0]
                        ok = base + encode_value(old.values.get(f)) + SEP + idb if vis_old else None  # type: ignore[union-attr]
                        nk = base + encode_value(st.values.get(f)) + SEP + idb if vis_new else None
                    else:
                        ov, nv = (old.values if vis_old else None), (st.values if vis_new else None)  # type: ignore[union-attr]
                        ok = base + encode_values(ov.get(f) for f in fs) + idb if ov is not None else None
                        nk = base + encode_values(nv.get(f) for f in fs) + idb if nv is not None else None
                    if ok != nk:
                        if ok is not None:
                            wb.delete(ok)
                        if nk is not None:
                            put(nk, b"")
            for c in touched.values():
                nb = c.name.encode()
                if not c.registered:
                    put(_M_COLL + nb, _dumps([_spec_json(fs) for fs, _ in c.bases]))
                if c.delta:
                    put(_M_COUNT + nb, str(c.count + c.delta).encode())
            commit = batch.commit
            clock = self._last_clock
            if commit is not None:
                clock = max(clock, int(commit["clock"]))
                ck = _C + b"%020d" % int(commit["clock"]) + SEP + str(commit["commit_id"]).encode()
                put(ck, _dumps(commit))
            wb.write()
        except BaseException:
            for c in touched.values():
                c.delta = 0
            wb.clear()
            raise
        for c in touched.values():
            c.count += c.delta
            c.delta = 0
            c.registered = True
        self._last_clock = clock

    # --- reads ---------------------------------------------------------------------------

    def read_states(self, collection: str, ids: Sequence[str]) -> dict[str, EntityState]:
        db = self._handle()
        sp = self._coll_prefix(collection)
        out: dict[str, EntityState] = {}
        get = db.get
        for i in ids:
            raw = get(sp + i.encode())
            if raw is not None:
                out[i] = decode_state(i, raw)
        return out

    def _coll_prefix(self, collection: str) -> bytes:
        c = self._colls.get(collection)
        return c.sp if c is not None else _S + collection.encode() + SEP

    def get(self, collection: str, id: str) -> Entity | None:
        # Hot path: one dict lookup, one LevelDB get, one decode (see README figures).
        sp = self._sp.get(collection)
        if sp is None:
            sp = _S + collection.encode() + SEP
        raw = self._get(sp + id.encode())
        if raw is None:
            return None
        d = _loads(raw)
        if len(d) == 3 or d[3] is None:
            return Entity(id, d[0])
        return None

    def reader(self, collection: str) -> Callable[[str], Entity | None]:
        """`get` bound to one collection: `reader(c)(id) == get(c, id)`. The key prefix is
        computed once; the reader goes through the engine's current handle, so it stays
        valid across close and reopen (the node's per-collection read fast path)."""
        sp = self._sp.get(collection) or _S + collection.encode() + SEP
        engine, loads, entity = self, _loads, Entity

        def get(id: str) -> Entity | None:
            raw = engine._get(sp + id.encode())
            if raw is None:
                return None
            d = loads(raw)
            if len(d) == 3 or d[3] is None:
                return entity(id, d[0])
            return None

        return get

    def _lazy_get(self, key: bytes) -> bytes | None:
        self.open()  # first use (or use after close) opens the database
        return self._get(key)

    def count(self, collection: str) -> int:
        self._handle()
        c = self._colls.get(collection)
        return c.count if c is not None else 0

    def collections(self) -> list[str]:
        self._handle()
        return sorted(n for n, c in self._colls.items() if c.registered)

    def last_clock(self) -> int:
        self._handle()
        return self._last_clock

    def commits_since(self, clock: int) -> list[dict[str, Any]]:
        db = self._handle()
        start = _C + b"%020d" % (clock + 1) if clock >= 0 else _C
        return [_loads(v) for v in db.iterator(start=start, stop=b"c\x01", include_key=False)]

    # --- queries -------------------------------------------------------------------------

    def plan(self, collection: str, query: Query, *, after: Entity | None = None, limit: int | None = None) -> _Plan:
        """Choose how to read candidates for `query` (see module doc)."""
        c = self._colls.get(collection)
        eff_limit = limit if limit is not None else query.limit
        order = query.order_by
        first = order[0] if order else None
        # 2 (checked first, cached). equality / IN on the leading fields of a compound index
        #    whose last field is the first ORDER BY key, with a LIMIT -> ordered walk of each
        #    equality prefix; never when the query names ids (plan 1)
        if c is not None and first is not None and eff_limit is not None and c.bases:
            try:
                key = (query.where, first)
                shape = c.shapes.get(key, _UNCACHEABLE)
            except TypeError:  # an unhashable value in the query: plan without the cache
                key, shape = None, _UNCACHEABLE
            if shape is _UNCACHEABLE:
                shape = self._compound_shape(c, index_candidates(query.where), first)
                if key is not None:
                    if len(c.shapes) >= 4096:
                        c.shapes.clear()
                    c.shapes[key] = shape
            if shape is not None:
                return self._compound_plan(collection, shape, after)  # type: ignore[arg-type]
        sp = c.sp if c is not None else _S + collection.encode() + SEP
        bases = {fs[0]: b for fs, b in c.bases if len(fs) == 1} if c is not None else {}
        cands = index_candidates(query.where)

        # 1. id equality / IN -> point gets
        for cand in cands:
            if cand.kind == "eq" and cand.field == "id":
                ids = [v for v in cand.values if isinstance(v, str)]
                return _Plan("ids", f"point get of {len(ids)} id(s) in {collection!r}", ids=ids)
        # 3. equality / IN on an indexed field -> prefix scans of that index, unless the
        #    query is ORDER BY another indexed field with a LIMIT and the equality matches
        #    so many entities that the ordered walk (step 3) stops sooner (see _walk_wins)
        for cand in cands:
            if cand.kind == "eq" and cand.field in bases:
                base = bases[cand.field]
                ps = list(dict.fromkeys(base + encode_value(v) + SEP for v in cand.values))
                if (
                    first is not None
                    and eff_limit is not None
                    and first.field in bases
                    and first.field != cand.field
                    and c is not None
                    and self._walk_wins(ps, c.count, eff_limit)
                ):
                    break
                return _Plan(
                    "prefixes",
                    f"index scan {collection}.{cand.field} IN ({len(ps)} value(s))",
                    prefixes=ps,
                    index_field=cand.field,
                )
        # 4. ranges on an indexed field / id, or ORDER BY one with a LIMIT -> ordered walk
        bounds: dict[str, tuple[bytes | None, bytes | None]] = {}
        for cand in cands:
            if cand.kind != "range" or not (cand.field in bases or cand.field == "id"):
                continue
            lo = hi = None
            if cand.field == "id":  # ids are strings: only string bounds narrow the key range
                lo = cand.low.encode() if isinstance(cand.low, str) else None
                hi = cand.high.encode() + b"\x01" if isinstance(cand.high, str) else None
            else:  # inclusive bounds: over-select, never miss (the predicate is re-checked)
                lo = encode_value(cand.low) if cand.low is not None else None
                hi = encode_value(cand.high) + b"\x01" if cand.high is not None else None
            if lo is not None or hi is not None:
                bounds[cand.field] = (lo, hi)
        walk_field: str | None = None
        if first is not None and (first.field in bases or first.field == "id") and eff_limit is not None:
            walk_field = first.field
        elif first is None and "id" in bounds and eff_limit is not None:
            walk_field = "id"  # query order is id ascending
        elif bounds:
            walk_field = "id" if "id" in bounds else next(iter(bounds))
        if walk_field is not None:
            base = sp if walk_field == "id" else bases[walk_field]
            lo, hi = bounds.get(walk_field, (None, None))
            ordered = eff_limit is not None and (
                (first is not None and first.field == walk_field) or (first is None and walk_field == "id")
            )
            reverse = bool(ordered and first is not None and first.descending)
            if ordered and after is not None:
                av = after.get(walk_field)
                if walk_field == "id":
                    aenc = av.encode() if isinstance(av, str) else None
                else:
                    aenc = encode_value(av)
                if aenc is not None:
                    if reverse:
                        cap = aenc + b"\x00\xff"  # the after group, not longer strings (00 FF)
                        hi = cap if hi is None or cap < hi else hi
                    else:
                        lo = aenc if lo is None or aenc > lo else lo
            what = "state keys (id order)" if walk_field == "id" else f"index {collection}.{walk_field}"
            how = "ordered walk with early stop" if ordered else "range scan"
            rng = f" [{'lo' if lo else '-'}, {'hi' if hi else '-'}]"
            return _Plan(
                "walk",
                f"{how} of {what}{rng if (lo or hi) else ''}" + (" descending" if reverse else ""),
                index_field=None if walk_field == "id" else walk_field,
                base=base,
                start=base + lo if lo is not None else base,
                stop=base + hi if hi is not None else base[:-1] + b"\x01",
                reverse=reverse,
                early_stop=ordered,
            )
        return _Plan("scan", f"full scan of {collection!r}", start=sp, stop=sp[:-1] + b"\x01")

    def _compound_shape(self, c: _Coll, cands: list, first: Any) -> _Shape | None:
        """The compound index to walk for these candidates (the one covering the most
        equality fields whose last field is `first`), or None."""
        if any(cd.kind == "eq" and cd.field == "id" for cd in cands):
            return None  # point gets win
        eqs = {cd.field: cd.values for cd in cands if cd.kind == "eq"}
        best: tuple[Spec, bytes] | None = None
        for fs, base in c.bases:
            if len(fs) < 2:
                continue
            fits = fs[-1] == first.field and all(f in eqs for f in fs[:-1])
            if fits and (best is None or len(fs) > len(best[0])):
                best = (fs, base)
        if best is None:
            return None
        fs, base = best
        combos: list[tuple] = [()]
        for f in fs[:-1]:
            combos = [cmb + (v,) for cmb in combos for v in eqs[f]]
            if len(combos) > _MAX_WALKS:
                return None
        lo = hi = None
        for cd in cands:  # a range on the ordered field narrows every walk (inclusive bounds)
            if cd.kind == "range" and cd.field == first.field:
                lo = encode_value(cd.low) if cd.low is not None else None
                hi = encode_value(cd.high) + b"\x01" if cd.high is not None else None
        prefixes = tuple(base + cmb for cmb in dict.fromkeys(encode_values(cmb) for cmb in combos))
        return _Shape(fs, prefixes, lo, hi, first.descending, first.field)

    def _compound_plan(self, collection: str, shape: _Shape, after: Entity | None) -> _Plan:
        """Ordered walks of a compound index (leading fields fixed by equality, last field =
        the first ORDER BY key): one walk per combination of equality values, in the order's
        direction, from the keyset `after` on; `_candidates` stops each after LIMIT matches
        (the whole tie group of the last one), and `run_query` merges them."""
        lo, hi, reverse = shape.lo, shape.hi, shape.reverse
        if after is not None:
            aenc = encode_value(after.get(shape.index_field))
            if reverse:
                cap = aenc + b"\x00\xff"  # the after group, not longer strings (00 FF)
                hi = cap if hi is None or cap < hi else hi
            else:
                lo = aenc if lo is None or aenc > lo else lo
        # stop below FF: keys of longer strings that embed a NUL (00 FF) share the prefix
        walks = [
            (p, p + lo if lo is not None else p, p + hi if hi is not None else p + b"\xff") for p in shape.prefixes
        ]
        return _Plan(
            "cwalk",
            "",
            index_field=shape.index_field,
            walks=walks,
            reverse=reverse,
            early_stop=True,
            shape=shape,
            bounded=lo is not None or hi is not None,
        )

    def _walk_wins(self, prefixes: list[bytes], total: int, limit: int) -> bool:
        """Cost choice between an equality prefix scan and an ordered walk of the ORDER BY
        index (predicate re-checked, early stop after `limit` matches).

        With n entities matching the equality among `total`, the prefix scan reads n
        entities and the walk about limit * total / n (matches spread along the order), so
        the walk wins when n * n > limit * total. n is counted on index keys only (no
        state read, no decode) and the count stops at that threshold: the choice costs at
        most sqrt(limit * total) key steps, a fraction of either plan."""
        if total <= 0:
            return False
        need = limit * total
        db = self._handle()
        n = 0
        for p in prefixes:
            for _ in db.iterator(prefix=p, include_value=False):
                n += 1
                if n * n > need:
                    return True
        return False

    def explain(self, collection: str, query: Query) -> str:
        self._handle()
        p = self.plan(collection, query)
        recheck = (
            ", re-check predicate"
            if query.where is not None and p.kind != "scan"
            else (", filter by predicate" if query.where is not None else "")
        )
        return f"leveldb: {p.text(collection)}{recheck}, then sort/keyset/limit in Python"

    def fetch(
        self, collection: str, query: Query, *, after: Entity | None = None, limit: int | None = None
    ) -> list[Entity]:
        db = self._handle()
        eff_limit = limit if limit is not None else query.limit
        pred = compile_predicate(query.where) if query.where is not None else None
        plan = self.plan(collection, query, after=after, limit=eff_limit)
        sp = self._coll_prefix(collection)
        snap = db.snapshot()
        try:
            matches = list(self._candidates(snap, sp, plan, pred, after, eff_limit, len(query.order_by) <= 1))
        finally:
            snap.close()
        rest = Query(where=None, order_by=query.order_by, limit=eff_limit, text=query.text)
        return run_query(rest, matches, after=after, limit=eff_limit)

    def _candidates(
        self,
        snap: Any,
        sp: bytes,
        plan: _Plan,
        pred: Callable[[Entity], bool] | None,
        after: Entity | None,
        limit: int | None,
        id_tiebreak: bool = False,
    ) -> Iterable[Entity]:
        get = snap.get
        if plan.kind == "ids":
            for i in plan.ids:
                raw = get(sp + i.encode())
                if raw is not None:
                    vals = decode_visible(raw)
                    if vals is not None:
                        e = Entity(i, vals)
                        if pred is None or pred(e):
                            yield e
            return
        if plan.kind == "prefixes":
            seen: set[bytes] = set()
            for p in plan.prefixes:
                for k in snap.iterator(prefix=p, include_value=False):
                    idb = k[k.rindex(SEP) + 1 :]
                    if idb in seen:
                        continue
                    seen.add(idb)
                    raw = get(sp + idb)
                    vals = decode_visible(raw) if raw is not None else None
                    if vals is not None:
                        e = Entity(idb.decode(), vals)
                        if pred is None or pred(e):
                            yield e
            return
        # ordered walk(s) / range scan / full scan
        after_group: bytes | None = None
        # With the ORDER BY key alone (ties broken by id), the entities of the `after` group
        # up to `after`'s own id sort before the boundary: skipped on the index key, unread.
        after_id: bytes | None = None
        if plan.early_stop and after is not None:
            av = after.get(plan.index_field) if plan.index_field else after.id
            after_group = encode_value(av) if plan.index_field else (av.encode() if isinstance(av, str) else None)
            if id_tiebreak and plan.index_field is not None:
                after_id = after.id.encode()
        if plan.kind == "cwalk":
            for prefix, start, stop in plan.walks:
                yield from self._walk(snap, sp, plan, prefix, start, stop, pred, after_group, limit, after_id)
            return
        yield from self._walk(snap, sp, plan, plan.base, plan.start, plan.stop, pred, after_group, limit, after_id)

    def _walk(
        self,
        snap: Any,
        sp: bytes,
        plan: _Plan,
        base: bytes,
        start: bytes | None,
        stop: bytes | None,
        pred: Callable[[Entity], bool] | None,
        after_group: bytes | None,
        limit: int | None,
        after_id: bytes | None = None,
    ) -> Iterable[Entity]:
        """One key range in order; with `early_stop`, ends after `limit` matches past the
        `after` group once the ordered value (`group`) changes (ties are kept whole)."""
        get = snap.get
        on_states = plan.index_field is None
        n_beyond = 0
        last_group: bytes | None = None
        blen = len(base)
        it = snap.iterator(start=start, stop=stop, reverse=plan.reverse, include_value=on_states)
        for item in it:
            if on_states:
                k, raw = item
                idb = k[len(sp) :]
                group = idb
            else:
                k = item
                cut = k.rindex(SEP)
                idb = k[cut + 1 :]
                group = k[blen:cut]
                if after_id is not None and group == after_group and idb <= after_id:
                    continue
                raw = get(sp + idb)
                if raw is None:
                    continue
            if plan.early_stop and limit is not None and n_beyond >= limit and group != last_group:
                break
            vals = decode_visible(raw)
            if vals is None:
                continue
            e = Entity(idb.decode(), vals)
            if pred is None or pred(e):
                last_group = group
                if group != after_group:
                    n_beyond += 1
                yield e

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "path": self.path,
            "sync": self.sync,
            "durability": "fsync on every commit"
            if self.sync
            else "OS page cache (survives a process crash, not power loss)",
            "write_buffer_size": self.write_buffer_size,
            "indexes": self.indexes,
            "plyvel": plyvel.__version__,
        }


__all__ = ["LevelDBEngine"]
