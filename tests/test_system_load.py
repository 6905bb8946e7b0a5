"""`OtherCpu`: the CPU other processes take while a run runs, measured from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sprout_harness.metrics.system import OtherCpu

SPIN = "import time\nend = time.monotonic() + 1.0\nwhile time.monotonic() < end:\n    pass\n"


def test_a_process_spinning_beside_it_shows_up() -> None:
    """One process busy for a second on this 2-core machine is about half of its CPU; this
    process's own work is not counted (it sleeps here). Other jobs may add to it."""
    other = OtherCpu()
    spinner = subprocess.Popen([sys.executable, "-c", SPIN])
    time.sleep(1.0)
    share = other.share()  # before the spinner is waited for: it is not this process's child time yet
    spinner.wait()
    assert share is not None and 0.25 <= share <= 1.0, share


def test_its_own_work_is_not_counted_as_other() -> None:
    """What this process burns is subtracted: spinning here for half a second (one core of
    this 2-core machine, half its CPU over that time) keeps the share at least 0.4 below the
    machine's whole busy share over the same interval, whatever else runs."""
    cores = os.cpu_count() or 1
    other = OtherCpu()
    busy0, t0 = _busy(), time.monotonic()
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        pass
    share = other.share()
    total = (_busy() - busy0) / ((time.monotonic() - t0) * cores)
    assert share is not None and share <= total - 0.5 / (0.5 * cores) * 0.8, (share, total)


def _busy() -> float:
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
