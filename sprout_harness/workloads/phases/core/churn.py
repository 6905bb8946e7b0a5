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
    write_via: str = knob(
        "durable", "who writes: the group's durable node, or the target nodes", choices=("durable", "target")
    )


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


class Churn:
    """One run of the phase. Its state, shared by the writers, the churners and the
    notification callbacks: the commits per group in commit order, each writer's last
    ack, every subscription's life, and what went wrong."""

    COLLECTION = "pets"

    def __init__(self, ctx: PhaseContext, k: ChurnKnobs) -> None:
        self.ctx, self.k = ctx, k
        self.shelters = [datasets.SHELTERS[c % len(datasets.SHELTERS)] for c in range(k.subscribers)]
        watched = sorted(set(self.shelters))
        self.hot: dict[int, list[tuple[str, str]]] = {}  # group -> (id, shelter) of its watched pets
        for g, model in ctx.models.items():
            self.hot[g] = sorted(
                (id_, p["shelter"]) for id_, p in model.data.get(self.COLLECTION, {}).items() if p["shelter"] in watched
            )
            ctx.require(
                "dataset present",
                bool(self.hot[g]),
                f"no pets in shelters {watched} on durable-{g}: raise datasets.pets",
            )
        self.commits: dict[int, list[Commit]] = {}  # group -> commits in commit order
        self.last_ack: dict[int, int] = {}  # writer -> commit_ns of its last acked commit
        self.mood = 10_000_000  # above the dataset's moods and other phases' counters
        self.lives: list[tuple[NodeRef, Live]] = []
        self.misses: list[str] = []
        self.wrong_initial: list[str] = []
        self.churners_done = asyncio.Event()
        self.writers_done = asyncio.Event()

    async def run(self) -> None:
        """The writers write while every churner runs its cycles; then the writers stop."""
        writer_tasks = [asyncio.ensure_future(self.write(w)) for w in range(self.k.writers)]
        for t in writer_tasks:
            t.add_done_callback(self._writer_ended)
        try:
            await asyncio.gather(*(self.churn(c) for c in range(self.k.subscribers)))
        finally:
            self.churners_done.set()
            results = await asyncio.gather(*writer_tasks, return_exceptions=True)
            self.writers_done.set()
        for r in results:
            if isinstance(r, BaseException):
                raise r

    def _writer_ended(self, t: asyncio.Future[None]) -> None:
        if t.cancelled() or t.exception() is not None:  # a broken writer: stop waiting for its acks
            self.writers_done.set()

    async def write(self, w: int) -> None:
        """Writer `w`: updates a watched pet of its target's group, each with a fresh mood."""
        ctx, coll = self.ctx, self.COLLECTION
        node = ctx.targets[w % len(ctx.targets)]
        via = ctx.durables[node.group] if self.k.write_via == "durable" else node
        model = ctx.model(node)
        rng = ctx.rng.__class__(f"{ctx.seed}:churn:{w}")
        while not self.churners_done.is_set():
            id_, shelter = rng.choice(self.hot[node.group])
            self.mood += 1
            m = self.mood
            props = {"mood": m}
            model.update(coll, id_, props)
            ack = await ctx.timed("update", via.client.update(coll, id_, props))
            c = ack_ns(ack, time.perf_counter_ns())
            self.commits.setdefault(node.group, []).append(Commit(c, m, id_, shelter))
            self.last_ack[w] = c
            await asyncio.sleep(self.k.write_interval_ms / 1000)  # also lets deliveries run between commits

    def on_notify(self, live: Live, n: Notification) -> None:
        now = time.perf_counter_ns()
        if n.kind != "change":
            return
        if n.commit_ns is not None:
            self.ctx.recorder.lag("notify", now - n.commit_ns)
        self.ctx.recorder.count("notifications")
        for d in (*n.added, *n.updated):
            v = d.props.get("mood")
            if isinstance(v, int) and v > live.seen.get(d.id, -1):
                live.seen[d.id] = v
        live.changes += 1
        live.event.set()

    @staticmethod
    def while_live(live: Live, c: Commit) -> bool:
        """`c` changed a pet `live` watches after it was ready and before it began to leave."""
        return c.shelter == live.shelter and live.ready_ns < c.commit_ns < (live.end_ns or 0)

    def missing(self, group: int, live: Live) -> list[Commit]:
        # Commits acked before the subscription was ready have commit_ns < ready_ns: skip them.
        return [
            c
            for c in self.commits.get(group, [])[live.first_commit :]
            if self.while_live(live, c) and live.seen.get(c.id, -1) < c.mood
        ]

    def writers_stopped(self) -> bool:
        return self.writers_done.is_set()

    async def churn(self, c: int) -> None:
        """Churner `c`: `cycles` subscriptions to its shelter, one after the other."""
        node = self.ctx.targets[c % len(self.ctx.targets)]
        q = QuerySpec(Cond("shelter", "=", self.shelters[c]), kind="equality")
        for _ in range(self.k.cycles):
            live = await self.cycle(node, q, self.shelters[c])
            self.lives.append((node, live))
            self.ctx.recorder.count("subscriptions")
            self.ctx.advance(1)

    async def cycle(self, node: NodeRef, q: QuerySpec, shelter: str) -> Live:
        """Subscribe, check the initial result, stay until `hold_notifications` changes came,
        wait for the commits owed to arrive, unsubscribe."""
        ctx, coll = self.ctx, self.COLLECTION
        live = Live(shelter)
        sub = await ctx.timed("subscribe", node.client.subscribe(coll, q, lambda n: self.on_notify(live, n)))
        live.first_commit = len(self.commits.get(node.group, []))
        live.ready_ns = time.perf_counter_ns()
        expected_ids = {i for i, p in ctx.model(node).data[coll].items() if p["shelter"] == shelter}
        got_ids = {d.id for d in sub.results}
        if got_ids != expected_ids:
            self.wrong_initial.append(f"{node.name} `{q.text}`: {len(got_ids)} results, expected {len(expected_ids)}")
        try:
            await ctx.wait_for(
                lambda: live.changes >= self.k.hold_notifications or self.writers_stopped(), event=live.event
            )
            live.end_ns = time.perf_counter_ns()
            end_ns = live.end_ns
            # Drain: wait for commits in flight at end_ns to be acked, then for their delivery.
            await ctx.wait_for(lambda: self.writers_stopped() or all(v > end_ns for v in self.last_ack.values()))
            ok = await ctx.wait_for(lambda: not self.missing(node.group, live), event=live.event)
            if not ok:
                lost = self.missing(node.group, live)
                self.misses.append(
                    f"{node.name} `{q.text}` missed {len(lost)} commits, e.g. {lost[0].id} mood={lost[0].mood}"
                )
        finally:
            await ctx.timed("unsubscribe", sub.close())
        return live

    def check(self) -> None:
        ctx = self.ctx
        ctx.recorder.count("commits", sum(len(v) for v in self.commits.values()))
        ctx.check_none("initial results hold the watched entities", self.wrong_initial)
        ctx.check_none("no live subscriber missed a notification", self.misses)
        covered = sum(
            1 for node, live in self.lives for c in self.commits.get(node.group, []) if self.while_live(live, c)
        )
        ctx.recorder.extra["commits_checked_against_live_subscriptions"] = covered
        ctx.check(
            "writes flowed during live subscriptions",
            covered > 0 or self.k.hold_notifications == 0,
            "no commit happened while a subscription was live",
        )


async def run(ctx: PhaseContext, k: ChurnKnobs) -> None:
    churn = Churn(ctx, k)
    await churn.run()
    churn.check()


register_phase(
    PhaseSpec(
        name="churn",
        summary="subscribers subscribe/unsubscribe while writes flow; time to initial result, lag; no missed notification",
        run=run,
        knobs=ChurnKnobs,
        needs=("subscribe", "update"),
        metrics=("subscribe", "unsubscribe", "update", "lag.notify"),
    )
)
