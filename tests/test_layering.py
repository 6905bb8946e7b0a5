"""Layering: sprout_harness never imports loam, loam never imports sprout_harness; inside
the harness the packages import each other without a cycle (docs/architecture.md, "Layers").

`sprout_loam/adapter.py` is the only bridge. The scan is on the AST, so imports inside
functions and `from x import y` forms are caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Where each distribution's import packages live in the monorepo (the harness at the root).
SOURCE_ROOTS = (ROOT / "stores" / "loam", ROOT / "stacks" / "loam", ROOT / "stacks" / "pgnotify", ROOT)
LOAM = ROOT / "stores" / "loam" / "loam"
ADAPTER = ROOT / "stacks" / "loam" / "sprout_loam"


def source_root(path: Path) -> Path:
    """The source root a file's import name is relative to."""
    return next(r for r in SOURCE_ROOTS if path.is_relative_to(r))


def module_file_exists(module: str) -> bool:
    rel = module.replace(".", "/")
    return any((r / rel).with_suffix(".py").exists() or (r / rel).is_dir() for r in SOURCE_ROOTS)


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


def offenders(package: str | Path, forbidden: str) -> list[str]:
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
    assert offenders(LOAM, "sprout_harness") == []


def test_the_adapter_is_the_bridge_and_is_registered():
    mods = {m for _, m in imported_modules(ADAPTER / "adapter.py")}
    assert any(m.startswith("loam") for m in mods) and any(m.startswith("sprout_harness") for m in mods)
    text = (ADAPTER.parent / "pyproject.toml").read_text()
    assert '[project.entry-points."sprout_harness.stacks"]' in text
    assert 'loam = "sprout_loam.adapter:stack"' in text


def test_the_scan_catches_nested_and_dynamic_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text(
        "def f():\n    from loam.node import api\n    import importlib\n    importlib.import_module('loam.x')\n"
    )
    assert [m for _, m in imported_modules(f)] == ["loam.node", "importlib", "loam.x"]


# --- inside the harness: packages import each other in one direction -------------------------

HARNESS = ROOT / "sprout_harness"

# Function-local imports of harness modules that stay, each with why. Any other one fails
# `test_no_function_local_harness_imports`: a function-local import that only hides a
# cycle keeps the cycle (the graph test sees through it) and hides the order from readers.
LOCAL_IMPORTS_ALLOWED = {
    # every command imports what it needs: `sprout --help` and `sprout list` start in about
    # 0.2 s instead of 1 s (rich, numpy, scipy, jinja2, prometheus_client)
    ("sprout_harness/cli.py", "*"),
    # reports/__init__ imports compare and with it scipy (~0.4 s): only a run that writes
    # report files pays for it (runs in child processes start often)
    ("sprout_harness/topology/runner.py", "sprout_harness.reports"),
}


def _module_name(path: Path) -> str:
    if not path.is_relative_to(ROOT):
        return path.stem
    rel = path.relative_to(source_root(path)).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def project_imports(path: Path, top: str) -> list[tuple[int, str, bool]]:
    """(line, module, inside a function) for every import of a module of package `top` in
    `path`: `import x`, `from x import y` (y a module when it is one), relative forms and
    `importlib.import_module("x")` with a literal name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    local: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            local |= {id(n) for n in ast.walk(fn) if n is not fn}
    out = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for a in node.names:
                sub = f"{base}.{a.name}"
                names.append(sub if module_file_exists(sub) else base)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
        out += [(node.lineno, n, id(node) in local) for n in names if n == top or n.startswith(top + ".")]
    return out


def harness_imports(path: Path) -> list[tuple[int, str, bool]]:
    """`project_imports` of the harness's modules."""
    return project_imports(path, "sprout_harness")


def _unit(module: str) -> str:
    """The harness package (or top-level module) a module belongs to: `config`, `plugins`, ..."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "sprout_harness"


def harness_graph() -> dict[tuple[str, str], list[str]]:
    """Edges between the harness's packages and top-level modules, with the import sites."""
    edges: dict[tuple[str, str], list[str]] = {}
    for f in sorted(HARNESS.rglob("*.py")):
        src = _unit(_module_name(f))
        for line, mod, _ in harness_imports(f):
            dst = _unit(mod)
            if dst not in (src, "sprout_harness"):
                edges.setdefault((src, dst), []).append(f"{f.relative_to(ROOT)}:{line} imports {mod}")
    return edges


def find_cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    graph: dict[str, list[str]] = {}
    for a, b in sorted(edges):
        graph.setdefault(a, []).append(b)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in graph.get(n, []):
            if state.get(m) == 1:
                return [*path[path.index(m) :], m]
            if m not in state and (found := visit(m)):
                return found
        path.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_harness_packages_import_each_other_without_cycles():
    edges = harness_graph()
    assert edges, "no imports between harness packages found: the scan is broken"
    cycle = find_cycle(set(edges))
    sites = [s for a, b in zip(cycle, cycle[1:]) for s in edges[(a, b)][:2]] if cycle else []
    assert cycle is None, f"import cycle {' -> '.join(cycle or [])}:\n" + "\n".join(sites)


def test_the_cycle_finder_finds_a_cycle_through_function_local_imports(tmp_path):
    assert find_cycle({("config", "contracts"), ("workloads", "config")}) is None
    assert find_cycle({("a", "b"), ("b", "c"), ("c", "a")}) == ["a", "b", "c", "a"]
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from sprout_harness.topology import runner\n")
    assert harness_imports(f) == [(2, "sprout_harness.topology.runner", True)]


