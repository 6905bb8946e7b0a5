"""live-limit — ORDER BY + LIMIT live queries, and writes that push members out of the window.

On every target node, `subscribers` live queries `where genre = G order by rating desc
limit L`. Each step picks a query, takes the top member of its window and either lowers its
rating (it leaves the window) or deletes it (every `delete_every`-th step), so the stack
must fill the gap. Measured: write latency, commit -> notification lag (`lag.notify`) and
commit -> window-refilled latency (`lag.window_refill`: from the write's commit to the
notification after which every affected window equals the expected window again).
Checks: every affected window became the expected one within the check timeout, and at
the end every window equals a fresh fetch and the reference answer.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from sprout_harness.contracts.client import Doc, Notification
from sprout_harness.contracts.query import Cond, Order, QuerySpec
from sprout_harness.workloads import datasets, reference
from sprout_harness.workloads.catalog import PhaseSpec, register_phase
from sprout_harness.workloads.context import NodeRef, PhaseContext, StallGuard, ack_ns
from sprout_harness.workloads.knobs import knob


@dataclass
class LiveLimitKnobs:
    subscribers: int = knob(4, "live queries per target node (query i watches genre i mod 8)", min=1)
    live_limit: int = knob(10, "LIMIT of each live query (the window size)", min=1)
    ops: int = knob(100, "writes that push a member out of a window", min=1)
    delete_every: int = knob(5, "every n-th push is a delete instead of an update (0: never)", min=0)
    write_via: str = knob(
        "durable", "who writes: the durable node of the group, or the target node itself", choices=("durable", "target")
    )


def window_query(genre: str, limit: int) -> QuerySpec:
    return QuerySpec(
        Cond("genre", "=", genre), order_by=(Order("rating", descending=True),), limit=limit, kind="order_limit"
    )


def window_diff(got: list[Doc] | tuple[Doc, ...], expected: list[Doc]) -> str:
    """Where two windows first differ, with the ORDER BY value, for failure messages."""
    for i in range(max(len(got), len(expected))):
        g = got[i] if i < len(got) else None
        e = expected[i] if i < len(expected) else None
        if g is None or e is None or g.id != e.id or not reference.same_props(g.props, e.props):

            def show(d: Doc | None) -> str:
                return "nothing" if d is None else f"{d.id} (rating {d.props.get('rating')})"

            return f"position {i}: {show(g)}, expected {show(e)} ({len(got)} vs {len(expected)} members)"
    return "equal"


def same_window(got: list[Doc] | tuple[Doc, ...], expected: list[Doc]) -> bool:
    if len(got) != len(expected):
        return False
    return all(g.id == e.id and reference.same_props(g.props, e.props) for g, e in zip(got, expected))


@dataclass
class Watcher:
    """One live query and what the harness expects its window to be."""

    node: NodeRef
    genre: str
    query: QuerySpec
    sub: object = None
    expected: list[Doc] = field(default_factory=list)
    commit_ns: int | None = None  # commit the current expectation waits for
    matched_ns: int | None = None  # receipt time of the notification that made the window whole
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def on_notify(self, ctx: PhaseContext, n: Notification) -> None:
        now = time.perf_counter_ns()
        if n.kind != "change":
            return
        if n.commit_ns is not None:
            ctx.recorder.lag("notify", now - n.commit_ns)
        ctx.recorder.count("notifications")
        if self.commit_ns is not None and self.matched_ns is None and self.sub is not None:
            if same_window(list(self.sub.results), self.expected):
                self.matched_ns = now
        self.event.set()


async def _refilled(guard: StallGuard, w: Watcher) -> bool:
    """Wait until `w`'s callback saw its window equal the expected one (it stamps
    `matched_ns` on receipt). Nothing else runs between the write and the notification:
    comparing windows here first would put the harness's own work inside the measured
    refill time. A window that is right without having said so (no notification) is
    accepted when the guard gives up, stamped then."""

    def refilled() -> bool:
        if w.matched_ns is not None:
            return True
        # A stack may update `results` after its callback returns: look again once notified.
        if w.event.is_set() and same_window(list(w.sub.results), w.expected):  # type: ignore[attr-defined]
            w.matched_ns = time.perf_counter_ns()
            return True
        return False

    await guard.wait(w.event, refilled)
    if w.matched_ns is None and same_window(list(w.sub.results), w.expected):  # type: ignore[attr-defined]
        w.matched_ns = time.perf_counter_ns()
    return w.matched_ns is not None


async def run(ctx: PhaseContext, k: LiveLimitKnobs) -> None:
    coll = "albums"
    for g, m in ctx.models.items():
        ctx.require(
            "dataset present",
            m.size(coll) > k.live_limit,
            f"durable-{g} holds {m.size(coll)} albums; live-limit needs more than live_limit={k.live_limit}: "
            "raise datasets.albums",
        )
    watchers: list[Watcher] = []
    for node in ctx.targets:
        for i in range(k.subscribers):
            genre = datasets.GENRES[i % len(datasets.GENRES)]
            w = Watcher(node, genre, window_query(genre, k.live_limit))
            t0 = time.perf_counter_ns()
            w.sub = await ctx.timed(
                "subscribe", node.client.subscribe(coll, w.query, lambda n, w=w: w.on_notify(ctx, n))
            )
            ctx.recorder.record("initial_result", time.perf_counter_ns() - t0)
            watchers.append(w)
    wrong_initial = []
    for w in watchers:
        w.expected = reference.evaluate(w.query, ctx.model(w.node).docs(coll))
        if not same_window(list(w.sub.results), w.expected):
            wrong_initial.append(f"{w.node.name} `{w.query.text}`: {window_diff(list(w.sub.results), w.expected)}")
    ctx.require("initial windows equal the expected answer", not wrong_initial, "; ".join(wrong_initial[:2]))

    genres = sorted({w.genre for w in watchers})
    # Expected windows are kept up to date write by write (see reference.OrderedResult):
    # re-evaluating the whole dataset before every timed write would slow that write.
    ordered: dict[tuple[int, str], reference.OrderedResult] = {}
    for w in watchers:
        key = (w.node.group, w.genre)
        if key not in ordered:
            ordered[key] = reference.OrderedResult(w.query, ctx.models[w.node.group].docs(coll))
    failures: list[str] = []
    guard = ctx.stall_guard().start()
    try:
        for step in range(k.ops):
            genre = genres[step % len(genres)]
            owner = next(w for w in watchers if w.genre == genre)
            group = owner.node.group
            model = ctx.models[group]
            result = ordered[(group, genre)]
            window = result.head()
            if not window:
                failures.append(f"step {step}: no album left in genre {genre!r}")
                break
            victim = window[0]
            writer = ctx.durables[group] if k.write_via == "durable" else owner.node
            affected = [w for w in watchers if w.genre == genre and w.node.group == group]
            deleting = k.delete_every > 0 and step % k.delete_every == k.delete_every - 1
            if deleting:
                model.delete(coll, victim.id)
                result.remove(victim.id)
            else:
                new_rating = round(ctx.rng.uniform(0.0, 1.0), 2)
                model.update(coll, victim.id, {"rating": new_rating})
                result.put(Doc(victim.id, model.get(coll, victim.id) or {}))
            expected = result.head()
            for w in affected:
                w.expected = expected
                w.matched_ns = None
                w.commit_ns = -1  # armed: the callback may match before the ack returns
                w.event.clear()
            if deleting:
                ack = await ctx.timed("delete", writer.client.delete(coll, victim.id))
            else:
                ack = await ctx.timed("update", writer.client.update(coll, victim.id, {"rating": new_rating}))
            commit = ack_ns(ack, time.perf_counter_ns())
            for w in affected:
                w.commit_ns = commit
                ok = await _refilled(guard, w)
                if not ok:
                    failures.append(
                        f"step {step} on {w.node.name}: window of `{w.query.text}` differs at "
                        + window_diff(list(w.sub.results), w.expected)
                    )
                    break
                if w.matched_ns is None:
                    w.matched_ns = time.perf_counter_ns()
                ctx.recorder.lag("window_refill", max(0, w.matched_ns - commit))
                w.commit_ns = None
            if failures:
                break
            ctx.recorder.count("pushes")
            ctx.advance(1)
        ctx.check_none("every window refilled", failures)

        stale: list[str] = []
        for w in watchers:
            fresh = await ctx.timed("verify_fetch", w.node.client.fetch(coll, w.query))
            expected = reference.evaluate(w.query, ctx.model(w.node).docs(coll))
            if not same_window(list(w.sub.results), fresh) or not same_window(fresh, expected):
                stale.append(
                    f"{w.node.name} `{w.query.text}`: window vs fetch: "
                    f"{window_diff(list(w.sub.results), fresh)}; fetch vs expected: {window_diff(fresh, expected)}"
                )
        ctx.check_none("windows equal a fresh fetch", stale)
    finally:
        await guard.close()
        for w in watchers:
            await ctx.timed("unsubscribe", w.sub.close())


register_phase(
    PhaseSpec(
        name="live-limit",
        summary="ORDER BY + LIMIT live queries; writes push members out; commit -> window-refilled latency",
        run=run,
        knobs=LiveLimitKnobs,
        needs=("subscribe", "live_limit", "update", "delete", "order_by"),
        metrics=(
            "subscribe",
            "initial_result",
            "update",
            "delete",
            "verify_fetch",
            "unsubscribe",
            "lag.notify",
            "lag.window_refill",
        ),
    )
)
