"""The Stack plugin protocol: the factories the topology runner calls to build a topology.

A plugin exposes a `StackFactory` (a class or callable taking `StackSettings`), registered
under the entry point group `sprout_harness.stacks` or named by `package.module:attr` in
the config. The runner then calls, in order:

1. `await stack.start()` — shared resources (a database server, a temp dir, ...);
2. `stack.context(role, index)` — the context (identity) the node's client acts as;
3. `await stack.durable(index, context)` — the durable-node factory, once per durable node;
4. `await stack.connector(link, durable_client)` — the connector factory, once per link,
   so links may differ (in-process for one ephemeral, WebSocket for another);
5. `await stack.ephemeral(index, connector, context)` — the ephemeral-node factory, once
   per ephemeral node (N >= 0);
6. at teardown, always (success, failure, Ctrl+C): `close()` on every client and connector
   that has one, then `await stack.close()`, then the settings' cleanup callbacks.

Factories may return ready nodes or clients that build themselves lazily. Optional hooks
(looked up with getattr, so a stack implements only what it can):

- `set_delay_sink(sink)`: the stack reports connector delays per message type to `sink`;
- `storage_details() -> dict`: engine name, parameters, sizes (secrets masked) for reports;
- `async sync(ephemeral_client, durable_client)`: a stack-specific sync barrier (the runner
  otherwise checks sync itself by writing a marker and reading it back on the ephemeral);
- the factory's `validate(settings)` classmethod: raise ConfigError on bad stack params
  (called by `sprout validate`, the dry run).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

from sprout_harness.contracts.client import Capabilities, Client

DelaySink = Callable[[str, int], None]
"""`sink(message_type, delay_ns)`: one connector delay sample."""


@dataclass(frozen=True)
class Link:
    """One connection from an ephemeral node to a durable node, over a named connector."""

    ephemeral: int
    durable: int
    connector: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class StackSettings:
    """Everything the config says about the stack, plus a scratch area the runner cleans up.

    `storage`: {"engine": name, **params}; `policy`: {"id": name, **params};
    `topology`: {"durable": D, "ephemeral": N, "links": [...]}.
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    storage: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    topology: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    _cleanups: list[Callable[[], Any]] = field(default_factory=list, repr=False)
    _workdir: Path | None = field(default=None, repr=False)

    def add_cleanup(self, fn: Callable[[], Any]) -> None:
        """Run `fn` at teardown (last registered runs first), whatever happened."""
        self._cleanups.append(fn)

    def workdir(self) -> Path:
        """A private temp dir, removed at teardown."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="sprout-run-"))
            path = self._workdir
            self.add_cleanup(lambda: shutil.rmtree(path, ignore_errors=True))
        return self._workdir

    def run_cleanups(self) -> list[BaseException]:
        errors: list[BaseException] = []
        while self._cleanups:
            fn = self._cleanups.pop()
            try:
                fn()
            except BaseException as exc:  # teardown must go on
                errors.append(exc)
        return errors


@runtime_checkable
class Stack(Protocol):
    """A stack under test, built from `StackSettings` by its factory."""

    name: str

    def capabilities(self) -> Capabilities: ...

    async def start(self) -> None: ...

    def context(self, role: str, index: int) -> Any: ...

    async def durable(self, index: int, context: Any) -> Client: ...

    async def connector(self, link: Link, durable: Client) -> Any: ...

    async def ephemeral(self, index: int, connector: Any, context: Any) -> Client: ...

    async def close(self) -> None: ...

    def describe(self) -> dict[str, Any]:
        """Stack, storage, policy and connector description for reports (secrets masked)."""
        ...


StackFactory = Callable[[StackSettings], Stack]
