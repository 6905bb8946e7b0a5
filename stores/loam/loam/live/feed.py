"""Commit fan-out: hands each CommitRecord to the live queries it may affect and to
commit listeners (replication to ephemeral nodes, triggers).

`publish` returns once every notification is enqueued: live queries over a
non-blocking source are updated inline, those over a blocking source get the commit
queued for their worker task; async commit listeners are scheduled, not awaited.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Awaitable, Callable, Union

from loam.live.registry import SubscriptionRegistry
from loam.model import CommitRecord

log = logging.getLogger(__name__)

CommitListener = Callable[[CommitRecord], Union[None, Awaitable[None]]]


class CommitFeed:
    def __init__(self, registry: SubscriptionRegistry | None = None) -> None:
        self.registry = registry if registry is not None else SubscriptionRegistry()
        self._listeners: list[CommitListener] = []
        self.published = 0

    def add_listener(self, cb: CommitListener) -> None:
        self._listeners.append(cb)

    def remove_listener(self, cb: CommitListener) -> None:
        try:
            self._listeners.remove(cb)
        except ValueError:
            pass

    def publish(self, record: CommitRecord) -> None:
        self.published += 1
        if record.changes:  # route() answers {} at once when nothing is subscribed
            for lq, changes in self.registry.route(record.changes).items():
                try:
                    lq.on_commit(record, changes)
                except Exception:
                    log.exception("live query %s failed on commit %s", getattr(lq, "id", lq), record.commit_id)
                    _shutdown(lq, "live query failed while applying a commit; see the node log")
        for cb in self._listeners:
            try:
                r = cb(record)
                if r is not None and inspect.isawaitable(r):
                    asyncio.ensure_future(r)
            except Exception:
                log.exception("commit listener %r failed on %s", cb, record.commit_id)


def _shutdown(lq: Any, reason: str) -> None:
    try:
        lq.shutdown(reason)
    except Exception:
        log.exception("closing live query %s failed", getattr(lq, "id", lq))
