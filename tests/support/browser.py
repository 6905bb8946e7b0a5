"""Headless Chromium for browser tests: a session fixture that finds (or installs) it, one-shot
``--dump-dom`` / ``--screenshot`` runs, and a minimal DevTools-protocol page for clicking.

Use in a test module with ``from support.browser import chromium`` (pytest then sees the fixture).
Chromium missing and not installable makes the test fail with what to install, never skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.system import require_tool

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_NAMES = ("chromium", "chromium-browser", "google-chrome")


@dataclass
class Chromium:
    """One Chromium binary; every launch gets a fresh ``--user-data-dir``."""

    path: str
    artifacts: Path | None = None  # where screenshots are also copied (SPROUT_SCREENSHOT_DIR)

    def _argv(self, profile: str, url: str, extra: list[str]) -> list[str]:
        return [self.path, *FLAGS, f"--user-data-dir={profile}", *extra, url]

    async def capture(
        self, url: str, *, screenshot: Path | None = None, budget_ms: int = 5000, window: str = "1300,1800"
    ) -> str:
        """The DOM after ``budget_ms`` of virtual time (and a screenshot when asked); async so a run
        on the caller's event loop goes on meanwhile."""
        dom = await self._once(url, ["--dump-dom", f"--virtual-time-budget={budget_ms}", f"--window-size={window}"])
        if screenshot is not None:
            await self._once(
                url,
                [
                    f"--screenshot={screenshot}",
                    f"--virtual-time-budget={budget_ms}",
                    f"--window-size={window}",
                    "--hide-scrollbars",
                ],
            )
            assert screenshot.exists() and screenshot.stat().st_size > 10_000, f"no screenshot of {url}"
            if self.artifacts is not None:
                self.artifacts.mkdir(parents=True, exist_ok=True)
                shutil.copy(screenshot, self.artifacts / screenshot.name)
        return dom

    async def _once(self, url: str, extra: list[str]) -> str:
        with tempfile.TemporaryDirectory(prefix="sprout-chromium-", ignore_cleanup_errors=True) as profile:
            proc = await asyncio.create_subprocess_exec(
                *self._argv(profile, url, extra), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            try:
                out, err = await asyncio.wait_for(proc.communicate(), 180)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise AssertionError(f"chromium did not finish loading {url} within 180 s")
        assert proc.returncode == 0, f"chromium failed on {url}: {err.decode(errors='replace')[-2000:]}"
        return out.decode("utf-8", errors="replace")

    def page(self, url: str) -> DevToolsPage:
        return DevToolsPage(self, url)


class DevToolsPage:
    """A live headless page driven over the DevTools protocol (``async with chromium.page(url) as p``)."""

    def __init__(self, browser: Chromium, url: str) -> None:
        self.browser, self.url = browser, url
        self._profile = tempfile.TemporaryDirectory(prefix="sprout-chromium-", ignore_cleanup_errors=True)
        self._proc: asyncio.subprocess.Process | None = None
        self._ws: Any = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> DevToolsPage:
        from websockets.asyncio.client import connect

        argv = self.browser._argv(
            self._profile.name, self.url, ["--remote-debugging-port=0", "--window-size=1300,1000"]
        )
        self._proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, start_new_session=True
        )
        port_file = Path(self._profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self._proc.returncode is not None:
                raise AssertionError("chromium did not open its DevTools port")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        loop = asyncio.get_running_loop()
        while True:
            targets = await loop.run_in_executor(
                None, lambda: json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
            )
            pages = [t for t in targets if t.get("type") == "page" and "webSocketDebuggerUrl" in t]
            if pages:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"chromium shows no page target: {targets}")
            await asyncio.sleep(0.05)
        self._ws = await connect(pages[0]["webSocketDebuggerUrl"], max_size=None)
        return self

    async def evaluate(self, expression: str) -> Any:
        """Run JavaScript in the page; its (JSON-able) value."""
        msg_id = next(self._ids)
        await self._ws.send(
            json.dumps(
                {
                    "id": msg_id,
                    "method": "Runtime.evaluate",
                    "params": {"expression": expression, "returnByValue": True},
                }
            )
        )
        while True:
            reply = json.loads(await asyncio.wait_for(self._ws.recv(), 30))
            if reply.get("id") == msg_id:
                break
        if "exceptionDetails" in reply.get("result", {}):
            raise AssertionError(f"page script failed: {reply['result']['exceptionDetails']}")
        return reply["result"]["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 60.0) -> Any:
        """Re-evaluate ``expression`` until truthy (a deadline, not a sleep); its value."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            try:
                value = await self.evaluate(expression)
            except AssertionError as exc:  # the page is still loading (elements not there yet)
                value = str(exc)[:200]
                await asyncio.sleep(0.1)
                continue
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"page condition {expression!r} not met within {timeout} s (last {value!r})")

    async def __aexit__(self, *exc: Any) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # the browser and its helpers: its own group
                os.killpg(self._proc.pid, signal.SIGKILL)
            await self._proc.wait()
        self._profile.cleanup()


@pytest.fixture(scope="session")
def chromium() -> Chromium:
    """Headless Chromium (Debian package ``chromium``), installed with apt-get when running as root."""
    path = require_tool(_NAMES, "chromium", "browser tests")
    artifacts = os.environ.get("SPROUT_SCREENSHOT_DIR")
    return Chromium(path, Path(artifacts) if artifacts else None)
