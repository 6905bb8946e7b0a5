"""Workloads: the framework phases are built on, and the built-in phases.

Framework: `catalog` (phases and suites by name), `context` (what a phase gets), `knobs`,
`datasets`, `predicates`, `reference` (the evaluator expected answers come from), `suites`,
and the helpers of phase families: `loadphase` (mixes through the load driver), `queryrun`
(query scenarios), `realtime` (many connections, live queries, commit streams), `anchors`
(raw anchors and album payloads). Phases: `phases/` (one module or subpackage per family)
and `asv_phases` (the `asv-*` phases).
"""
