"""Owner policy: a user writes only entities whose `owner` property is their user name.

- create: the new entity's `owner` (config `field`, default "owner") must equal ctx.user,
  and a create on an id that already exists (it replaces that entity) is allowed only to
  the existing entity's owner;
- update/delete: the current entity's owner must equal ctx.user, and an update may not
  set the owner to anybody else (no giving entities away). An update of an entity that
  does not exist (possible for transactions replicated out of order) is treated like a
  create: it must set the owner to ctx.user. Deleting an absent entity is allowed (it
  changes nothing anybody can see);
- reads: `read="all"` lets everybody read everything, `read="owner"` only one's own.
A context without a user (ctx.user is None) can write nothing and, with read="owner",
read nothing.
"""

from __future__ import annotations

from typing import Any, ClassVar

from loam.errors import PolicyDenied, ValidationError
from loam.model import Create, Delete, Entity, Op, Update
from loam.policy.base import BasePolicy, op_kind


class OwnerPolicy(BasePolicy):
    name: ClassVar[str] = "owner"
    checks_reads = False  # whole collections are never refused; read="owner" filters per entity

    def __init__(self, read: str = "all", field: str = "owner") -> None:
        if read not in ("all", "owner"):
            raise ValidationError(f"policy 'owner': read must be 'all' or 'owner', got {read!r}")
        if not isinstance(field, str) or not field or field == "id":
            raise ValidationError(f"policy 'owner': field must be a property name other than 'id', got {field!r}")
        self.read = read
        self.field = field
        self.filters_reads = read == "owner"

    def _deny(self, ctx: Any, op: Op, why: str) -> None:
        raise PolicyDenied(
            f"policy 'owner' refuses {op_kind(op)} of {op.collection}/{op.id} by user {ctx.user!r}: {why}"
        )

    def check_write(self, ctx: Any, op: Op, before: Entity | None) -> None:
        user = ctx.user
        if user is None:
            self._deny(ctx, op, "the context has no user; connect with a user name")
        f = self.field
        if isinstance(op, Create) and before is not None:
            # A create on an id that exists replaces that entity: only its owner may, so a
            # create can never take over somebody else's entity (nor give it away below).
            if before.props.get(f) != user:
                self._deny(ctx, op, f"the entity belongs to {before.props.get(f)!r}")
        if isinstance(op, Create) or (isinstance(op, Update) and before is None):
            if op.props.get(f) != user:
                self._deny(ctx, op, f"set property {f!r} to your user name {user!r}")
            return
        if isinstance(op, Delete) and before is None:
            return
        assert before is not None
        if before.props.get(f) != user:
            self._deny(ctx, op, f"the entity belongs to {before.props.get(f)!r}")
        if isinstance(op, Update) and f in op.props and op.props[f] != user:
            self._deny(ctx, op, f"you may not change {f!r} to another user ({op.props[f]!r})")

    def can_read(self, ctx: Any, collection: str, entity: Entity) -> bool:
        return self.read == "all" or (ctx.user is not None and entity.props.get(self.field) == ctx.user)

    def describe(self) -> dict[str, Any]:
        return {"policy": self.name, "read": self.read, "field": self.field}
