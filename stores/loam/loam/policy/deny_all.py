"""Denies every read and write (for testing that denials change nothing)."""

from __future__ import annotations

from typing import Any, ClassVar

from loam.errors import PolicyDenied
from loam.model import Entity, Op
from loam.policy.base import BasePolicy, op_kind


class DenyAllPolicy(BasePolicy):
    name: ClassVar[str] = "deny-all"
    filters_reads = True

    def check_write(self, ctx: Any, op: Op, before: Entity | None) -> None:
        raise PolicyDenied(
            f"policy 'deny-all' refuses {op_kind(op)} of {op.collection}/{op.id}; configure another policy to allow writes"
        )

    def check_read(self, ctx: Any, collection: str) -> None:
        raise PolicyDenied(
            f"policy 'deny-all' refuses reads of collection {collection!r}; configure another policy to allow reads"
        )

    def can_read(self, ctx: Any, collection: str, entity: Entity) -> bool:
        return False
