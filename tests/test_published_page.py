"""The published asv page renders its graphs in headless Chromium with no internet access.

A clone of this repository gets two commits, `asv run --python=same --set-commit-hash` records
anchor results for both (fast: no virtualenv), `asv publish` writes html/, the offline step
installs jQuery/flot/bootstrap from the npm registry and rewrites the CDN links; then the page
is served on 127.0.0.1 and loaded by Chromium with every other host unresolvable.

Needs Debian's `chromium` (installed here with apt-get when running as root); without it the
test fails and says what to install. Set SPROUT_SCREENSHOT_DIR to keep the screenshot.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from sprout_harness.asvtools import offline
from support.asv import asv, clone_under_test, commit_all, explain
from support.browser import FLAGS
from support.system import require_tool

pytestmark = pytest.mark.slow

GRAPH = "anchors.AnchorLevelDB.track_put_write_batch"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="session")
def chromium() -> str:
    return require_tool(CHROMIUM_NAMES, "chromium", "published-page tests")


@pytest.fixture(scope="module")
def published_html(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str) -> Path:
    tmp = tmp_path_factory.mktemp("published")
    repo = clone_under_test(tmp / "clone")
    proc = asv(repo, "machine", "--yes")
    assert proc.returncode == 0, explain(proc)
    env = {"SPROUT_BENCH_SCALE": "tiny", "SPROUT_PG_DSN": pg_dsn}
    for i in (1, 2):
        (repo / "docs" / "asv-page-test.md").write_text(f"commit {i}\n")
        commit = commit_all(repo, f"page commit {i}")
        proc = asv(repo, "run", "--python=same", "--set-commit-hash", commit, "--bench", "anchors", "--quick", env=env)
        assert proc.returncode == 0, explain(proc)
    proc = asv(repo, "publish")
    assert proc.returncode == 0, explain(proc)
    html = repo / "html"
    rewritten = offline.make_offline(html, cache=tmp / "assets", package_dir=repo / offline.PACKAGE_DIR)
    assert rewritten == len(offline.ASSETS)
    assert offline.remaining_remote_urls(html) == []
    return html


class _Handler(SimpleHTTPRequestHandler):
    requested: list[str]

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        self.requested.append(self.path)


@pytest.fixture
def served(published_html: Path) -> Iterator[tuple[str, list[str]]]:
    requested: list[str] = []
    handler = functools.partial(type("H", (_Handler,), {"requested": requested}), directory=str(published_html))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requested
    finally:
        server.shutdown()
        server.server_close()


def _chromium(binary: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="sprout-chromium-") as profile:
        cmd = [
            binary,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=8000",
            "--window-size=1280,900",
            # No internet: every host but the local server is unresolvable, so CDN links would fail.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            *args,
        ]
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


def test_graph_page_renders_offline(chromium: str, served: tuple[str, list[str]], tmp_path: Path) -> None:
    base, requested = served
    url = f"{base}/index.html#{GRAPH}"

    dom = _chromium(chromium, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'class="flot-base"' in html, f"no flot plot canvas in the DOM of {url}:\n{html[:3000]}"
    assert GRAPH in html
    assert not any(p.startswith("/error.html") for p in requested), requested  # js_load_failure() redirect
    assert any(p.startswith("/vendor/jquery/") for p in requested), requested
    assert any("/graphs/" in p and GRAPH in p for p in requested), requested  # graph data was loaded

    shot_dir = Path(os.environ.get("SPROUT_SCREENSHOT_DIR") or tmp_path)
    shot_dir.mkdir(parents=True, exist_ok=True)
    shot = shot_dir / "asv-graph.png"
    proc = _chromium(chromium, f"--screenshot={shot}", url)
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, f"screenshot {shot} looks empty"
