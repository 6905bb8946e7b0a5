"""Find stacks: by name in the entry point group `sprout_harness.stacks`, or by `package.module:attr`."""

from __future__ import annotations

import importlib
import inspect
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
        raise StackError(
            f"stack {path!r}: cannot import module {module_name!r} ({exc}); install it or fix the path"
        ) from None
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
    missing = stack_contract_gaps(factory)
    if missing:
        raise StackError(f"stack {name!r} does not resolve to a stack factory: {missing}")
    return factory


# The methods of `contracts.Stack`: a factory's instances must have them all.
STACK_METHODS = ("capabilities", "start", "context", "durable", "connector", "ephemeral", "close", "describe")


def stack_contract_gaps(factory: Any) -> str | None:
    """Why `factory` is not a stack factory (a class whose instances have the `Stack`
    methods), or None. Checked on the class itself: nothing is called, so an import path
    such as `os:system` is refused before it could run."""
    if not inspect.isclass(factory):
        return f"{factory!r} is not a class"
    absent = [m for m in STACK_METHODS if not callable(getattr(factory, m, None))]
    if absent:
        return f"class {factory.__name__} lacks the Stack method(s) {', '.join(absent)}"
    return None
