"""Report files written atomically: a crash or Ctrl+C never leaves half a report behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    # /proc says it without touching the process-wide mask (os.umask must set it to read it,
    # which races with any other thread creating a file meanwhile)
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` through a temp file in the same directory and a rename, with
    the mode a plain `open(path, "w")` would give (mkstemp's 0600 would hide a report meant
    to be shared); the parent directories are created. Returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
