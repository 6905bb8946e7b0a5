"""Which live queries a commit can affect: the subscription index.

Subscriptions are indexed by collection, and inside a collection by one equality of
their predicate when it has one:

- a predicate `f = v`, `f IN (v1, v2)`, or a top-level AND containing such a term is
  filed under (f, v) for each value (the first such term is used; `=` preferred over IN);
- every other subscription is "unindexed" and sees every change of its collection.

A change is routed to the unindexed subscriptions plus those filed under
(f, before.f) and (f, after.f) for every indexed field f: the *before* value matters
because an entity leaving a result must be removed from it. So a commit touching an
entity that matches none of the indexed subscriptions costs O(#indexed fields +
#unindexed), and a commit matching S subscriptions costs O(S).

Values are keyed with `loam.query.order.value_key`, the query language's own total
order, so `true` never meets `1` while `1` meets `1.0` exactly as equality does. The index only has to return a superset of the affected
subscriptions; each live query re-checks its full predicate.
"""

from __future__ import annotations

from typing import Any, Hashable, Iterable, Protocol

from loam.model import Change, Scalar
from loam.query.ast import And, Compare, Expr, In
from loam.query.order import value_key


class Subscriber(Protocol):
    collection: str

    @property
    def where(self) -> Expr | None: ...


def index_term(expr: Expr | None) -> tuple[str, tuple[Scalar, ...]] | None:
    """The (field, values) a subscription is filed under, or None when it must see everything."""
    if expr is None:
        return None
    items: Iterable[Expr] = expr.items if isinstance(expr, And) else (expr,)
    best: tuple[str, tuple[Scalar, ...]] | None = None
    for it in items:
        if isinstance(it, Compare) and it.op == "=":
            return (it.field, (it.value,))
        if best is None and isinstance(it, In) and not it.negated and it.values:
            best = (it.field, tuple(it.values))
    return best


class _CollectionIndex:
    __slots__ = ("unindexed", "by_field", "count")

    def __init__(self) -> None:
        self.unindexed: dict[Any, None] = {}  # insertion-ordered set
        self.by_field: dict[str, dict[Hashable, dict[Any, None]]] = {}
        self.count = 0


class SubscriptionRegistry:
    """Live queries by collection and (field, value); see the module docstring."""

    def __init__(self) -> None:
        self._colls: dict[str, _CollectionIndex] = {}
        self._terms: dict[Any, tuple[str, tuple[Scalar, ...]] | None] = {}

    def __len__(self) -> int:
        return len(self._terms)

    def __contains__(self, sub: Any) -> bool:
        return sub in self._terms

    def all(self) -> list[Any]:
        return list(self._terms)

    def add(self, sub: Subscriber) -> None:
        if sub in self._terms:
            return
        ci = self._colls.get(sub.collection)
        if ci is None:
            ci = self._colls[sub.collection] = _CollectionIndex()
        term = index_term(sub.where)
        self._terms[sub] = term
        ci.count += 1
        if term is None:
            ci.unindexed[sub] = None
            return
        f, values = term
        table = ci.by_field.setdefault(f, {})
        for v in values:
            table.setdefault(value_key(v), {})[sub] = None

    def remove(self, sub: Subscriber) -> None:
        if sub not in self._terms:
            return
        term = self._terms.pop(sub)
        ci = self._colls[sub.collection]
        ci.count -= 1
        if term is None:
            ci.unindexed.pop(sub, None)
        else:
            f, values = term
            table = ci.by_field[f]
            for v in values:
                k = value_key(v)
                subs = table.get(k)
                if subs is not None:
                    subs.pop(sub, None)
                    if not subs:
                        del table[k]
            if not table:
                del ci.by_field[f]
        if ci.count == 0:
            del self._colls[sub.collection]

    def counts(self) -> dict[str, int]:
        """Subscriptions per collection."""
        return {c: ci.count for c, ci in self._colls.items()}

    def entries(self) -> int:
        """Index entries held (for leak checks): unindexed + one per (field, value, sub)."""
        n = 0
        for ci in self._colls.values():
            n += len(ci.unindexed)
            for table in ci.by_field.values():
                n += sum(len(s) for s in table.values())
        return n

    def route(self, changes: Iterable[Change]) -> dict[Any, list[Change]]:
        """Group a commit's changes by the subscriptions they may affect."""
        out: dict[Any, list[Change]] = {}
        colls = self._colls
        if not colls:
            return out
        for ch in changes:
            ci = colls.get(ch.collection)
            if ci is None:
                continue
            for sub in ci.unindexed:
                lst = out.get(sub)
                if lst is None:
                    out[sub] = [ch]
                else:
                    lst.append(ch)
            if not ci.by_field:
                continue
            # `hit` is the first matching table entry itself until a second one must be
            # merged in (then a copy): the common change hits one entry of one field
            hit: dict[Any, None] | None = None
            b, a = ch.before, ch.after
            for f, table in ci.by_field.items():
                # Entity.get inline; an update that keeps the field's value looks it up once
                if b is not None:
                    vb = b.id if f == "id" else b.props.get(f)
                    s = table.get(value_key(vb))
                    if s:
                        hit = s if hit is None else {**hit, **s}
                    if a is None:
                        continue
                    va = a.id if f == "id" else a.props.get(f)
                    if type(va) is type(vb) and va == vb:
                        continue
                elif a is not None:
                    va = a.id if f == "id" else a.props.get(f)
                else:
                    continue
                s = table.get(value_key(va))
                if s:
                    hit = s if hit is None else {**hit, **s}
            if hit is None:
                continue
            for sub in hit:
                lst = out.get(sub)
                if lst is None:
                    out[sub] = [ch]
                else:
                    lst.append(ch)
        return out
