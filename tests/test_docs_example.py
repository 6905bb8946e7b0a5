"""Runs the code of docs/example-live.md (in a fresh interpreter) and checks its output."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "example-live.md"


def test_example_live_runs() -> None:
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert code, "docs/example-live.md has no python block"
    out = subprocess.run([sys.executable, "-c", code.group(1)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "window: ['task 5', 'task 4', 'task 3']"
    assert lines[1] == "removed: True refilled: ['task 2'] gap_filled: 1"
    assert lines[2] == "window: ['task 4', 'task 3', 'task 2']"
    assert re.fullmatch(r"commit -> Alice lag: \d+ us", lines[3])
    assert lines[4] == "same as a fresh fetch on the durable node: True"
    assert lines[5] == "notify delays recorded: 2"
