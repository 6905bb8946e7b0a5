"""Configuration: dataclasses (schema), YAML loading with overrides (load), validation (validate)."""

from sprout_harness.config.load import apply_overrides, config_from_dict, find_config, load_config, load_yaml
from sprout_harness.config.schema import (
    LinkConfig,
    PhaseConfig,
    PlacementConfig,
    PolicyConfig,
    RunnerConfig,
    SproutConfig,
    StackConfig,
    StorageConfig,
    TopologyConfig,
)

__all__ = [
    "LinkConfig",
    "PhaseConfig",
    "PlacementConfig",
    "PolicyConfig",
    "RunnerConfig",
    "SproutConfig",
    "StackConfig",
    "StorageConfig",
    "TopologyConfig",
    "apply_overrides",
    "config_from_dict",
    "find_config",
    "load_config",
    "load_yaml",
]
