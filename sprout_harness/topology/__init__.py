"""The topology runner: build nodes, wire links, seed, sync, run phases, always tear down."""

from sprout_harness.config.settings import stack_settings
from sprout_harness.topology.runner import Runner, run, run_sync

__all__ = ["Runner", "run", "run_sync", "stack_settings"]
