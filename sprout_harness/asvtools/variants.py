"""The asv suite's `stack` axis, from the stacks installed under the entry point group.

Each installed stack contributes the variants its factory declares (`benchmark_variants`,
see `contracts.variants`), or one durable-only variant on its defaults. A list of variant or
stack names restricts the axis: the asv suite (`sprout_harness.asvsuite.selected_stacks`) takes
it from `SPROUT_ASV_STACKS`, e.g. for a gate that covers one stack, else from a project's
`sprout-asv.json`. A name that selects nothing is a row that says so. A stack that cannot
be loaded, or declares variants the suite cannot use, becomes a
variant whose rows are n/a with the reason: one broken plugin must not hide the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from sprout_harness import plugins
from sprout_harness.contracts import SproutError
from sprout_harness.contracts.variants import SERVICES, BenchVariant, QueryFields


@dataclass(frozen=True)
class Variant:
    """A `BenchVariant` with the entry point it belongs to, or why it cannot run (`broken`)."""

    name: str
    stack: str
    storage: Mapping[str, Any] = field(default_factory=dict)
    connectors: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    policy: Mapping[str, Any] = field(default_factory=dict)
    stack_params: Mapping[str, Any] = field(default_factory=dict)
    broken: str | None = None


def _declared(entry: str, factory: Any, query_fields: QueryFields) -> list[Variant]:
    hook = getattr(factory, "benchmark_variants", None)
    if hook is None:
        return [Variant(entry, entry)]
    try:
        got = list(hook(query_fields))
    except Exception as exc:  # a plugin's bug: its rows read n/a with the reason
        return [Variant(entry, entry, broken=f"{entry}.benchmark_variants raised {type(exc).__name__}: {exc}")]
    out = []
    for v in got:
        if not isinstance(v, BenchVariant):
            return [
                Variant(
                    entry, entry, broken=f"{entry}.benchmark_variants returned {type(v).__name__}, not BenchVariant"
                )
            ]
        unknown = [n for n in v.needs if n not in SERVICES]
        if unknown:
            return [
                Variant(
                    v.name,
                    entry,
                    broken=f"{entry}: variant {v.name!r} needs unknown service(s) "
                    f"{', '.join(unknown)} (the suite provides: {', '.join(SERVICES)})",
                )
            ]
        out.append(
            Variant(
                v.name,
                entry,
                dict(v.storage),
                tuple(v.connectors),
                tuple(v.needs),
                dict(v.policy),
                dict(v.stack_params),
            )
        )
    return out or [Variant(entry, entry, broken=f"{entry}.benchmark_variants declared no variant")]


def installed(query_fields: QueryFields, only: Sequence[str] | None = None) -> list[Variant]:
    """Every installed stack's variants, in entry point order, restricted to `only` (variant
    or stack names; None: every one). Never raises: what cannot run is a variant with
    `broken` set."""
    out: list[Variant] = []
    for entry in plugins.stack_entries():
        try:
            factory = plugins.resolve_stack(entry.name)
        except SproutError as exc:
            found = [Variant(entry.name, entry.name, broken=str(exc))]
        else:
            found = _declared(entry.name, factory, query_fields)
        out += [v for v in found if only is None or v.name in only or v.stack in only]
    if only is not None:  # a name that selects nothing: a row that says so, not a silently smaller axis
        out += [
            Variant(name, name, broken=f"no installed stack or variant is named {name!r}")
            for name in only
            if not any(v.name == name or v.stack == name for v in out)
        ]
    seen: dict[str, str] = {}
    unique: list[Variant] = []
    for v in out:
        if v.name in seen:  # the first keeps the name; the second's rows say why they are n/a
            v = Variant(
                f"{v.stack}/{v.name}",
                v.stack,
                broken=f"{v.stack}: variant name {v.name!r} is taken by "
                f"{seen[v.name]!r}; rename it (variant names are the published page's parameter values)",
            )
        seen[v.name] = v.stack
        unique.append(v)
    return unique


def connectors(variants: Sequence[Variant]) -> list[str]:
    """The connector axis: every variant's connectors, in order of first appearance."""
    out: list[str] = []
    for v in variants:
        out += [c for c in v.connectors if c not in out]
    return out
