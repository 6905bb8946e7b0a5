"""Helpers around airspeed velocity: `make bench-asv` (`bench`), `make continuous`
(`continuous`) and the offline-capable published page (`offline`).

Stack-neutral. Each module runs with `python -m`.
"""
