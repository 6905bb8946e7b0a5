"""Stateful property test: a LIMIT live query on an ephemeral node, over each connector.

Writes come from the ephemeral itself, from a second ephemeral and from the durable
node. At quiescent points the window equals a fresh fetch on the durable node, and
replaying every notification on the initial result gives exactly the window (so none
was lost or duplicated: adds must be new, removes and updates must hit members).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from loam.model import Entity
from loam.node.api import Context, Notification
from support.transport import KINDS, Cluster, settle

CTX = Context()
QUERY = "v > 10 ORDER BY v DESC LIMIT 3"
values = st.integers(min_value=0, max_value=30)


def _replay(result: list[Entity], notes: list[Notification]) -> dict[str, Entity]:
    cur = {e.id: e for e in result}
    for n in notes:
        for i in n.removed:
            assert i in cur, f"removed {i} which is not in the result (duplicate or lost notification)"
            del cur[i]
        for e in n.added:
            assert e.id not in cur, f"added {e.id} twice"
            cur[e.id] = e
        for e in n.updated:
            assert e.id in cur, f"updated {e.id} which is not in the result"
            cur[e.id] = e
    return cur


def machine_for(kind: str) -> type[RuleBasedStateMachine]:
    class LimitWindowMachine(RuleBasedStateMachine):
        ids = Bundle("ids")

        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.cluster = Cluster(kind)
            self.run(self.cluster.start())
            self.e = self.run(self.cluster.ephemeral())
            self.other = self.run(self.cluster.ephemeral())
            self.lq: Any = self.run(self.e.subscribe("items", QUERY, CTX))
            self.initial = self.lq.results
            self.notes: list[Notification] = []
            self.lq.add_listener(self.notes.append)
            self.deleted: set[str] = set()

        def run(self, coro: Any) -> Any:
            return self.loop.run_until_complete(coro)

        def writer(self, who: int) -> Any:
            return (self.e, self.other, self.cluster.durable)[who]

        @initialize(target=ids, vs=st.lists(values, min_size=1, max_size=8))
        def first(self, vs: list[int]) -> Any:
            # start with a full window most of the time, so deletes make the durable node refill it
            ids, _ = self.run(self.cluster.durable.create("items", [{"v": v} for v in vs], CTX))
            return multiple(*ids)

        @rule(target=ids, v=values, who=st.integers(0, 2))
        def create(self, v: int, who: int) -> str:
            ids, _ = self.run(self.writer(who).create("items", [{"v": v}], CTX))
            return ids[0]

        @rule(i=ids, v=values, who=st.integers(0, 2))
        def update(self, i: str, v: int, who: int) -> None:
            if i in self.deleted and who == 2:
                return  # the durable node's own update of a deleted id is a ValidationError
            self.run(self.writer(who).update("items", i, {"v": v}, CTX))

        @rule(i=ids, who=st.integers(0, 2))
        def delete(self, i: str, who: int) -> None:
            if i in self.deleted and who == 2:
                return
            self.run(self.writer(who).delete("items", i, CTX))
            self.deleted.add(i)

        @rule()
        def quiesce(self) -> None:
            self.check()

        def check(self) -> None:
            self.run(settle(self.cluster))
            truth = self.run(self.cluster.durable.fetch("items", QUERY, CTX))
            assert self.lq.results == truth
            replayed = _replay(self.initial, self.notes)
            assert sorted(replayed.values(), key=lambda e: e.id) == sorted(truth, key=lambda e: e.id)
            commit_ids = [n.commit_id for n in self.notes]
            assert len(commit_ids) == len(set(commit_ids)), "a commit was notified twice"
            assert all(n.commit_ns is not None for n in self.notes)

        @invariant()
        def window_is_bounded(self) -> None:
            assert len(self.lq.results) <= 3

        def teardown(self) -> None:
            try:
                self.check()
            finally:
                self.run(self.cluster.close())
                self.loop.close()

    return LimitWindowMachine


@pytest.mark.parametrize("kind", KINDS)
def test_limit_live_query_on_ephemeral(kind: str) -> None:
    run_state_machine_as_test(machine_for(kind), settings=settings(max_examples=15, stateful_step_count=20))
