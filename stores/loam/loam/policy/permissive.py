"""Allows every read and write (the default)."""

from __future__ import annotations

from typing import ClassVar

from loam.policy.base import BasePolicy


class PermissivePolicy(BasePolicy):
    name: ClassVar[str] = "permissive"
    filters_reads = False
    checks_reads = False
    checks_writes = False
