"""How a stack is benchmarked by the asv suite: its rows on the suite's `stack` axis.

A stack factory may declare the settings it is benchmarked in with an optional classmethod

    benchmark_variants(query_fields: Mapping[str, Sequence[str | Sequence[str]]])
        -> Sequence[BenchVariant]

`query_fields` says, per collection of the benchmark datasets, which properties the
benchmark queries filter and sort on (a list is a compound key, filter first): the stack
turns them into whatever indexes its storage takes. A stack without the classmethod is
benchmarked once, named after its entry point, on its own defaults, durable node only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

QueryFields = Mapping[str, Sequence["str | Sequence[str]"]]

#: services the harness provides to a variant that names them in `needs`
SERVICES = ("postgres",)


@dataclass(frozen=True)
class BenchVariant:
    """One value of the asv suite's `stack` parameter.

    - `name`: the parameter value shown on the published page (unique across stacks; keep
      it stable, the page's history is keyed by it);
    - `storage`: the config's `storage` section as YAML would write it (`engine`, `params`,
      ...); empty for the stack's own defaults;
    - `connectors`: the connectors ephemeral nodes are benchmarked over; empty when the
      stack builds no ephemeral nodes (its rows are then durable only);
    - `needs`: services the harness starts first: `postgres` puts a DSN in `storage.dsn`
      (`SPROUT_PG_DSN`, else a throwaway cluster; the variant is n/a without one);
    - `policy`: the config's `policy` section (`id`, `params`); empty for the stack's default;
    - `stack_params`: the config's `stack.params`.
    """

    name: str
    storage: Mapping[str, Any] = field(default_factory=dict)
    connectors: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    policy: Mapping[str, Any] = field(default_factory=dict)
    stack_params: Mapping[str, Any] = field(default_factory=dict)
