"""The Lamport clock that stamps a node's transactions."""

from __future__ import annotations


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

    def __repr__(self) -> str:
        return f"LamportClock({self.value})"
