"""Configs that used to pass `validate` and then fail or eat the machine at `run`, and odd
inputs that were accepted silently: each is now one error line naming the field, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support.cli import ROOT, invoke, one_error_line

VALIDATE = ["validate", "leveldb-local"]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        # sizes that grew a run to gigabytes, or hung validate itself
        ("topology.ephemeral=1000000000000", "topology.ephemeral"),
        ("topology.ephemeral=1e12", "topology.ephemeral"),
        ("topology.durable=1000", "topology.durable"),
        ("datasets.albums=1e15", "datasets.albums"),
        ("datasets.albums=1000000000000000", "datasets.albums"),
        ("datasets.pets=9000000", "datasets"),  # within the per-kind bound, beyond the memory estimate
        ("phases.0.params.count=1e30", "phases[0].params.count"),
        # within the generic knob bound, beyond what the created entities would take of the memory
        ("phases.0.params.count=90000000", "phases[0].params: create@durable would hold about"),
        ("phases.0.params.count=1000000000000000000000000000000", "phases[0].params.count"),
        ("storage.pool_size=100000", "storage.pool_size"),
        ("runner.seed_batch_size=100000000", "runner.seed_batch_size"),
        ("runner.sync_timeout_s=1e300", "runner.sync_timeout_s"),
        # stack parameters run used to refuse with a traceback
        ("storage.params.indexes=albums", "storage.params.indexes"),
        ('storage.params.sync="yes"', "storage.params.sync"),
        ("storage.params.write_buffer_size=-1", "storage.params.write_buffer_size"),
        ("storage.params.colour=blue", "storage.params.colour"),
        ("policy.params.bogus=1", "policy.params"),
        ("stack.params.request_timeout=soon", "stack.params.request_timeout"),
        ("stack.name=os:system", "stack.name"),
        ("stack.name=sprout_loam.adapter:LoamClient", "stack.name"),
        # odd overrides
        ("phases.-1.target=durable", "--set phases.-1"),
        ("stack=null", "stack"),
    ],
)
def test_refused_with_one_line_naming_the_field(override: str, field: str) -> None:
    line = one_error_line(invoke(*VALIDATE, "--set", override))
    assert line.startswith(f"error: {field}"), line


def test_the_owner_policy_judges_its_own_parameters() -> None:
    line = one_error_line(invoke(*VALIDATE, "--set", "policy.id=owner", "--set", "policy.params.read=nobody"))
    assert line.startswith("error: policy.params") and "read must be 'all' or 'owner'" in line
    assert invoke(*VALIDATE, "--set", "policy.id=owner", "--set", "policy.params.read=owner").exit_code == 0


def test_a_malformed_dsn_is_refused_before_anything_connects() -> None:
    line = one_error_line(invoke("validate", "postgres-pool", "--set", "storage.dsn=postgresql://u@[bad"))
    assert line.startswith("error: storage.dsn: not a PostgreSQL connection string")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "the config is empty"),
        (b"# only a comment\n", "the config is empty"),
        (b"null\n", "the config is empty"),
        (b"name: x\nsuite: \xff\xfe\n", "not UTF-8"),
        ("suite: sprout\n".encode("utf-16"), "UTF-16"),
        (b"[" * 5000, "nested more than"),
        (b"a: &a [*a, *a]\n", "nested more than"),
    ],
)
def test_odd_files_are_one_line(tmp_path: Path, content: bytes, says: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    line = one_error_line(invoke("validate", str(path)))
    assert str(path) in line and says in line, line


def test_an_endless_file_is_refused_after_a_bounded_read() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sprout_harness", "validate", "/dev/zero"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "error: /dev/zero: larger than 1024 KiB; a config is a short YAML file (is this the right file?)"
    )


def test_a_huge_or_hostile_value_is_quoted_short_and_escaped() -> None:
    line = one_error_line(invoke(*VALIDATE, "--set", "suite=" + "x" * 100_000))
    assert len(line) <= 520 and line.startswith("error: suite:")
    line = one_error_line(invoke(*VALIDATE, "--set", "suite=\x1b[31mred"))
    assert "\x1b" not in line and "\\x1b[31mred" in line


def test_a_closed_pipe_ends_sprout_quietly() -> None:
    proc = subprocess.run(
        f"'{sys.executable}' -m sprout_harness list | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.stdout.startswith("stacks") and proc.stderr == ""


def test_valid_configs_still_pass() -> None:
    for name in ("leveldb-local", "leveldb-ephemeral", "realtime-1k", "postgres-pool"):
        assert invoke("validate", name).exit_code == 0, name


def test_the_ycsb_table_is_counted_once_against_the_memory() -> None:
    """Six YCSB phases share one loaded table: its estimate counts once (a table that fits
    passes though six copies would not), and one that does not fit names the first phase."""
    from sprout_harness.config.validate import memory_bytes

    fits = int(memory_bytes() * 0.5 / 2048 / 2)  # a quarter of the machine, six times over a half
    assert (
        invoke(
            "validate", "ycsb-leveldb", "--set", f"workload.record_count={fits}", "--set", "workload.field_length=1"
        ).exit_code
        == 0
    )
    line = one_error_line(
        invoke(
            "validate", "ycsb-leveldb", "--set", f"workload.record_count={fits * 4}", "--set", "workload.field_length=1"
        )
    )
    assert line.startswith("error: phases[0].params: ycsb-a@durable would hold about"), line
