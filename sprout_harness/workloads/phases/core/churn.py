"""churn — subscribers subscribe and unsubscribe repeatedly while writes flow.

`subscribers` churners spread over the target nodes; churner c watches
`where shelter = S_c` (pets) and runs `cycles` times: subscribe (latency `subscribe` =
time to initial result), stay live until it has seen `hold_notifications` changes, then
unsubscribe. Meanwhile `writers` writers update pets of the watched shelters (each update
sets a unique `mood` number) through the group's durable node (or the target node).
Measured: commit -> notification lag (`lag.notify`), subscribe / unsubscribe latency.
Checks: each initial result holds exactly the shelter's pets; no live subscriber missed a
notification: every commit to a watched entity made after the subscription was ready and
before it began to unsubscribe reached it (a later change to the same entity covers an
earlier one, so stacks may coalesce).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from sprout_harness.contracts.client import Notification
from sprout_harness.contracts.query import Cond, QuerySpec
from sprout_harness.workloads import datasets
from sprout_harness.workloads.catalog import PhaseSpec, register_phase
from sprout_harness.workloads.context import NodeRef, PhaseContext, ack_ns
from sprout_harness.workloads.knobs import knob


@dataclass
class ChurnKnobs:
    subscribers: int = knob(8, "concurrent churning subscribers (spread over the targets)", min=1)
    cycles: int = knob(5, "subscribe/unsubscribe cycles per subscriber", min=1)
    hold_notifications: int = knob(3, "changes a subscription sees before it unsubscribes", min=0)
    writers: int = knob(1, "concurrent writers", min=1)
    write_interval_ms: float = knob(1.0, "pause between two commits of one writer (0: as fast as possible)", min=0)
    write_via: str = knob("durable", "who writes: the group's durable node, or the target nodes",
                          choices=("durable", "target"))


@dataclass
class Commit:
    commit_ns: int
    mood: int
    id: str
    shelter: str


@dataclass
class Live:
    """One subscription's life: when it was ready, when it started leaving, what it saw."""

    shelter: str
    ready_ns: int = 0
    first_commit: int = 0  # index in the group's commit list when it became ready
    end_ns: int | None = None
    seen: dict[str, int] = field(default_factory=dict)  # entity id -> highest mood received
    changes: int = 0
    event: asyncio.Event = field(default_factory=asyncio.Event)


