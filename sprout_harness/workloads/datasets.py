"""Deterministic dataset builders: the same (kind, seed, start, count) always gives the same rows.

Every row has `seq` (its index in the kind's sequence, unique) so checks can find it again.
Fields used by generated predicates always exist and have one type each (no nulls), so the
harness's reference evaluator and any stack agree without edge-case semantics.
"""

from __future__ import annotations

import random
from typing import Callable

Row = dict[str, object]

GENRES = ("rock", "jazz", "pop", "classical", "electronic", "folk", "hiphop", "blues")
LABELS = tuple(f"label-{i:02d}" for i in range(12))
SPECIES = ("cat", "dog", "bird", "fish", "rabbit")
SHELTERS = tuple(f"shelter-{i:02d}" for i in range(20))
YEARS = (1960, 2024)  # [lo, hi)
_WORDS = ("blue", "night", "river", "stone", "golden", "echo", "wild", "silent", "paper", "neon",
          "summer", "ghost", "velvet", "iron", "glass", "electric")
_NAMES = ("Milo", "Luna", "Bella", "Max", "Coco", "Oscar", "Nala", "Rocky", "Pip", "Ziggy", "Olive", "Toby")


def _rng(kind: str, seed: int, start: int) -> random.Random:
    return random.Random(f"sprout:{kind}:{seed}:{start}")


def albums(count: int, seed: int, start: int = 0) -> list[Row]:
    """Music albums: title, artist, genre (8), label (12), year 1960-2023, rating 0.0-5.0, tracks 5-20."""
    r = _rng("albums", seed, start)
    out: list[Row] = []
    for i in range(start, start + count):
        out.append({
            "seq": i,
            "title": f"{r.choice(_WORDS)} {r.choice(_WORDS)} {i}",
            "artist": f"artist-{r.randrange(500):03d}",
            "genre": r.choice(GENRES),
            "label": r.choice(LABELS),
            "year": r.randrange(*YEARS),
            "rating": round(r.uniform(0.0, 5.0), 2),
            "tracks": r.randint(5, 20),
        })
    return out


def pets(count: int, seed: int, start: int = 0) -> list[Row]:
    """Shelter pets: name, species (5), shelter (20), age 0-19, weight kg, adopted, mood counter."""
    r = _rng("pets", seed, start)
    out: list[Row] = []
    for i in range(start, start + count):
        out.append({
            "seq": i,
            "name": f"{r.choice(_NAMES)}-{i}",
            "species": r.choice(SPECIES),
            "shelter": r.choice(SHELTERS),
            "age": r.randrange(20),
            "weight": round(r.uniform(0.1, 60.0), 1),
            "adopted": r.random() < 0.3,
            "mood": 0,
        })
    return out


BUILDERS: dict[str, Callable[[int, int, int], list[Row]]] = {"albums": albums, "pets": pets}


def kinds() -> list[str]:
    return sorted(BUILDERS)


def build(kind: str, count: int, seed: int, start: int = 0) -> list[Row]:
    try:
        builder = BUILDERS[kind]
    except KeyError:
        raise ValueError(f"unknown dataset kind {kind!r}; known: {', '.join(kinds())}") from None
    return builder(count, seed, start)
