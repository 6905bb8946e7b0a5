"""Find stacks: by name in the entry point group `sprout_harness.stacks`, or by `package.module:attr`."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from sprout_harness.contracts.errors import StackError, did_you_mean

GROUP = "sprout_harness.stacks"


@dataclass(frozen=True)
class StackEntry:
    name: str
    target: str  # "package.module:attr"


def stack_entries() -> list[StackEntry]:
    """Every stack registered under the entry point group, sorted by name."""
    eps = entry_points(group=GROUP)
    return sorted((StackEntry(ep.name, ep.value) for ep in eps), key=lambda e: e.name)


def load_object(path: str) -> Any:
    """Import `package.module:attr` (attr may be dotted)."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise StackError(f"stack {path!r}: an import path must look like 'package.module:attr'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise StackError(f"stack {path!r}: cannot import module {module_name!r} ({exc}); install it or fix the path") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise StackError(f"stack {path!r}: module {module_name!r} has no attribute {attr!r}") from None
    return obj


def resolve_stack(name: str) -> Any:
    """The stack factory named `name` (an entry point name or an import path)."""
    if ":" in name:
        factory = load_object(name)
    else:
        entries = {e.name: e for e in stack_entries()}
        if name not in entries:
            known = ", ".join(sorted(entries)) or "none installed"
            raise StackError(
                f"stack {name!r}{did_you_mean(name, entries)} is not registered under entry point group "
                f"{GROUP!r} (known: {known}); "
                "install its package or give an import path 'package.module:attr'"
            )
        try:
            factory = load_object(entries[name].target)
        except StackError as exc:
            raise StackError(f"stack {name!r} cannot be loaded: {exc}") from None
    if not callable(factory):
        raise StackError(f"stack {name!r}: {type(factory).__name__} object is not a stack factory (not callable)")
    return factory
