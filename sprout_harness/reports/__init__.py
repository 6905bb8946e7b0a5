"""Presentation layer: console tables, the JSON report, github-action-benchmark output, run comparison.

Reads ``sprout_harness.metrics`` results; never measures anything itself.
"""

from sprout_harness.reports import compare, console, gab, json_report

__all__ = ["compare", "console", "gab", "json_report"]
