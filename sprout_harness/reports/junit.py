"""JUnit XML of a run, the test-report format GitLab, GitHub test reporters and Jenkins read.

One test suite per phase: each check a test case (failed check: a failure with its detail),
a phase that errored or was cancelled one more test case with an error, an unsupported phase
one skipped test case. The config's thresholds form a suite of their own, one test case per
rule. Written with junitparser, never by hand.
"""

from __future__ import annotations

from pathlib import Path

from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite

from sprout_harness.metrics.results import PhaseResult, RunResult


def _phase_suite(label: str, phase: PhaseResult) -> TestSuite:
    suite = TestSuite(f"{label}/{phase.name}")
    classname = f"{label}.{phase.name}"
    wall_s = phase.wall_ns / 1e9 if phase.wall_ns else 0.0
    for check in phase.checks:
        case = TestCase(check.name, classname, wall_s / max(len(phase.checks), 1))
        if not check.ok:
            case.result = [Failure(check.detail or "check failed", "check")]
        suite.add_testcase(case)
    if phase.status == "unsupported":
        case = TestCase("phase", classname)
        case.result = [Skipped(phase.reason or "unsupported by the stack")]
        suite.add_testcase(case)
    elif phase.status in ("error", "cancelled"):
        case = TestCase("phase", classname, wall_s)
        case.result = [Error(phase.reason or phase.status, phase.status)]
        suite.add_testcase(case)
    elif not phase.checks:
        suite.add_testcase(TestCase("phase", classname, wall_s))  # ran, nothing to check
    return suite


def build(run: RunResult) -> JUnitXml:
    """The run as JUnit test suites (see the module docstring)."""
    label = run.metadata.label
    xml = JUnitXml(f"sprout {label}")
    for phase in run.phases:
        xml.add_testsuite(_phase_suite(label, phase))
    if run.thresholds:
        suite = TestSuite(f"{label}/thresholds")
        for t in run.thresholds:
            case = TestCase(f"{t.pattern} {t.stat} {t.expression}", f"{label}.thresholds")
            if not t.ok:
                case.result = [Failure(t.detail or "threshold crossed", "threshold")]
            suite.add_testcase(case)
        xml.add_testsuite(suite)
    return xml


def write(run: RunResult, path: str | Path) -> Path:
    """Write the JUnit XML of ``run`` to ``path`` (parents created); returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    build(run).write(str(p), pretty=True)
    return p
