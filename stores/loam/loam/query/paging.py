"""Query coercion and policy-filtered, keyset-paged reads over a storage engine's `fetch`
(used by both node roles and by live queries)."""

from __future__ import annotations

from typing import Callable

from loam.errors import ValidationError
from loam.model import Entity
from loam.query.ast import Query
from loam.query.parser import parse

Fetch = Callable[..., list[Entity]]  # (collection, query, *, after, limit) -> entities in query order


def coerce_query(query: str | Query) -> Query:
    """Parse query text, or pass a `Query` through."""
    if isinstance(query, Query):
        return query
    if isinstance(query, str):
        return parse(query)
    raise ValidationError(f"a query must be query text or a loam.query.ast.Query, got {type(query).__name__}")


def fetch_filtered(
    fetch: Fetch,
    collection: str,
    query: Query,
    *,
    after: Entity | None = None,
    limit: int | None = None,
    readable: Callable[[Entity], bool] | None = None,
) -> tuple[list[Entity], bool]:
    """Up to `limit` readable matches after `after`, and whether the source is exhausted.

    Entities `readable` rejects are skipped and the read continues after them (keyset
    paging), so a LIMIT is filled with entities the context may see.
    """
    if limit is None:
        rows = fetch(collection, query, after=after, limit=None)
        if readable is not None:
            rows = [e for e in rows if readable(e)]
        return rows, True
    out: list[Entity] = []
    need = limit
    while need > 0:
        rows = fetch(collection, query, after=after, limit=need)
        if readable is None:
            out.extend(rows)
        else:
            out.extend(e for e in rows if readable(e))
        if len(rows) < need:
            return out, True
        after = rows[-1]
        need = limit - len(out)
    return out, False
