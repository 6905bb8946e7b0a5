"""Query generators: a representative predicate mix over the dataset kinds.

Each family is a function (rng, kind, limit) -> QuerySpec. Families: equality, range, in,
and_or, order_limit, not. New families register in `FAMILIES` (query scenarios reuse them).
"""

from __future__ import annotations

import random
from typing import Callable

from sprout_harness.contracts.errors import ConfigError
from sprout_harness.contracts.query import AllOf, AnyOf, Cond, InList, Not, Order, QuerySpec
from sprout_harness.workloads import datasets

# Per kind: categorical fields (with their values) and numeric fields (with [lo, hi) bounds).
CATEGORICAL: dict[str, dict[str, tuple]] = {
    "albums": {"genre": datasets.GENRES, "label": datasets.LABELS},
    "pets": {"species": datasets.SPECIES, "shelter": datasets.SHELTERS},
}
NUMERIC: dict[str, dict[str, tuple[float, float]]] = {
    "albums": {
        "year": (float(datasets.YEARS[0]), float(datasets.YEARS[1])),
        "rating": (0.0, 5.0),
        "tracks": (5.0, 21.0),
    },
    "pets": {"age": (0.0, 20.0), "weight": (0.1, 60.0)},
}
INTEGER_FIELDS = {"year", "tracks", "age"}


def _cat(rng: random.Random, kind: str) -> tuple[str, tuple]:
    name = rng.choice(sorted(CATEGORICAL[kind]))
    return name, CATEGORICAL[kind][name]


def _num(rng: random.Random, kind: str) -> tuple[str, float, float]:
    name = rng.choice(sorted(NUMERIC[kind]))
    lo, hi = NUMERIC[kind][name]
    return name, lo, hi


def _point(rng: random.Random, name: str, lo: float, hi: float) -> float | int:
    v = rng.uniform(lo, hi)
    return int(v) if name in INTEGER_FIELDS else round(v, 2)


def equality(rng: random.Random, kind: str, limit: int) -> QuerySpec:
    name, values = _cat(rng, kind)
    return QuerySpec(Cond(name, "=", rng.choice(values)), kind="equality")


def range_(rng: random.Random, kind: str, limit: int) -> QuerySpec:
    name, lo, hi = _num(rng, kind)
    width = (hi - lo) * 0.1
    a = _point(rng, name, lo, hi - width)
    step = (int(width) or 1) if name in INTEGER_FIELDS else round(width, 2)
    b = a + step if name in INTEGER_FIELDS else round(a + step, 2)
    return QuerySpec(AllOf((Cond(name, ">=", a), Cond(name, "<", b))), kind="range")


def in_(rng: random.Random, kind: str, limit: int) -> QuerySpec:
    name, values = _cat(rng, kind)
    return QuerySpec(InList(name, tuple(rng.sample(values, 3))), kind="in")


def and_or(rng: random.Random, kind: str, limit: int) -> QuerySpec:
    (c1, v1), (c2, v2) = sorted(CATEGORICAL[kind].items())[:2]
    n, lo, hi = _num(rng, kind)
    pred = AllOf(
        (
            Cond(c1, "=", rng.choice(v1)),
            AnyOf((Cond(n, ">", _point(rng, n, lo, hi)), InList(c2, tuple(rng.sample(v2, 2))))),
        )
    )
    return QuerySpec(pred, kind="and_or")


def order_limit(rng: random.Random, kind: str, limit: int) -> QuerySpec:
    name, values = _cat(rng, kind)
    n, _, _ = _num(rng, kind)
    return QuerySpec(
        Cond(name, "=", rng.choice(values)),
        order_by=(Order(n, descending=rng.random() < 0.5),),
        limit=limit,
        kind="order_limit",
    )


def not_(rng: random.Random, kind: str, limit: int) -> QuerySpec:
    name, values = _cat(rng, kind)
    n, lo, hi = _num(rng, kind)
    pred = AllOf((Not(InList(name, tuple(rng.sample(values, len(values) - 1)))), Cond(n, "<", _point(rng, n, lo, hi))))
    return QuerySpec(pred, kind="not")


FAMILIES: dict[str, Callable[[random.Random, str, int], QuerySpec]] = {
    "equality": equality,
    "range": range_,
    "in": in_,
    "and_or": and_or,
    "order_limit": order_limit,
    "not": not_,
}
DEFAULT_MIX = {"equality": 1.0, "range": 1.0, "in": 1.0, "and_or": 1.0, "order_limit": 1.0}


def check_mix(mix: dict[str, float], path: str) -> None:
    for name, w in mix.items():
        if name not in FAMILIES:
            raise ConfigError(
                f"unknown predicate family; allowed: {', '.join(FAMILIES)}", f"{path}.predicate_mix.{name}"
            )
        if w < 0:
            raise ConfigError(f"got {w}; weights must be >= 0", f"{path}.predicate_mix.{name}")
    if not any(w > 0 for w in mix.values()):
        raise ConfigError(f"got {mix}; at least one weight must be > 0", f"{path}.predicate_mix")


def generate(rng: random.Random, kind: str, mix: dict[str, float], count: int, limit: int) -> list[QuerySpec]:
    names = [n for n, w in mix.items() if w > 0]
    weights = [mix[n] for n in names]
    return [FAMILIES[rng.choices(names, weights)[0]](rng, kind, limit) for _ in range(count)]
