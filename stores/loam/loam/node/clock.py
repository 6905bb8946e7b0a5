"""The Lamport clock that stamps a node's transactions, and the range it must stay in.

A durable node observes the clock of every transaction it applies and every node that
hears from it observes the durable clock back, so one far-future clock would be adopted
by every node for good (it is stored in the commit log). `admission_error` is the check
a durable node makes before observing a transaction's clock: like a hybrid logical
clock's maximum offset, a clock may lead the node's own by at most `max_drift`, and it
may never pass `MAX_CLOCK`.
"""

from __future__ import annotations

# The highest clock a transaction may carry. The wire and the storage engines hold
# clocks up to 2**63 - 1 (PostgreSQL bigint; orjson's signed 64-bit range); stopping at
# 2**62 leaves every node that observes such a clock 2**62 ticks (and stale-clock
# re-stamps) before anything overflows.
MAX_CLOCK = 1 << 62

# How far a transaction's clock may lead the durable node's clock. An honest client
# leads by its commits in flight plus its stale-clock re-stamps (2**15 at most with the
# default 16 retries), far below this; a client that could push the clock forward by at
# most this much per acked commit needs 2**30 commits to exhaust MAX_CLOCK.
DEFAULT_MAX_DRIFT = 1 << 32


class LamportClock:
    """A logical clock: `tick()` for each local transaction, `observe()` for each received one.

    Together with the node id it forms the LWW `Stamp`, so a write made after seeing
    another write always carries a higher stamp.
    """

    __slots__ = ("value",)

    def __init__(self, start: int = 0) -> None:
        if start < 0:
            raise ValueError(f"a Lamport clock starts at >= 0, got {start}")
        self.value = start

    def tick(self) -> int:
        self.value += 1
        return self.value

    def observe(self, clock: int) -> None:
        if clock > self.value:
            self.value = clock

    def admission_error(self, clock: int, max_drift: int = DEFAULT_MAX_DRIFT) -> str | None:
        """Why a transaction stamped `clock` must not be observed, or None if it may.

        Refused: a clock above MAX_CLOCK, or one more than `max_drift` ahead of this
        clock. Clocks at or below this one are always admitted (LWW orders them)."""
        if clock <= self.value:
            return None
        if clock > MAX_CLOCK:
            return f"clock {clock} is above the highest clock a transaction may carry ({MAX_CLOCK} = 2**62)"
        if clock - self.value > max_drift:
            return (
                f"clock {clock} is {clock - self.value} ahead of the durable node's clock {self.value}; "
                f"a transaction may lead it by at most {max_drift} (max_clock_drift)"
            )
        return None

    def __repr__(self) -> str:
        return f"LamportClock({self.value})"
