"""`sprout asv init [DIR]`: asv tracking of the harness's benchmark families in a store's own repository.

Writes into DIR (a git repository):
- `asv.conf.json`: the project is DIR (`repo: "."`), its current branch, virtualenv
  environments, a `pip wheel --no-deps --no-build-isolation` build (setuptools and wheel in
  the matrix); the matrix pins the installed versions of the harness's own requirements, and
  the install command installs `sprout-harness==<installed version>` beside each commit's
  wheel, so every commit is measured by the same harness (figures stay comparable);
- `benchmarks/`: modules that re-export the families of `sprout_harness.asvsuite`;
- `sprout-asv.json`: the stacks that form the suite's `stack` axis (`{"stacks": [...]}`);
- a "## Benchmarks (asv)" section appended to README.md (created if missing).

sprout-harness is not on a package index: `--harness-wheel` copies a wheel of it into
`.asv/wheels/` (or `--find-links DIR` names a directory of wheels) and the install command
passes that directory to pip with `--find-links`. (asv 0.6 installs the matrix's requirements
with the process environment only: a matrix `env` entry such as PIP_FIND_LINKS does not
reach those pip calls, and its requirement parser cannot carry a path; the install command
is a plain pip call that can.)
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from sprout_harness import plugins
from sprout_harness.contracts.errors import ConfigError

HARNESS = "sprout-harness"
GROUP = plugins.GROUP
CONF_NAME = "asv.conf.json"
SUITE_CONFIG = "sprout-asv.json"
WHEELS = ".asv/wheels"
README_HEADING = "## Benchmarks (asv)"
# benchmark module -> the asvsuite family it re-exports (sprout's own names)
FAMILIES = {
    "bench_create": "create",
    "bench_fetch": "fetch",
    "bench_live_limit": "live_limit",
    "bench_writers": "writers",
    "bench_churn": "churn",
    "bench_fanout": "fanout",
    "bench_realtime": "realtime",
}


@dataclass
class Scaffold:
    """What `init` wrote."""

    directory: Path
    stacks: list[str]
    harness_version: str
    find_links: str | None
    files: list[Path] = field(default_factory=list)


def _git(directory: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyprojects(directory: Path) -> list[dict[str, Any]]:
    """DIR's pyproject.toml and those one or two levels down (a monorepo's distributions)."""
    out = []
    for p in [
        directory / "pyproject.toml",
        *sorted(directory.glob("*/pyproject.toml")),
        *sorted(directory.glob("*/*/pyproject.toml")),
    ]:
        if any(part.startswith(".") for part in p.relative_to(directory).parts):
            continue
        try:
            out.append(tomllib.loads(p.read_text()))
        except (OSError, ValueError):
            continue
    return out


def project_stacks(directory: Path) -> list[str]:
    """The stack names DIR's distributions register under the entry point group."""
    names: list[str] = []
    for data in _pyprojects(directory):
        eps = data.get("project", {}).get("entry-points", {}).get(GROUP, {})
        names += [n for n in eps if n not in names]
    return names


def _project_name(directory: Path) -> tuple[str, list[str]]:
    """(asv's project name, the distributions to uninstall between commits)."""
    dists = [str(d["project"]["name"]) for d in _pyprojects(directory) if d.get("project", {}).get("name")]
    root = directory / "pyproject.toml"
    name = dists[0] if root.exists() and dists else directory.name
    return name, dists or [directory.name]


def _requirement_name(spec: str) -> str | None:
    """The distribution name a requirement string starts with (`numpy>=1.26` -> `numpy`)."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    return m.group(1) if m else None


def _requirement_names(dist: str) -> list[str]:
    """The unconditional requirements of an installed distribution (extras left out)."""
    out = []
    for req in metadata.requires(dist) or []:
        spec, _, marker = req.partition(";")
        name = _requirement_name(spec)
        if name and "extra" not in marker:
            out.append(name)
    return out


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def matrix_requirements(directory: Path) -> dict[str, str]:
    """setuptools, wheel and the harness's own requirements, at their installed versions
    (unpinned when not installed here); the build backends DIR's pyproject.toml names too."""
    names = ["setuptools", "wheel"]
    for data in _pyprojects(directory)[:1]:
        for req in data.get("build-system", {}).get("requires", []):
            name = _requirement_name(req)
            if name and _norm(name) not in map(_norm, names):
                names.append(name)
    names += [n for n in _requirement_names(HARNESS) if _norm(n) not in map(_norm, names)]
    return {n: _version(n) or "" for n in names}


def _readme_section(stacks: Sequence[str], harness: str) -> str:
    return f"""
{README_HEADING}

The benchmark families of the sprout harness ({HARNESS} {harness}, pinned in `asv.conf.json`)
run over this repository's commits with [asv](https://asv.readthedocs.io/). The stacks measured
are listed in `{SUITE_CONFIG}` ({", ".join(stacks)}); sizes follow `SPROUT_BENCH_SCALE`
(`tiny`, `quick`, `full`: the default). Run asv from an environment that has asv, virtualenv
and {HARNESS} {harness} (`pip install asv virtualenv <the {HARNESS} wheel>`):

```sh
asv machine --yes                        # once per machine
asv run ALL                              # or A^..B (A..B leaves A out), HEAD^!, NEW
asv publish && asv preview               # html/: a graph per benchmark, a line per stack
asv continuous HEAD^ HEAD --factor 1.2   # exits 1 when a benchmark got slower
```
"""


