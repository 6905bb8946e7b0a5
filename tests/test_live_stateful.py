"""Stateful test of live-query windows on the durable node under random writes.

After every step, for every live query: its `results` equal a fresh fetch (same order);
replaying its notifications onto its initial result gives the same entities (nothing
lost, nothing duplicated); and a commit produced a notification iff it changed the
fresh result.
"""

from __future__ import annotations

import asyncio

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from loam.model import Create, Delete, Update
from loam.node.api import Context
from loam.node.durable import DurableNode
from loam.policy import create_policy
from loam.storage import create_engine

CTX = Context(user="a")

QUERIES = [
    "ORDER BY n LIMIT 3",
    "g = 1 ORDER BY n DESC LIMIT 2",
    "n > 2 ORDER BY g, n LIMIT 4",
    "g IN (0, 2) ORDER BY n",
    "LIMIT 2",
    "ORDER BY s DESC, n LIMIT 1",
    "NOT g = 1 ORDER BY s LIMIT 3",
]

nums = st.one_of(st.integers(-3, 8), st.sampled_from([1.5, 2.0, None, "x"]))
props = st.fixed_dictionaries(
    {},
    optional={
        "n": nums,
        "g": st.integers(0, 2),
        "s": st.sampled_from(["a", "b", "c"]),
        "owner": st.sampled_from(["a", "b"]),
    },
)


class LiveWindows(RuleBasedStateMachine):
    engine_kind = "memory"
    policy: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.ids: list[str] = []
        self.seq = 0

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.node.close())
        self.loop.close()

    @initialize(initial=st.lists(props, max_size=8))
    def setup(self, initial):
        kw = {"policy": create_policy(self.policy, read="owner")} if self.policy else {}
        self.node = DurableNode(self.make_engine(), **kw)
        self.run(self.node.start())
        if initial:
            self.create(initial)
        self.lqs = []
        for q in QUERIES:
            got: list = []
            lq = self.run(self.node.subscribe("t", q, CTX, callback=got.append))
            replica = {e.id: e.props for e in lq.results}
            self.lqs.append((lq, got, replica))
        self.snapshot = self.fresh_all()

    def make_engine(self):
        return create_engine("memory")

    def create(self, plist) -> list:
        """Create entities; returns the commit records."""
        ids, rec = self.run(self.node.create("t", plist, CTX))
        self.ids.extend(ids)
        return [rec]

    def fresh_all(self):
        return [
            [(e.id, e.props) for e in self.run(self.node.fetch("t", lq.query, CTX))] if self.node.collections() else []
            for lq, _, _ in self.lqs
        ]

    def after_commit(self, rec) -> None:
        new = self.fresh_all()
        for (lq, got, replica), old, cur in zip(self.lqs, self.snapshot, new):
            mine = [n for n in got if n.commit_id == rec.commit_id]
            assert len(mine) == (1 if old != cur else 0), (lq.query.text, old, cur, mine)
            for n in got:
                assert n.kind == "change"
                for i in n.removed:
                    assert i in replica, "removed an id that was not in the result"
                    del replica[i]
                for e in n.updated:
                    assert e.id in replica, "updated an id that was not in the result"
                    replica[e.id] = e.props
                for e in n.added:
                    assert e.id not in replica, "added an id twice"
                    replica[e.id] = e.props
                assert n.received_ns >= n.commit_ns == rec.durable_ns
            got.clear()
        self.snapshot = new

    def commit(self, ops, user="a"):
        ctx = Context(user=user) if self.policy else CTX
        rec = self.run(self.node.commit(ops, ctx))
        self.after_commit(rec)

    @rule(plist=st.lists(props, min_size=1, max_size=4))
    def create_some(self, plist):
        for rec in self.create(plist):
            self.after_commit(rec)

    @precondition(lambda self: self.ids)
    @rule(data=st.data(), p=props)
    def update_one(self, data, p):
        i = data.draw(st.sampled_from(self.ids))
        p.pop("owner", None)
        if p and self.run(self.node.get("t", i, CTX)) is not None:
            self.commit([Update("t", i, p)])

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def delete_one(self, data):
        i = data.draw(st.sampled_from(self.ids))
        if self.run(self.node.get("t", i, CTX)) is not None:
            self.commit([Delete("t", i)])
            self.ids.remove(i)

    @precondition(lambda self: len(self.ids) >= 2)
    @rule(data=st.data(), p=props, q=props)
    def mixed_commit(self, data, p, q):
        a, b = data.draw(st.lists(st.sampled_from(self.ids), min_size=2, max_size=2, unique=True))
        if self.run(self.node.get("t", a, CTX)) is None or self.run(self.node.get("t", b, CTX)) is None:
            return
        p.pop("owner", None)
        self.seq += 1
        new_id = f"m{self.seq}"
        extra = {"owner": "a"} if self.policy else {}
        self.commit([Delete("t", a), Update("t", b, {**p, "n": 0}), Create("t", new_id, {**q, **extra})])
        self.ids.remove(a)
        self.ids.append(new_id)

    @invariant()
    def windows_equal_fresh_fetch(self):
        if not hasattr(self, "lqs"):
            return
        for (lq, _, replica), fresh in zip(self.lqs, self.snapshot):
            assert [(e.id, e.props) for e in lq.results] == fresh, lq.query.text
            assert replica == dict(fresh), lq.query.text


LiveWindows.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestLiveWindowsMemory = LiveWindows.TestCase


class LiveWindowsLevelDB(LiveWindows):
    def make_engine(self):
        import tempfile

        self._tmp = tempfile.TemporaryDirectory()
        return create_engine("leveldb", path=self._tmp.name + "/db")

    def teardown(self) -> None:
        super().teardown()
        self._tmp.cleanup()


LiveWindowsLevelDB.TestCase.settings = settings(max_examples=20, stateful_step_count=25, deadline=None)
TestLiveWindowsLevelDB = LiveWindowsLevelDB.TestCase


class LiveWindowsOwnerPolicy(LiveWindows):
    """Entities owned by 'b' are unreadable for the subscriber 'a': they must never show up."""

    policy = "owner"

    def create(self, plist) -> list:
        recs = []
        for owner in ("a", "b"):  # one commit per owner: each writes only its own entities
            mine = [{**p, "owner": owner} for p in plist if p.get("owner", "a") == owner]
            if mine:
                ids, rec = self.run(self.node.create("t", mine, Context(user=owner)))
                self.ids.extend(ids)
                recs.append(rec)
        return recs

    def commit(self, ops, user="a"):
        # only touch entities 'a' may write (the others are invisible to 'a' anyway)
        for op in ops:
            if not isinstance(op, Create):
                e = self.run(self.node.get("t", op.id, Context(user="a")))
                if e is None:
                    return
        super().commit(ops, user)


LiveWindowsOwnerPolicy.TestCase.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)
TestLiveWindowsOwnerPolicy = LiveWindowsOwnerPolicy.TestCase
