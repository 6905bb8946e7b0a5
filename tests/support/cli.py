"""Running the `sprout` CLI in tests: in process through click's CliRunner, and the one
error line every refused input must produce."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from sprout_harness.cli import cli

ROOT = Path(__file__).resolve().parents[2]
SMALL = [
    "datasets.albums=300",
    "datasets.pets=300",
    "phases.create.params.count=150",
    "phases.create.params.batch_size=50",
    "phases.fetch.params.get_ops=100",
    "phases.fetch.params.fetch_ops=40",
    "phases.live-limit.params.ops=20",
    "phases.live-limit.params.subscribers=3",
    "phases.writers.params.ops=150",
    "phases.churn.params.subscribers=4",
    "phases.churn.params.cycles=2",
]


def sets(items: list[str]) -> list[str]:
    return [a for s in items for a in ("--set", s)]


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def one_error_line(result) -> str:
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert "Traceback" not in result.stderr + result.stdout
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]
