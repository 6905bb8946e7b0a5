"""Triggers: a durable node's commits filtered by a predicate and POSTed to a webhook.

Path of one change: commit listener (on the event loop, right after the commit is
durable) -> predicate evaluated on the entity (the after state; a delete on its before
state) -> a `Delivery` queued -> one of `concurrency` worker tasks POSTs it as JSON.
The commit path only evaluates predicates and enqueues; it never waits for HTTP.

Delivery is at-least-once: a failed attempt (connection error, timeout, HTTP 5xx, 408
or 429) is retried with exponential backoff, so a receiver can see a change twice when
a response is lost. Each change carries a `delivery_id` that is the same on every
attempt (a hash of trigger, commit and entity), and `Idempotency-Key` header with it:
a receiver that dedupes on it gets exactly-once processing. Deliveries of different
changes run concurrently and may arrive out of commit order; `clock` orders them.

Body (JSON):
    {"trigger", "delivery_id", "commit_id", "node_id", "clock", "commit_ns",
     "evaluated_ns", "collection", "attempt",
     "change": {"kind", "id", "before": props|null, "after": props|null}}
`commit_ns`/`evaluated_ns` are `time.perf_counter_ns()` values of the node's process:
a receiver in the same process can measure commit -> evaluated -> received lag.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import httpx
import orjson

from loam.errors import QueryError, ValidationError
from loam.model import Change, CommitRecord, Entity
from loam.query.ast import Query
from loam.query.evaluate import Predicate, compile_predicate
from loam.query.parser import parse

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_RETRY_STATUS = frozenset({408, 429})


class _CommitSource(Protocol):
    def add_commit_listener(self, cb: Any) -> None: ...

    def remove_commit_listener(self, cb: Any) -> None: ...


@dataclass(slots=True)
class TriggerStats:
    """Counters of one trigger. `retried` counts extra attempts, not deliveries."""

    evaluated: int = 0  # changes of the collection the predicate was evaluated on
    matched: int = 0  # of those, the ones that matched (and were queued)
    delivered: int = 0  # acknowledged with a 2xx
    retried: int = 0
    failed: int = 0  # gave up: retries exhausted or a non-retriable status
    dropped: int = 0  # not queued: the pending queue was full
    cancelled: int = 0  # still queued or in flight when the manager was closed
    last_error: str | None = None

    def add(self, other: TriggerStats) -> None:
        for k in ("evaluated", "matched", "delivered", "retried", "failed", "dropped", "cancelled"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        if other.last_error is not None:
            self.last_error = other.last_error


@dataclass(slots=True)
class Trigger:
    """One registered trigger (built by `TriggerManager.add_trigger`)."""

    name: str
    collection: str
    predicate_text: str
    url: str
    timeout_s: float
    retries: int
    backoff_s: float
    predicate: Predicate = field(repr=False)
    stats: TriggerStats = field(default_factory=TriggerStats)


@dataclass(slots=True)
class Delivery:
    """One matching change on its way to a webhook."""

    trigger: Trigger
    delivery_id: str
    body: dict[str, Any]


def delivery_id(trigger: str, commit_id: str, collection: str, entity_id: str) -> str:
    """Stable per (trigger, commit, entity): identical on every retry, distinct across changes."""
    raw = "\x00".join((trigger, commit_id, collection, entity_id)).encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def _props(e: Entity | None) -> dict[str, Any] | None:
    return None if e is None else dict(e.props)


class TriggerManager:
    """Registers triggers on a durable node and delivers their matches to webhooks.

    `concurrency` bounds the deliveries in flight; `max_pending` bounds the queue (a
    match beyond it is counted as `dropped`, never blocks a commit). Call `close()`
    (or use `async with`) to stop: it drains the queue first unless `drain=False`.
    """

    def __init__(
        self,
        node: _CommitSource,
        *,
        concurrency: int = 8,
        max_pending: int = 100_000,
        trust_env: bool = False,
    ) -> None:
        if concurrency < 1:
            raise ValidationError(f"TriggerManager: concurrency must be >= 1, got {concurrency}")
        if max_pending < 1:
            raise ValidationError(f"TriggerManager: max_pending must be >= 1, got {max_pending}")
        self.node = node
        self.concurrency = concurrency
        self.max_pending = max_pending
        # trust_env=False: proxy variables must not reroute webhook calls (127.0.0.1 included)
        self._trust_env = trust_env
        self._triggers: dict[str, Trigger] = {}
        self._by_collection: dict[str, list[Trigger]] = {}
        self._removed = TriggerStats()
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None
        self._in_flight = 0
        self._closed = False
        node.add_commit_listener(self._on_commit)

    # --- registration -------------------------------------------------------------

    def add_trigger(
        self,
        name: str,
        collection: str,
        predicate_text: str | Query,
        url: str,
        *,
        timeout_s: float = 5,
        retries: int = 3,
        backoff_s: float = 0.05,
    ) -> Trigger:
        """Register a trigger: POST every change of `collection` matching `predicate_text` to `url`.

        `predicate_text` is a loam query's where part (`status = 'paid' AND total > 100`;
        empty matches every change), or an already parsed `Query` (its where part); ORDER BY
        and LIMIT are refused."""
        if self._closed:
            raise ValidationError(f"trigger {name!r}: the trigger manager is closed; create a new one")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValidationError(
                f"trigger name {name!r} is invalid: use 1-100 characters of letters, digits, '_', '.', ':' or '-'"
            )
        if name in self._triggers:
            raise ValidationError(
                f"trigger {name!r} already exists; remove_trigger({name!r}) first or pick another name"
            )
        if not isinstance(collection, str) or not collection:
            raise ValidationError(f"trigger {name!r}: the collection must be a non-empty string, got {collection!r}")
        if isinstance(predicate_text, Query):
            q = predicate_text
            predicate_text = q.text if q.text is not None else repr(q.where)
        else:
            try:
                q = parse(predicate_text)
            except QueryError as exc:
                raise QueryError(f"trigger {name!r}: bad predicate: {exc}") from None
        if q.order_by or q.limit is not None:
            raise ValidationError(
                f"trigger {name!r}: a predicate has no ORDER BY or LIMIT (it is checked per change): {predicate_text!r}"
            )
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ValidationError(f"trigger {name!r}: webhook url {url!r} is invalid: {exc}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValidationError(f"trigger {name!r}: webhook url {url!r} must be http:// or https:// with a host")
        if not timeout_s > 0:
            raise ValidationError(f"trigger {name!r}: timeout_s must be > 0, got {timeout_s}")
        if not isinstance(retries, int) or retries < 0:
            raise ValidationError(f"trigger {name!r}: retries must be an int >= 0, got {retries!r}")
        if backoff_s < 0:
            raise ValidationError(f"trigger {name!r}: backoff_s must be >= 0, got {backoff_s}")
        t = Trigger(
            name,
            collection,
            predicate_text,
            url,
            float(timeout_s),
            retries,
            float(backoff_s),
            compile_predicate(q.where),
        )
        self._triggers[name] = t
        self._by_collection.setdefault(collection, []).append(t)
        return t

    def remove_trigger(self, name: str) -> None:
        """Stop evaluating `name`; deliveries already queued for it still go out."""
        t = self._triggers.pop(name, None)
        if t is None:
            known = ", ".join(sorted(self._triggers)) or "(none)"
            raise ValidationError(f"no trigger named {name!r}; known: {known}")
        lst = self._by_collection[t.collection]
        lst.remove(t)
        if not lst:
            del self._by_collection[t.collection]
        self._removed.add(t.stats)

    def triggers(self) -> list[Trigger]:
        return list(self._triggers.values())

    # --- commit path ----------------------------------------------------------------

    def _on_commit(self, rec: CommitRecord) -> None:
        if self._closed or not rec.changes:
            return
        by_coll = self._by_collection
        if not by_coll:
            return
        for ch in rec.changes:
            triggers = by_coll.get(ch.collection)
            if not triggers:
                continue
            entity = ch.after if ch.after is not None else ch.before
            if entity is None:
                continue
            for t in triggers:
                t.stats.evaluated += 1
                try:
                    hit = t.predicate(entity)
                except Exception as exc:  # a predicate must not break the commit path
                    t.stats.last_error = f"predicate failed on {ch.collection}/{ch.id}: {exc}"
                    log.exception("trigger %s: predicate failed on %s/%s", t.name, ch.collection, ch.id)
                    continue
                if hit:
                    self._enqueue(t, rec, ch, time.perf_counter_ns())

    def _enqueue(self, t: Trigger, rec: CommitRecord, ch: Change, evaluated_ns: int) -> None:
        t.stats.matched += 1
        if self._queue.qsize() >= self.max_pending:
            t.stats.dropped += 1
            t.stats.last_error = f"dropped {ch.collection}/{ch.id}: {self.max_pending} deliveries already pending"
            return
        did = delivery_id(t.name, rec.commit_id, ch.collection, ch.id)
        body = {
            "trigger": t.name,
            "delivery_id": did,
            "commit_id": rec.commit_id,
            "node_id": rec.node_id,
            "clock": rec.clock,
            "commit_ns": rec.durable_ns,
            "evaluated_ns": evaluated_ns,
            "collection": ch.collection,
            "attempt": 0,
            "change": {"kind": ch.kind, "id": ch.id, "before": _props(ch.before), "after": _props(ch.after)},
        }
        self._queue.put_nowait(Delivery(t, did, body))
        if not self._workers:
            self._start_workers()

    def _start_workers(self) -> None:
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
            trust_env=self._trust_env,
        )
        self._workers = [
            asyncio.get_running_loop().create_task(self._worker(), name=f"loam-trigger-worker-{i}")
            for i in range(self.concurrency)
        ]

    # --- delivery -------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            d = await self._queue.get()
            self._in_flight += 1
            try:
                await self._deliver(d)
            except asyncio.CancelledError:
                d.trigger.stats.cancelled += 1
                raise
            except Exception as exc:  # keep the worker alive whatever a delivery does
                d.trigger.stats.failed += 1
                d.trigger.stats.last_error = f"delivery {d.delivery_id} crashed: {exc!r}"
                log.exception("trigger %s: delivery %s crashed", d.trigger.name, d.delivery_id)
            finally:
                self._in_flight -= 1
                self._queue.task_done()

    async def _deliver(self, d: Delivery) -> None:
        t, client = d.trigger, self._client
        assert client is not None
        headers = {
            "content-type": "application/json",
            "idempotency-key": d.delivery_id,
            "x-loam-trigger": t.name,
        }
        error = ""
        for attempt in range(t.retries + 1):
            if attempt:
                t.stats.retried += 1
                await asyncio.sleep(t.backoff_s * (2 ** (attempt - 1)))
            d.body["attempt"] = attempt + 1
            content = orjson.dumps(d.body)
            try:
                # asyncio.timeout bounds the whole request; httpx's timeout is per I/O step
                async with asyncio.timeout(t.timeout_s):
                    resp = await client.post(t.url, content=content, headers=headers, timeout=t.timeout_s)
            except (TimeoutError, httpx.TimeoutException):
                error = f"POST {t.url} timed out after {t.timeout_s}s"
                continue
            except httpx.HTTPError as exc:
                error = f"POST {t.url} failed: {type(exc).__name__}: {exc}"
                continue
            code = resp.status_code
            if 200 <= code < 300:
                t.stats.delivered += 1
                return
            error = f"POST {t.url} answered HTTP {code}"
            if code < 500 and code not in _RETRY_STATUS:
                break  # the receiver refused this change: retrying cannot help
        t.stats.failed += 1
        t.stats.last_error = f"delivery {d.delivery_id} ({d.body['collection']}/{d.body['change']['id']}): {error}"
        log.warning("trigger %s: %s", t.name, t.stats.last_error)

    # --- lifecycle ------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Deliveries queued or in flight."""
        return self._queue.qsize() + self._in_flight

    async def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued delivery has succeeded or failed; False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._queue.join()
        except TimeoutError:
            return False
        return True

    async def close(self, *, drain: bool = True, timeout_s: float | None = None) -> None:
        """Stop listening; drain (bounded by `timeout_s`) or not; cancel workers; close the client.

        Deliveries still queued or in flight are counted as `cancelled`."""
        if self._closed:
            return
        self._closed = True
        try:
            self.node.remove_commit_listener(self._on_commit)
        except Exception:
            pass
        if drain and self._workers:
            await self.drain(timeout_s)
        for w in self._workers:
            w.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        while not self._queue.empty():
            d = self._queue.get_nowait()
            d.trigger.stats.cancelled += 1
            self._queue.task_done()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> TriggerManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def stats(self) -> dict[str, Any]:
        """Per-trigger counters, totals (removed triggers included) and queue depth."""
        total = TriggerStats()
        total.add(self._removed)
        per: dict[str, dict[str, Any]] = {}
        for name, t in self._triggers.items():
            total.add(t.stats)
            per[name] = {"collection": t.collection, "predicate": t.predicate_text, "url": t.url, **asdict(t.stats)}
        out = asdict(total)
        out.pop("last_error")
        return {
            "triggers": per,
            "total": out,
            "pending": self._queue.qsize(),
            "in_flight": self._in_flight,
            "concurrency": self.concurrency,
            "closed": self._closed,
        }


__all__ = ["Delivery", "Trigger", "TriggerManager", "TriggerStats", "delivery_id"]
