"""Policy agents, chosen by name plus configuration.

Adding a policy = a module with a `PolicyAgent` class + one line in `_REGISTRY` (or a
`register_policy` call from anywhere).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from loam.errors import ValidationError
from loam.policy.base import BasePolicy, PolicyAgent

_REGISTRY: dict[str, str | Callable[..., PolicyAgent]] = {
    "permissive": "loam.policy.permissive:PermissivePolicy",
    "deny-all": "loam.policy.deny_all:DenyAllPolicy",
    "owner": "loam.policy.owner:OwnerPolicy",
}


def register_policy(name: str, factory: str | Callable[..., PolicyAgent]) -> None:
    """Register a policy factory (callable or 'module:attr' path) under `name`."""
    _REGISTRY[name] = factory


def policy_names() -> list[str]:
    return sorted(_REGISTRY)


def create_policy(name: str, **config: Any) -> PolicyAgent:
    """Build the policy registered as `name` with its configuration."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValidationError(f"unknown policy {name!r}; known policies: {', '.join(policy_names())}") from None
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    try:
        return factory(**config)
    except TypeError as exc:
        raise ValidationError(f"policy {name!r}: bad configuration {sorted(config)}: {exc}") from None


__all__ = ["BasePolicy", "PolicyAgent", "create_policy", "policy_names", "register_policy"]
