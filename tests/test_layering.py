"""Layering: sprout_harness never imports loam, loam never imports sprout_harness.

`sprout_loam/adapter.py` is the only bridge. The scan is on the AST, so imports inside
functions and `from x import y` forms are caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                out.append((node.lineno, node.args[0].value))
    return out


def offenders(package: str, forbidden: str) -> list[str]:
    bad = []
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    for f in files:
        for line, mod in imported_modules(f):
            if mod == forbidden or mod.startswith(forbidden + "."):
                bad.append(f"{f.relative_to(ROOT)}:{line} imports {mod}")
    return bad


def test_harness_does_not_import_loam():
    assert offenders("sprout_harness", "loam") == []


def test_loam_does_not_import_the_harness():
    assert offenders("loam", "sprout_harness") == []


def test_the_adapter_is_the_bridge_and_is_registered():
    mods = {m for _, m in imported_modules(ROOT / "sprout_loam" / "adapter.py")}
    assert any(m.startswith("loam") for m in mods) and any(m.startswith("sprout_harness") for m in mods)
    text = (ROOT / "pyproject.toml").read_text()
    assert '[project.entry-points."sprout_harness.stacks"]' in text
    assert 'loam = "sprout_loam.adapter:stack"' in text


def test_the_scan_catches_nested_and_dynamic_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from loam.node import api\n    import importlib\n    importlib.import_module('loam.x')\n")
    assert [m for _, m in imported_modules(f)] == ["loam.node", "importlib", "loam.x"]
