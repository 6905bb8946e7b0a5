"""Errors the harness and stack plugins raise; the CLI turns each into one clear line."""

from __future__ import annotations

import difflib
from typing import Iterable


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """ " (did you mean 'x'?)" for the known name closest to a misspelt `name`, or ""."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


class SproutError(Exception):
    """Base class of the harness's own errors."""


class ConfigError(SproutError):
    """A configuration problem: names the field path, the bad value and what is allowed."""

    def __init__(self, message: str, path: str | None = None):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class StackError(SproutError):
    """A stack could not be loaded, built or reached (the message names it and the fix)."""


class Unsupported(SproutError):
    """The stack lacks a capability a phase needs; the phase reports "unsupported"."""


class CheckFailed(SproutError):
    """A workload's validation failed (raised inside a phase to stop it early)."""
