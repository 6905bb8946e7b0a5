"""Helpers around airspeed velocity: `make bench-asv` (`bench`), `make continuous`
(`continuous`) and the offline-capable published page (`offline`).

Harness-level: must not import loam. Each module runs with `python -m`.
"""
