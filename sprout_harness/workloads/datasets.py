"""Deterministic dataset builders: the same (kind, seed, start, count) always gives the same rows.

Every row has `seq` (its index in the kind's sequence, unique) so checks can find it again.
Fields used by generated predicates always exist and have one type each (no nulls), so the
harness's reference evaluator and any stack agree without edge-case semantics.
"""

from __future__ import annotations

import itertools
import random
from typing import Callable, Iterator

Row = dict[str, object]

GENRES = ("rock", "jazz", "pop", "classical", "electronic", "folk", "hiphop", "blues")
LABELS = tuple(f"label-{i:02d}" for i in range(12))
SPECIES = ("cat", "dog", "bird", "fish", "rabbit")
SHELTERS = tuple(f"shelter-{i:02d}" for i in range(20))
YEARS = (1960, 2024)  # [lo, hi)
_WORDS = (
    "blue",
    "night",
    "river",
    "stone",
    "golden",
    "echo",
    "wild",
    "silent",
    "paper",
    "neon",
    "summer",
    "ghost",
    "velvet",
    "iron",
    "glass",
    "electric",
)
_NAMES = ("Milo", "Luna", "Bella", "Max", "Coco", "Oscar", "Nala", "Rocky", "Pip", "Ziggy", "Olive", "Toby")


def _rng(kind: str, seed: int, start: int) -> random.Random:
    return random.Random(f"sprout:{kind}:{seed}:{start}")


def iter_albums(count: int, seed: int, start: int = 0) -> Iterator[Row]:
    """Music albums: title, artist, genre (8), label (12), year 1960-2023, rating 0.0-5.0, tracks 5-20."""
    r = _rng("albums", seed, start)
    for i in range(start, start + count):
        yield {
            "seq": i,
            "title": f"{r.choice(_WORDS)} {r.choice(_WORDS)} {i}",
            "artist": f"artist-{r.randrange(500):03d}",
            "genre": r.choice(GENRES),
            "label": r.choice(LABELS),
            "year": r.randrange(*YEARS),
            "rating": round(r.uniform(0.0, 5.0), 2),
            "tracks": r.randint(5, 20),
        }


def iter_pets(count: int, seed: int, start: int = 0) -> Iterator[Row]:
    """Shelter pets: name, species (5), shelter (20), age 0-19, weight kg, adopted, mood counter."""
    r = _rng("pets", seed, start)
    for i in range(start, start + count):
        yield {
            "seq": i,
            "name": f"{r.choice(_NAMES)}-{i}",
            "species": r.choice(SPECIES),
            "shelter": r.choice(SHELTERS),
            "age": r.randrange(20),
            "weight": round(r.uniform(0.1, 60.0), 1),
            "adopted": r.random() < 0.3,
            "mood": 0,
        }


def albums(count: int, seed: int, start: int = 0) -> list[Row]:
    return list(iter_albums(count, seed, start))


def pets(count: int, seed: int, start: int = 0) -> list[Row]:
    return list(iter_pets(count, seed, start))


STREAMS: dict[str, Callable[[int, int, int], Iterator[Row]]] = {"albums": iter_albums, "pets": iter_pets}
BUILDERS: dict[str, Callable[[int, int, int], list[Row]]] = {"albums": albums, "pets": pets}


def kinds() -> list[str]:
    return sorted(STREAMS)


def stream(kind: str, count: int, seed: int, start: int = 0) -> Iterator[Row]:
    """The rows of `build(kind, count, seed, start)`, one at a time: a large dataset is seeded
    in batches without holding every row twice (the rows and the runner's model)."""
    try:
        rows = STREAMS[kind]
    except KeyError:
        raise ValueError(f"unknown dataset kind {kind!r}; known: {', '.join(kinds())}") from None
    return rows(count, seed, start)


def batches(kind: str, count: int, seed: int, size: int, start: int = 0) -> Iterator[list[Row]]:
    """`stream(...)` in lists of at most `size` rows (the same rows, in order)."""
    rows = stream(kind, count, seed, start)
    while batch := list(itertools.islice(rows, size)):
        yield batch


def build(kind: str, count: int, seed: int, start: int = 0) -> list[Row]:
    return list(stream(kind, count, seed, start))
