"""Locate the chart library (plotly.js) shipped inside the installed ``plotly`` package.

The library is never copied into this repository: reports embed the installed file's text so
they work offline, and the live dashboard serves the same file from the installed package.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

CHART_LIBRARY = "plotly.js"
_PACKAGE_FILE = ("package_data", "plotly.min.js")


class ChartLibraryMissing(RuntimeError):
    """The ``plotly`` package (which ships plotly.min.js) is not installed."""


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """The minified plotly.js source from the installed ``plotly`` package."""
    try:
        path = resources.files("plotly").joinpath(*_PACKAGE_FILE)
        text = path.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ChartLibraryMissing(
            "the HTML report and the dashboard need plotly.js from the Python package 'plotly'; "
            f"install it with `pip install 'plotly>=5.18'` ({exc})"
        ) from None
    if "</script" in text.lower():  # would end an inline <script> early; plotly never ships this
        raise ChartLibraryMissing("plotly.min.js contains '</script' and cannot be inlined; reinstall plotly")
    return text


def plotly_version() -> str:
    """Version of the installed plotly Python package (its plotly.js version differs)."""
    from importlib.metadata import version

    return version("plotly")