def _allowed(rel: str, mod: str) -> bool:
    return any(rel == f and (m == "*" or mod == m or mod.startswith(m + ".")) for f, m in LOCAL_IMPORTS_ALLOWED)


def test_no_function_local_harness_imports():
    """In the harness and in the stacks' adapters (the benchmarks import the project inside
    functions on purpose: see benchmarks/_common.py)."""
    found = []
    for f in sorted(p for d in ("sprout_harness", "stacks") for p in (ROOT / d).rglob("*.py")):
        rel = str(f.relative_to(ROOT))
        for line, mod, inside in harness_imports(f):
            if inside and not _allowed(rel, mod):
                found.append(f"{rel}:{line} imports {mod} inside a function")
    assert found == [], "\n".join(found)


# --- inside loam: an acyclic package graph, a sans-I/O protocol ------------------------------

# Function-local imports of loam modules that stay, each with why (see LOCAL_IMPORTS_ALLOWED).
LOAM_LOCAL_IMPORTS_ALLOWED = {
    # `python -m loam --help` and a usage error answer without importing the server (storage
    # engines, websockets); `serve` imports what it runs when it runs
    ("stores/loam/loam/__main__.py", "loam.cli_serve"),
    ("stores/loam/loam/cli_serve.py", "*"),
}


def _loam_unit(module: str) -> str:
    """The loam subpackage or top-level module a module belongs to: `protocol`, `model`, ..."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "loam"


def loam_graph() -> dict[tuple[str, str], list[str]]:
    """Edges between loam's subpackages and top-level modules (imports inside functions
    included), with the import sites."""
    edges: dict[tuple[str, str], list[str]] = {}
    for f in sorted(LOAM.rglob("*.py")):
        src = _loam_unit(_module_name(f))
        for line, mod, _ in project_imports(f, "loam"):
            dst = _loam_unit(mod)
            if dst not in (src, "loam"):
                edges.setdefault((src, dst), []).append(f"{f.relative_to(ROOT)}:{line} imports {mod}")
    return edges


def test_loam_packages_import_each_other_without_cycles():
    edges = loam_graph()
    assert ("node", "transport") in edges and ("transport", "protocol") in edges, "the scan is broken"
    cycle = find_cycle(set(edges))
    sites = [s for a, b in zip(cycle, cycle[1:]) for s in edges[(a, b)][:2]] if cycle else []
    assert cycle is None, f"import cycle in loam {' -> '.join(cycle or [])}:\n" + "\n".join(sites)


def test_the_loam_graph_sees_a_cycle_through_the_node_api(tmp_path):
    """A value type of `loam.node` imported by the protocol is a cycle (node -> protocol -> node)."""
    edges = set(loam_graph()) | {("protocol", "node")}
    assert find_cycle(edges) is not None


def _loam_allowed(rel: str, mod: str) -> bool:
    return any(rel == f and (m == "*" or mod == m or mod.startswith(m + ".")) for f, m in LOAM_LOCAL_IMPORTS_ALLOWED)


def test_no_function_local_loam_imports():
    found = []
    for f in sorted(LOAM.rglob("*.py")):
        rel = str(f.relative_to(ROOT))
        for line, mod, inside in project_imports(f, "loam"):
            if inside and not _loam_allowed(rel, mod):
                found.append(f"{rel}:{line} imports {mod} inside a function")
    assert found == [], "\n".join(found)


# What a sans-I/O module may not import (see the `websockets` library: its protocol and
# frames modules import no event loop and no socket; the transports sit on top).
IO_MODULES = ("asyncio", "socket", "selectors", "websockets", "threading")


def io_imports(path: Path) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line} imports {mod}"
        for line, mod in imported_modules(path)
        if any(mod == io or mod.startswith(io + ".") for io in IO_MODULES)
    ]


def test_the_protocol_is_sans_io():
    """Nothing under loam/protocol (nor loam/transport/wsframes.py) imports an event loop,
    sockets or a WebSocket library: futures, timers and channels belong to loam/transport."""
    files = sorted((LOAM / "protocol").rglob("*.py")) + [LOAM / "transport" / "wsframes.py"]
    assert len(files) > 2
    assert [site for f in files for site in io_imports(f)] == []


def test_the_sans_io_check_catches_a_function_local_asyncio(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    import asyncio.events\n    from socket import socket\n")
    assert [mod for _, mod in imported_modules(f)] == ["asyncio.events", "socket"]


def test_the_harness_never_names_a_stack() -> None:
    """Not even in a comment, a string or a template: what the harness says about stacks holds
    for every stack (the stacks' names come from their entry points)."""
    named = [
        f"{f.relative_to(ROOT)}:{n}"
        for f in sorted(
            p for p in HARNESS.rglob("*") if p.is_file() and p.suffix in (".py", ".html", ".j2", ".css", ".js")
        )
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
        if any(stack in line.lower() for stack in ("loam", "pgnotify", "memstack"))
    ]
    assert named == []


def test_each_package_reports_its_distribution_version() -> None:
    """Reports name the store's and the stacks' versions: they are the distributions'."""
    from importlib.metadata import version

    import loam
    import sprout_pgnotify

    assert loam.__version__ == version("loam")
    assert sprout_pgnotify.__version__ == version("sprout-pgnotify")
