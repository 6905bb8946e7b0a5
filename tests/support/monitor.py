"""Helpers shared by the monitor, HTML report and browser tests: tiny real loam runs and HTTP calls."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import queue
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterable

from sprout_harness.config import load_config
from sprout_harness.config.schema import SproutConfig
from sprout_harness.metrics import Histogram, RunResult
from sprout_harness.reports.html import DATA_ELEMENT_ID

REPO = Path(__file__).resolve().parents[2]
SPROUT = [sys.executable, "-m", "sprout_harness.cli"]

# The reference LevelDB config cut down to seconds; writers' ops decide how long the run lasts.
TINY_SETS = (
    "datasets.albums=300",
    "datasets.pets=300",
    "phases.0.params.count=200",
    "phases.1.params.get_ops=200",
    "phases.1.params.fetch_ops=40",
    "phases.2.params.ops=40",
    "phases.2.params.subscribers=4",
    "phases.4.params.cycles=2",
    "phases.4.params.subscribers=4",
)
PHASES = ["create@durable", "fetch@durable", "live-limit@durable", "writers@durable", "churn@durable"]


def tiny_sets(writer_ops: int = 4000) -> list[str]:
    return [*TINY_SETS, f"phases.3.params.ops={writer_ops}"]


def tiny_config(writer_ops: int = 4000, extra: Iterable[str] = ()) -> SproutConfig:
    """configs/leveldb-local.yaml on the real loam stack, with tiny sizes."""
    return load_config(str(REPO / "configs" / "leveldb-local.yaml"), [*tiny_sets(writer_ops), *extra])


def http(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def get_json(url: str, **kw: Any) -> Any:
    status, _, data = http(url, **kw)
    assert status == 200, (url, status, data[:300])
    return json.loads(data)


async def aget_json(url: str) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, get_json, url)


async def ahttp(url: str, **kw: Any) -> tuple[int, dict[str, str], bytes]:
    return await asyncio.get_running_loop().run_in_executor(None, lambda: http(url, **kw))


async def wait_for_status(url: str, pred: Any, timeout: float = 60.0) -> dict[str, Any]:
    """Poll ``url`` (an /api/status URL) until ``pred(status_dict)``; a deadline, not a sleep."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = await aget_json(url)
        if pred(last):
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"status condition not reached within {timeout} s; last status: {last.get('status')!r}, "
        f"history {[h['status'] for h in last.get('history', [])]}"
    )


def start_cli_run(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [*SPROUT, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def read_monitor_url(proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    """The dashboard URL the CLI prints on stderr (``monitor: http://...``)."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        m = re.search(r"monitor: (http://\S+)", line)
        if m:
            return m.group(1)
    raise AssertionError(f"the CLI printed no monitor URL; exit {proc.poll()}, stderr: {''.join(seen)[-2000:]}")


async def start_run_in_thread(
    runner: Any, monitor: Any, linger_s: float = 1.0
) -> tuple[str, concurrent.futures.Future]:
    """``run_with_monitor`` on a thread with its own event loop (as the CLI's main thread runs it);
    returns the dashboard URL and the future of the ``RunResult``."""
    from sprout_harness.monitor import run_with_monitor

    urls: queue.Queue[str] = queue.Queue()
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sprout-run")
    future = pool.submit(lambda: asyncio.run(run_with_monitor(runner, monitor, linger_s=linger_s, on_ready=urls.put)))
    pool.shutdown(wait=False)
    loop = asyncio.get_running_loop()
    while True:
        try:
            return await loop.run_in_executor(None, urls.get, True, 0.2), future
        except queue.Empty:
            if future.done():
                raise AssertionError(f"the run ended before its monitor started: {future.result()!r}")


# --- reading HTML pages back ------------------------------------------------------------


class _Page(HTMLParser):
    """Collects external references, element ids, table rows and the embedded data block."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.ids: set[str] = set()
        self.rows: list[dict[str, str]] = []
        self.data_text: str | None = None
        self._in_data = False
        self.inline_scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        for key in ("src", "href", "data", "poster", "action"):
            if key in a:
                self.refs.append(f"{tag}[{key}]={a[key]}")
        if tag == "script" and a.get("id") == DATA_ELEMENT_ID:
            self._in_data, self.data_text = True, ""
        elif tag == "script":
            self.inline_scripts += "src" not in a
        if tag == "tr":
            self.rows.append(a)

    def handle_data(self, data: str) -> None:
        if self._in_data:
            self.data_text = (self.data_text or "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_data = False


def parse(path: Path) -> tuple[_Page, dict, str]:
    text = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    assert page.data_text is not None, "no embedded data block"
    return page, json.loads(page.data_text), text


def slower(run: RunResult, phase: str, op: str, factor: int) -> RunResult:
    """A copy of ``run`` whose ``phase/op`` latencies are ``factor`` times larger, and churn broke."""
    new = RunResult.from_dict(run.to_dict())
    new.metadata.run_id = run.metadata.run_id + "-slower"
    h = new.phase(phase).latencies[op]
    scaled = Histogram()
    for lo, n in h.to_dict()["buckets"]:
        scaled.record_many([lo * factor] * n)
    new.phase(phase).latencies[op] = scaled
    churn = new.phase("churn@durable")
    churn.status, churn.reason = "failed", "check 'notified' failed"
    return new
