"""Helpers shared by the tests: stacks, CLI invocation, realistic runs.

Test modules import from here (`from support.stacks import DictStack`), never from each
other; pytest puts `tests/` on the import path.
"""