def init(
    directory: str | Path = ".",
    *,
    stacks: Sequence[str] = (),
    harness_wheel: str | Path | None = None,
    find_links: str | Path | None = None,
    force: bool = False,
) -> Scaffold:
    """Scaffold asv tracking in `directory`. Bad input raises ConfigError (one line)."""
    d = Path(directory).resolve()
    if not d.is_dir():
        raise ConfigError(f"{directory}: no such directory")
    top = _git(d, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != d:
        raise ConfigError(
            f"{d} is not the top of a git repository (asv tracks its commits): run `git init` there first"
        )
    branch = _git(d, "symbolic-ref", "--quiet", "--short", "HEAD")
    if not branch:
        raise ConfigError(f"{d}: HEAD is detached; check out the branch asv should follow")
    conf_path = d / CONF_NAME
    if conf_path.exists() and not force:
        raise ConfigError(f"{conf_path} exists: pass --force to overwrite it")
    harness = _version(HARNESS)
    if harness is None:
        raise ConfigError(f"{HARNESS} is not installed in this environment (pip install {HARNESS})")
    if harness_wheel is not None and find_links is not None:
        raise ConfigError("--harness-wheel and --find-links exclude each other: pass one")

    installed = [e.name for e in plugins.stack_entries()]
    own = project_stacks(d)
    if stacks:
        known = list(dict.fromkeys([*installed, *own]))
        unknown = [s for s in stacks if s not in known]
        if unknown:
            raise ConfigError(
                f"unknown stack {', '.join(map(repr, unknown))}: installed or declared by {d.name} are "
                f"{', '.join(known) or 'none'} (entry point group {GROUP})"
            )
        chosen = list(dict.fromkeys(stacks))
    else:
        chosen = [s for s in own if s in installed]
        if not chosen:
            raise ConfigError(
                f"{d.name} provides no installed stack (entry point group {GROUP}): pip install -e it, "
                f"or pass --stack NAME (installed: {', '.join(installed) or 'none'})"
            )

    links: str | None = None
    files: list[Path] = []
    if harness_wheel is not None:
        wheel = Path(harness_wheel).resolve()
        if not wheel.is_file() or wheel.suffix != ".whl":
            raise ConfigError(f"--harness-wheel {harness_wheel}: not a wheel file")
        if not wheel.name.startswith(f"sprout_harness-{harness}-"):
            raise ConfigError(f"--harness-wheel {wheel.name}: not a wheel of {HARNESS} {harness} (the installed one)")
        target = d / WHEELS
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(wheel, target / wheel.name)
        files.append(target / wheel.name)
        links = str(target)
    elif find_links is not None:
        fl = Path(find_links).resolve()
        if not fl.is_dir():
            raise ConfigError(f"--find-links {find_links}: not a directory")
        links = str(fl)

    project, dists = _project_name(d)
    pip_links = f" --find-links {shlex.quote(links)}" if links else ""
    conf: dict[str, Any] = {
        "version": 1,
        "project": project,
        "repo": ".",
        "branches": [branch],
        "dvcs": "git",
        "environment_type": "virtualenv",
        "pythons": [f"{sys.version_info.major}.{sys.version_info.minor}"],
        "build_command": ["python -m pip wheel --no-deps --no-build-isolation -w {build_cache_dir} {build_dir}"],
        "install_command": [f"in-dir={{env_dir}} python -m pip install{pip_links} {HARNESS}=={harness} {{wheel_file}}"],
        "uninstall_command": [f"return-code=any python -m pip uninstall -y {' '.join(dists)}"],
        "matrix": {"req": matrix_requirements(d), "env_nobuild": {"SPROUT_HARNESS_VERSION": harness}},
        "benchmark_dir": "benchmarks",
        "env_dir": ".asv/env",
        "results_dir": ".asv/results",
        "html_dir": "html",
        "build_cache_size": 8,
        "default_benchmark_timeout": 600,
    }
    conf_path.write_text(json.dumps(conf, indent=4) + "\n")
    files.append(conf_path)

    suite_conf = d / SUITE_CONFIG
    suite_conf.write_text(json.dumps({"stacks": chosen}, indent=4) + "\n")
    files.append(suite_conf)

    bench = d / "benchmarks"
    bench.mkdir(exist_ok=True)
    init_py = bench / "__init__.py"
    init_py.write_text(
        f'"""asv benchmarks of {project}: the families of {HARNESS} (sprout_harness.asvsuite).\n\n'
        f"The stacks measured are listed in ../{SUITE_CONFIG} (SPROUT_ASV_STACKS overrides it).\n"
        '"""\n\n'
        "from pathlib import Path\n\n"
        "from sprout_harness.asvsuite import configure\n\n"
        f'configure(Path(__file__).resolve().parent.parent / "{SUITE_CONFIG}")\n'
    )
    files.append(init_py)
    for module, family in FAMILIES.items():
        p = bench / f"{module}.py"
        p.write_text(
            f'"""The `{family}` family of sprout_harness.asvsuite."""\n\n'
            f"from sprout_harness.asvsuite.{family} import *  # noqa: F403\n"
        )
        files.append(p)

    readme = d / "README.md"
    text = readme.read_text() if readme.exists() else f"# {project}\n"
    if README_HEADING not in text:
        readme.write_text(text.rstrip("\n") + "\n" + _readme_section(chosen, harness))
        files.append(readme)
    return Scaffold(d, chosen, harness, links, files)
