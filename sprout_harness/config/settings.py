"""What a stack is given of a config: its `StackSettings`."""

from __future__ import annotations

from sprout_harness.config.schema import SproutConfig
from sprout_harness.contracts.stack import StackSettings


def stack_settings(cfg: SproutConfig) -> StackSettings:
    """Only what the config sets: a key the config leaves unset is absent (`storage.engine`,
    `policy.id`, ...) or None (a link's `connector`), and the stack applies its own default."""
    return StackSettings(
        name=cfg.stack.name,
        params=dict(cfg.stack.params),
        storage=cfg.storage.as_settings(),
        policy=cfg.policy.as_settings(),
        topology={
            "durable": cfg.topology.durable,
            "ephemeral": cfg.topology.ephemeral,
            "links": cfg.topology.resolved_links(),
        },
        seed=cfg.seed,
    )
