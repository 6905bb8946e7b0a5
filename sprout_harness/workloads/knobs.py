"""Phase knobs: each phase declares a dataclass of knobs built with `knob(...)`.

A phase's knob values are its dataclass defaults, overridden by the config's shared
`workload:` section (for knobs of the same name), overridden by the phase's `params:`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

ENTITY_BYTES = 2048
"""Estimated memory one entity costs while a run holds it (the row, the runner's model of it,
the storage engine's share; measured at about 800 bytes plus the engine's). Validation checks
the seeded datasets and every phase's `memory_bytes()` estimate against the machine with it."""


def knob(
    default: Any, help: str, *, min: float | None = None, max: float | None = None, choices: Sequence[Any] | None = None
) -> Any:
    """A knob field with its documentation and allowed range."""
    meta = {"help": help, "min": min, "max": max, "choices": tuple(choices) if choices else None}
    if isinstance(default, (dict, list)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)
