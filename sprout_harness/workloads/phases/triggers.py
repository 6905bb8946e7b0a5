"""trigger — server-side triggers POSTing matching changes to a local webhook receiver.

A `WebhookReceiver` (sprout_harness/load/webhook.py) listens on 127.0.0.1; the stack's
`add_trigger` hook registers a trigger on the target durable node for `collection`
where `<counter field> > 0` (`mood` of pets, `tracks` of albums) pointing at it. The
phase then makes `commits` updates of `entities` entities it created: a fraction
`match_fraction` set the counter to a fresh positive value (they match), the others to
a negative one (they do not). After the stack's delivery queue drained
(`drain_triggers`), the receiver's requests are compared with the commits.

Figures (the stack runs in this process, so one perf_counter clock): `lag.evaluated`
(commit -> trigger evaluated), `lag.delivered` (evaluated -> webhook received),
`lag.webhook` (commit -> received), `update` latency; counters `matching_commits`,
`delivered`, `duplicates`, `failed`, `retried`, `requests`; `extra.trigger_stats`.
Checks: every matching commit was delivered exactly once (no loss, no duplicate) and no
non-matching change was delivered. `receiver_failures: n` answers 503 to the first
attempt of every n-th delivery, so the stack's retries are part of the measurement.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sprout_harness.contracts import hooks
from sprout_harness.contracts.hooks import TriggerSpec
from sprout_harness.contracts.query import Cond
from sprout_harness.load.webhook import WebhookReceiver
from sprout_harness.workloads import realtime as rt
from sprout_harness.workloads.catalog import PhaseSpec, register_phase
from sprout_harness.workloads.context import PhaseContext, ack_ns
from sprout_harness.workloads.knobs import knob

RECEIVER = WebhookReceiver
"""The receiver class (tests substitute one that misbehaves)."""


@dataclass
class TriggerKnobs:
    commits: int = knob(200, "updates made while the trigger is registered", min=1)
    match_fraction: float = knob(0.5, "fraction of the updates that match the trigger's predicate", min=0, max=1)
    entities: int = knob(20, "entities the phase creates and updates", min=1)
    collection: str = knob("pets", "dataset kind of the entities", choices=("pets", "albums"))
    concurrency: int = knob(1, "updates in flight at once", min=1)
    commit_interval_ms: float = knob(0.0, "pause between two updates of one writer", min=0)
    timeout_s: float = knob(5.0, "the trigger's per-request timeout", min=0.001)
    retries: int = knob(3, "the trigger's retries after a failed attempt", min=0)
    backoff_s: float = knob(0.01, "the trigger's first retry delay (doubling)", min=0)
    receiver_failures: int = knob(0, "answer 503 to the first attempt of every n-th delivery (0: never)", min=0)


@dataclass
class _Commit:
    value: int
    entity: str
    matching: bool
    commit_ns: int


async def run(ctx: PhaseContext, k: TriggerKnobs) -> None:
    add, event_of, stats_of, drain, remove = hooks.require(
        ctx, "add_trigger", "webhook_event", "trigger_stats", "drain_triggers", "remove_trigger"
    )
    node = ctx.targets[0]
    coll = k.collection
    field = rt.COUNTER_FIELD[coll]
    hot = await rt.create_hot(ctx, node, coll, k.entities)
    rec = ctx.recorder
    firsts: dict[str, int] = {}

    def respond(body: dict[str, Any], attempt: int) -> int:
        did = str(body.get("delivery_id"))
        if did not in firsts:
            firsts[did] = len(firsts) + 1
        if k.receiver_failures and attempt == 1 and firsts[did] % k.receiver_failures == 0:
            return 503
        return 200

    receiver = RECEIVER(respond=respond)
    await receiver.start()
    name = f"sprout-{uuid.uuid4().hex[:8]}"
    commits: list[_Commit] = []
    counter = {"v": rt.COUNTER_BASE}
    try:
        await add(
            node.index,
            TriggerSpec(
                name,
                coll,
                Cond(field, ">", 0),
                receiver.url,
                timeout_s=k.timeout_s,
                retries=k.retries,
                backoff_s=k.backoff_s,
            ),
        )
        model = ctx.model(node)
        plan = [ctx.rng.random() < k.match_fraction for _ in range(k.commits)]
        targets = [hot.ids[ctx.rng.randrange(len(hot.ids))] for _ in range(k.commits)]
        next_i = {"i": 0}

        async def writer() -> None:
            while next_i["i"] < k.commits:
                i = next_i["i"]
                next_i["i"] += 1
                counter["v"] += 1
                v = counter["v"] if plan[i] else -counter["v"]
                model.update(coll, targets[i], {field: v})
                ack = await ctx.timed("update", node.client.update(coll, targets[i], {field: v}))
                commits.append(_Commit(v, targets[i], plan[i], ack_ns(ack, time.perf_counter_ns())))
                ctx.advance(1)
                await asyncio.sleep(k.commit_interval_ms / 1000)

        await asyncio.gather(*(writer() for _ in range(k.concurrency)))
        matching = {c.value: c for c in commits if c.matching}
        drained = await drain(node.index, ctx.check_timeout_s)
        await receiver.wait_accepted(len(matching), ctx.check_timeout_s)
        await asyncio.sleep(0.05)  # let a stray or duplicate request land before we look
        st = dict(stats_of(node.index) or {})
    finally:
        try:
            await remove(node.index, name)
        finally:
            await receiver.close()

    delivered: dict[int, int] = {}
    strays: list[str] = []
    for r in receiver.accepted.values():
        ev = event_of(r.body)
        v = (ev.props or {}).get(field)
        if not isinstance(v, int) or v not in matching:
            strays.append(f"{ev.entity_id} {field}={v!r} ({ev.kind})")
            continue
        delivered[v] = delivered.get(v, 0) + 1
        if ev.commit_ns is not None:
            if ev.evaluated_ns is not None:
                rec.lag("evaluated", max(0, ev.evaluated_ns - ev.commit_ns))
                rec.lag("delivered", max(0, r.received_ns - ev.evaluated_ns))
            rec.lag("webhook", max(0, r.received_ns - ev.commit_ns))
    lost = [c for v, c in matching.items() if v not in delivered]
    twice = [v for v, n in delivered.items() if n > 1]
    rec.count("matching_commits", len(matching))
    rec.count("delivered", sum(delivered.values()))
    rec.count("duplicates", receiver.duplicates + sum(n - 1 for n in delivered.values()))
    rec.count("requests", len(receiver.requests))
    for key in ("failed", "retried", "dropped"):
        if isinstance(st.get(key), int):
            rec.count(key, st[key])
    rec.extra["trigger_stats"] = st
    rec.extra["delivery_success"] = round(len(delivered) / len(matching), 4) if matching else None
    ctx.check(
        "the trigger's deliveries settled",
        bool(drained),
        f"deliveries still pending after "
        f"{ctx.check_timeout_s:g} s: {st.get('pending')} queued, {st.get('in_flight')} in flight",
    )
    ctx.check(
        "every matching commit delivered exactly once",
        not lost and not twice and receiver.duplicates == 0,
        f"{len(lost)} of {len(matching)} lost (e.g. {lost[0].entity} {field}={lost[0].value})"
        if lost
        else f"{len(twice) + receiver.duplicates} delivered more than once (stack stats: {st})",
    )
    ctx.check_none("no non-matching change delivered", strays)


register_phase(
    PhaseSpec(
        name="trigger",
        summary="server-side trigger -> local webhook: commit -> evaluated -> received latency, exactly-once delivery",
        run=run,
        knobs=TriggerKnobs,
        needs=("update",),
        targets=("durable",),
        metrics=("create_hot", "update", "lag.evaluated", "lag.delivered", "lag.webhook"),
    )
)
