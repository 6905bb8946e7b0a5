"""A second, minimal stack for the harness tests: `DictStack`, dict-backed and in memory,
with naive live queries (every commit re-evaluates every subscription). It proves the
harness depends on the contracts only, not on loam; `NoLiveStack` lacks subscriptions, so
the live phases report "unsupported". `TINY` is a small config that runs the core suite on it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any, Mapping, Sequence

from sprout_harness.contracts import (
    AllOf,
    AnyOf,
    Capabilities,
    Cond,
    Doc,
    InList,
    Link,
    Not,
    Notification,
    QuerySpec,
    StackSettings,
    Unsupported,
    WriteAck,
)

# --- a tiny independent query evaluator (deliberately not the harness's) ------------------

_RANK = {type(None): 0, bool: 1, int: 2, float: 2, str: 3}


def _key(v: Any) -> tuple:
    return (_RANK[type(v)], v if v is not None else 0)


def _match(p: Any, props: Mapping[str, Any], id_: str) -> bool:
    if p is None:
        return True
    if isinstance(p, Cond):
        a = _key(id_ if p.field == "id" else props.get(p.field))
        b = _key(p.value)
        return {"=": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[p.op]
    if isinstance(p, InList):
        v = _key(props.get(p.field))
        return (v in [_key(x) for x in p.values]) != p.negated
    if isinstance(p, AllOf):
        return all(_match(i, props, id_) for i in p.items)
    if isinstance(p, AnyOf):
        return any(_match(i, props, id_) for i in p.items)
    if isinstance(p, Not):
        return not _match(p.item, props, id_)
    raise TypeError(p)


def query_rows(rows: dict[str, dict], q: QuerySpec) -> list[Doc]:
    hits = [Doc(i, dict(p)) for i, p in rows.items() if _match(q.where, p, i)]
    hits.sort(key=lambda d: d.id)
    for o in reversed(q.order_by):
        hits.sort(key=lambda d: _key(d.props.get(o.field)), reverse=o.descending)
    return hits[: q.limit] if q.limit is not None else hits


# --- the stack --------------------------------------------------------------------------------


class Sub:
    def __init__(self, store: Store, coll: str, q: QuerySpec, cb: Any) -> None:
        self.store, self.coll, self.q, self.cb = store, coll, q, cb
        self._results = query_rows(store.data.get(coll, {}), q)

    @property
    def results(self) -> list[Doc]:
        return self._results

    def refresh(self, commit_ns: int) -> None:
        new = query_rows(self.store.data.get(self.coll, {}), self.q)
        old = {d.id: d for d in self._results}
        now = {d.id: d for d in new}
        added = tuple(d for i, d in now.items() if i not in old)
        updated = tuple(d for i, d in now.items() if i in old and old[i].props != d.props)
        removed = tuple(i for i in old if i not in now)
        moved = [d.id for d in new] != [d.id for d in self._results]
        self._results = new
        if added or updated or removed or moved:
            self.cb(Notification(commit_ns=commit_ns, added=added, updated=updated, removed=removed))

    async def close(self) -> None:
        self.store.subs.discard(self)


class Store:
    """The durable node's state."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, dict]] = {}
        self.subs: set[Sub] = set()
        self.ids = itertools.count()
        self.closed = False

    def commit(self, colls: set[str]) -> int:
        ns = time.perf_counter_ns()
        loop = asyncio.get_running_loop()
        for s in list(self.subs):
            if s.coll in colls:
                loop.call_soon(s.refresh, ns)  # delivered asynchronously, like a real stack
        return ns


class DictClient:
    def __init__(self, store: Store, live: bool = True) -> None:
        self.store, self.live = store, live

    async def create(self, collection: str, props: Sequence[Mapping[str, Any]]) -> WriteAck:
        rows = self.store.data.setdefault(collection, {})
        ids = []
        for p in props:
            i = f"{next(self.store.ids):012d}"
            rows[i] = dict(p)
            ids.append(i)
        return WriteAck(self.store.commit({collection}), tuple(ids))

    async def get(self, collection: str, id: str) -> Doc | None:
        p = self.store.data.get(collection, {}).get(id)
        return None if p is None else Doc(id, dict(p))

    async def fetch(self, collection: str, query: QuerySpec) -> list[Doc]:
        return query_rows(self.store.data.get(collection, {}), query)

    async def update(self, collection: str, id: str, props: Mapping[str, Any]) -> WriteAck:
        self.store.data[collection][id].update(props)
        return WriteAck(self.store.commit({collection}))

    async def delete(self, collection: str, id: str) -> WriteAck:
        self.store.data[collection].pop(id, None)
        return WriteAck(self.store.commit({collection}))

    async def subscribe(self, collection: str, query: QuerySpec, callback: Any) -> Sub:
        if not self.live:
            raise Unsupported("no live queries")
        sub = Sub(self.store, collection, query, callback)
        self.store.subs.add(sub)
        return sub

    async def close(self) -> None:
        pass


class DictStack:
    """Durable nodes are dicts; an ephemeral is a client of its durable's dict via a 'direct' connector."""

    name = "dict"
    live = True
    instances: list[DictStack] = []

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.stores: list[Store] = []
        self.closed = False
        self.calls: list[str] = []
        DictStack.instances.append(self)

    def capabilities(self) -> Capabilities:
        return Capabilities(subscribe=self.live, live_limit=self.live, ephemeral=True, connectors=("direct",))

    async def start(self) -> None:
        self.calls.append("start")

    def context(self, role: str, index: int) -> dict:
        return {"user": f"{role}-{index}"}

    async def durable(self, index: int, context: Any) -> DictClient:
        self.calls.append(f"durable {index} {context['user']}")
        self.stores.append(Store())
        return DictClient(self.stores[-1], self.live)

    async def connector(self, link: Link, durable: DictClient) -> Store:
        self.calls.append(f"connector {link.ephemeral}->{link.durable} {link.connector}")
        return durable.store

    async def ephemeral(self, index: int, connector: Store, context: Any) -> DictClient:
        self.calls.append(f"ephemeral {index} {context['user']}")
        return DictClient(connector, self.live)

    async def close(self) -> None:
        self.closed = True

    def describe(self) -> dict:
        return {"stack": "dict", "storage": {"engine": "dict"}}


class NoLiveStack(DictStack):
    live = False


TINY = {
    "name": "dict-tiny",
    "stack": {"name": "dict"},
    "storage": {"engine": "dict"},
    "topology": {"durable": 1, "ephemeral": 2, "connector": "direct"},
    "datasets": {"albums": 300, "pets": 300},
    "phases": [
        {"name": "create", "target": "ephemeral", "params": {"count": 120, "batch_size": 25}},
        {
            "name": "fetch",
            "target": "ephemeral",
            "params": {
                "get_ops": 60,
                "fetch_ops": 60,
                "predicate_mix": {"equality": 1, "range": 1, "in": 1, "and_or": 1, "order_limit": 1, "not": 1},
            },
        },
        {"name": "fetch", "target": "durable", "params": {"get_ops": 20, "fetch_ops": 20}},
        {"name": "live-limit", "target": "ephemeral", "params": {"ops": 20, "subscribers": 3, "live_limit": 5}},
        {"name": "writers", "target": "ephemeral", "params": {"ops": 100, "writers": 3}},
        {"name": "churn", "target": "ephemeral", "params": {"subscribers": 4, "cycles": 2, "hold_notifications": 2}},
    ],
}
