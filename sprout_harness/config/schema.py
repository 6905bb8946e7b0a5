"""The configuration, as dataclasses: the same structure as the YAML files in configs/.

Every field is documented in docs/configuration.md. Build one from a dict with
`sprout_harness.config.load.config_from_dict` (which validates), or from YAML with
`load_config`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ROLES = ("durable", "ephemeral")


@dataclass
class StackConfig:
    """`name`: an entry point name in `sprout_harness.stacks` or `package.module:attr`;
    empty: the one installed stack (validation refuses it when several are installed)."""

    name: str = ""
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class StorageConfig:
    """Storage of the durable nodes. Whatever is unset is the stack's choice (its default
    engine, pool size, a throwaway path or database): only what the config says is passed."""

    engine: str | None = None
    path: str | None = None
    dsn: str | None = None
    pool_size: int | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def as_settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("engine", "path", "dsn", "pool_size"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out.update(self.params)
        return out


@dataclass
class PolicyConfig:
    """`id`: the stack's policy agent; unset: the stack's default."""

    id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def as_settings(self) -> dict[str, Any]:
        return ({"id": self.id} if self.id is not None else {}) | self.params


@dataclass
class LinkConfig:
    """Override for one ephemeral's link: which durable it connects to and over what."""

    ephemeral: int = 0
    durable: int | None = None
    connector: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TopologyConfig:
    """`durable` >= 1 durable nodes, `ephemeral` >= 0 ephemeral nodes.

    Ephemeral i links to durable i % durable over `connector` unless `links` says otherwise.
    """

    durable: int = 1
    ephemeral: int = 0
    connector: str | None = None  # unset: the stack's first connector (Capabilities.connectors)
    connector_params: dict[str, Any] = field(default_factory=dict)
    links: list[LinkConfig] = field(default_factory=list)

    def resolved_links(self) -> list[dict[str, Any]]:
        """One entry per ephemeral: {ephemeral, durable, connector, params}; `connector` is None
        where neither the link nor `connector` names one (the runner asks the stack)."""
        overrides = {link.ephemeral: link for link in self.links}
        out = []
        for i in range(self.ephemeral):
            o = overrides.get(i)
            out.append(
                {
                    "ephemeral": i,
                    "durable": o.durable if o is not None and o.durable is not None else i % self.durable,
                    "connector": (o.connector if o is not None and o.connector else self.connector),
                    "params": {**self.connector_params, **(o.params if o is not None else {})},
                }
            )
        return out


@dataclass
class PhaseConfig:
    """One phase to run: a catalog entry `name`, the role it targets, its knob overrides."""

    name: str = ""
    target: str = "durable"
    params: dict[str, Any] = field(default_factory=dict)
    label: str | None = None  # report name when the same phase runs twice (default: name/target)

    @property
    def title(self) -> str:
        return self.label or f"{self.name}@{self.target}"


@dataclass
class PlacementConfig:
    """Where the client side of a phase runs when the phase spreads it over workers (its
    `processes` knob > 0): `local` worker processes of this machine, or `ray` actors on the
    Ray cluster at `address` (`workers` actors per fleet; 0: the phase's `processes`)."""

    engine: str = "local"
    address: str | None = None
    workers: int = 0


@dataclass
class RunnerConfig:
    """Bounds on the runner's waits (they are checks with a deadline, not sleeps)."""

    sync_timeout_s: float = 60.0
    check_timeout_s: float = 15.0
    seed_batch_size: int = 500
    repeat: int = 1  # independent runs, each in a fresh process (`sprout run --repeat`)
    warmup: int = 0  # extra runs before them whose figures are discarded
    placement: PlacementConfig = field(default_factory=PlacementConfig)


@dataclass
class SproutConfig:
    name: str = "unnamed"
    description: str = ""
    seed: int = 42
    suite: str = "sprout"
    stack: StackConfig = field(default_factory=StackConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    topology: TopologyConfig = field(default_factory=TopologyConfig)
    datasets: dict[str, int] = field(default_factory=lambda: {"albums": 1000, "pets": 1000})
    workload: dict[str, Any] = field(default_factory=dict)
    phases: list[PhaseConfig] = field(default_factory=list)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    # metric pattern -> {statistic: "< bound"} (and `checks: "100%"`), k6-style; see docs/configuration.md
    thresholds: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
