"""The policy agent contract: every write and read a node serves is checked by one.

A node calls, in this order:
- `check_read(ctx, collection)` once per get/fetch/subscribe; raising `PolicyDenied`
  refuses the whole read (deny-all does this);
- `can_read(ctx, collection, entity)` per entity it would return or notify; False
  hides the entity (`get` returns None, results and notifications leave it out);
- `check_write(ctx, op, before)` per operation of a transaction, `before` being the
  visible entity the op applies to (None when absent or deleted). Raising
  `PolicyDenied` aborts the whole transaction; nothing is written.

`filters_reads = False` promises that `can_read` is always True, `checks_reads = False`
that `check_read` never raises and `checks_writes = False` that `check_write` never
raises, so nodes can skip those calls on hot paths (batched creates, live-query fan-out,
get by id). A node reads the flags once, when it is built; an agent without one is
assumed to check.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

from loam.model import Entity, Op

# Context lives in loam.node.api; imported lazily there to avoid a cycle, typed as Any here.


@runtime_checkable
class PolicyAgent(Protocol):
    name: ClassVar[str]
    filters_reads: bool
    checks_writes: bool

    def check_write(self, ctx: Any, op: Op, before: Entity | None) -> None:
        """Raise PolicyDenied if `ctx` may not apply `op` to `before`."""
        ...

    def check_read(self, ctx: Any, collection: str) -> None:
        """Raise PolicyDenied if `ctx` may not read `collection` at all."""
        ...

    def can_read(self, ctx: Any, collection: str, entity: Entity) -> bool: ...

    def describe(self) -> dict[str, Any]: ...


class BasePolicy:
    """Convenience base: allows everything; subclasses override what they restrict."""

    name: ClassVar[str] = "base"
    filters_reads: bool = False
    checks_writes: bool = True

    def check_write(self, ctx: Any, op: Op, before: Entity | None) -> None:
        return None

    def check_read(self, ctx: Any, collection: str) -> None:
        return None

    def can_read(self, ctx: Any, collection: str, entity: Entity) -> bool:
        return True

    def describe(self) -> dict[str, Any]:
        return {"policy": self.name}


def op_kind(op: Op) -> str:
    return type(op).__name__.lower()
