"""What a stack is given of a config: its `StackSettings`."""

from __future__ import annotations

from sprout_harness.config.schema import SproutConfig
from sprout_harness.contracts.stack import StackSettings


def stack_settings(cfg: SproutConfig) -> StackSettings:
    return StackSettings(
        name=cfg.stack.name,
        params=dict(cfg.stack.params),
        storage=cfg.storage.as_settings(),
        policy={"id": cfg.policy.id, **cfg.policy.params},
        topology={"durable": cfg.topology.durable, "ephemeral": cfg.topology.ephemeral,
                  "links": cfg.topology.resolved_links()},
        seed=cfg.seed,
    )