async def run(ctx: PhaseContext, k: ChurnKnobs) -> None:
    coll = "pets"
    shelters = [datasets.SHELTERS[c % len(datasets.SHELTERS)] for c in range(k.subscribers)]
    watched = sorted(set(shelters))
    commits: dict[int, list[Commit]] = {}  # group -> commits in commit order
    hot: dict[int, list[tuple[str, str]]] = {}
    for g, model in ctx.models.items():
        hot[g] = sorted((id_, p["shelter"]) for id_, p in model.data.get(coll, {}).items() if p["shelter"] in watched)
        ctx.require("dataset present", bool(hot[g]), f"no pets in shelters {watched} on durable-{g}: raise datasets.pets")
    writers_done = asyncio.Event()
    last_ack: dict[int, int] = {}
    mood = {"n": 10_000_000}  # above the dataset's moods and other phases' counters
    lives: list[tuple[NodeRef, Live]] = []
    misses: list[str] = []
    wrong_initial: list[str] = []

    async def writer(w: int) -> None:
        node = ctx.targets[w % len(ctx.targets)]
        via = ctx.durables[node.group] if k.write_via == "durable" else node
        model = ctx.model(node)
        rng = ctx.rng.__class__(f"{ctx.seed}:churn:{w}")
        while not churners_done.is_set():
            id_, shelter = rng.choice(hot[node.group])
            mood["n"] += 1
            m = mood["n"]
            props = {"mood": m}
            model.update(coll, id_, props)
            ack = await ctx.timed("update", via.client.update(coll, id_, props))
            c = ack_ns(ack, time.perf_counter_ns())
            commits.setdefault(node.group, []).append(Commit(c, m, id_, shelter))
            last_ack[w] = c
            await asyncio.sleep(k.write_interval_ms / 1000)  # also lets deliveries run between commits

    def on_notify(live: Live, n: Notification) -> None:
        now = time.perf_counter_ns()
        if n.kind != "change":
            return
        if n.commit_ns is not None:
            ctx.recorder.lag("notify", now - n.commit_ns)
        ctx.recorder.count("notifications")
        for d in (*n.added, *n.updated):
            v = d.props.get("mood")
            if isinstance(v, int) and v > live.seen.get(d.id, -1):
                live.seen[d.id] = v
        live.changes += 1
        live.event.set()

    def missing(group: int, live: Live) -> list[Commit]:
        out = []
        # Commits acked before the subscription was ready have commit_ns < ready_ns: skip them.
        for c in commits.get(group, [])[live.first_commit:]:
            if c.shelter == live.shelter and live.ready_ns < c.commit_ns < (live.end_ns or 0):
                if live.seen.get(c.id, -1) < c.mood:
                    out.append(c)
        return out

    async def churner(c: int) -> None:
        node = ctx.targets[c % len(ctx.targets)]
        q = QuerySpec(Cond("shelter", "=", shelters[c]), kind="equality")
        for _ in range(k.cycles):
            live = Live(shelters[c])
            sub = await ctx.timed("subscribe", node.client.subscribe(coll, q, lambda n, live=live: on_notify(live, n)))
            live.first_commit = len(commits.get(node.group, []))
            live.ready_ns = time.perf_counter_ns()
            expected_ids = {i for i, p in ctx.model(node).data[coll].items() if p["shelter"] == shelters[c]}
            got_ids = {d.id for d in sub.results}
            if got_ids != expected_ids:
                wrong_initial.append(f"{node.name} `{q.text}`: {len(got_ids)} results, expected {len(expected_ids)}")
            try:
                await ctx.wait_for(lambda: live.changes >= k.hold_notifications or writers_stopped(), event=live.event)
                live.end_ns = time.perf_counter_ns()
                # Drain: wait for commits in flight at end_ns to be acked, then for their delivery.
                await ctx.wait_for(lambda: writers_stopped() or all(v > live.end_ns for v in last_ack.values()))
                ok = await ctx.wait_for(lambda: not missing(node.group, live), event=live.event)
                if not ok:
                    lost = missing(node.group, live)
                    misses.append(f"{node.name} `{q.text}` missed {len(lost)} commits, e.g. {lost[0].id} mood={lost[0].mood}")
            finally:
                await ctx.timed("unsubscribe", sub.close())
            lives.append((node, live))
            ctx.recorder.count("subscriptions")
            ctx.advance(1)

    def writers_stopped() -> bool:
        return writers_done.is_set()

    churners_done = asyncio.Event()
    writer_tasks = [asyncio.ensure_future(writer(w)) for w in range(k.writers)]

    def writer_ended(t: asyncio.Future) -> None:
        if t.cancelled() or t.exception() is not None:  # a broken writer: stop waiting for its acks
            writers_done.set()

    for t in writer_tasks:
        t.add_done_callback(writer_ended)
    try:
        await asyncio.gather(*(churner(c) for c in range(k.subscribers)))
    finally:
        churners_done.set()
        results = await asyncio.gather(*writer_tasks, return_exceptions=True)
        writers_done.set()
    for r in results:
        if isinstance(r, BaseException):
            raise r
    ctx.recorder.count("commits", sum(len(v) for v in commits.values()))
    ctx.check_none("initial results hold the watched entities", wrong_initial)
    ctx.check_none("no live subscriber missed a notification", misses)
    covered = sum(1 for node, live in lives for c in commits.get(node.group, [])
                  if c.shelter == live.shelter and live.ready_ns < c.commit_ns < (live.end_ns or 0))
    ctx.recorder.extra["commits_checked_against_live_subscriptions"] = covered
    ctx.check("writes flowed during live subscriptions", covered > 0 or k.hold_notifications == 0,
              "no commit happened while a subscription was live")


register_phase(PhaseSpec(
    name="churn",
    summary="subscribers subscribe/unsubscribe while writes flow; time to initial result, lag; no missed notification",
    run=run,
    knobs=ChurnKnobs,
    needs=("subscribe", "update"),
    metrics=("subscribe", "unsubscribe", "update", "lag.notify"),
))
