"""Headless Chromium loads the pages people look at: the live dashboard during a real run of the
loam stack (LevelDB) on 127.0.0.1, the HTML report from disk and the comparison page. DOM checks
assert that charts hold data points; the stop button is clicked through the DevTools protocol.

Screenshots land in the test's tmp dir (and in $SPROUT_SCREENSHOT_DIR when set, to look at them).
"""

from __future__ import annotations

import asyncio
from html.parser import HTMLParser

import pytest

from sprout_harness.metrics import RunResult, load_run
from sprout_harness.monitor import LiveMonitor
from sprout_harness.reports.compare import compare_runs
from sprout_harness.reports.html import write_compare_html, write_html
from sprout_harness.topology.runner import Runner, run_sync
from support.browser import chromium  # noqa: F401  (session fixture)
from support.monitor import PHASES, parse, slower, start_run_in_thread, tiny_config, wait_for_status

pytestmark = pytest.mark.slow


class Charts(HTMLParser):
    """Per chart element (by id): plotly traces, drawn line points, markers and bars."""

    def __init__(self, ids: set[str]) -> None:
        super().__init__()
        self.ids = ids
        self.counts: dict[str, dict[str, int]] = {}
        self.texts: dict[str, str] = {}
        self.attrs: dict[str, dict[str, str]] = {}
        self.body: dict[str, str] = {}
        self.row_classes: list[str] = []
        self._stack: list[tuple[str, str | None, str | None]] = []  # (tag, chart id opened here, element id)
        self._chart: str | None = None

    _VOID = {"br", "img", "input", "meta", "link", "hr", "col", "area", "base", "source", "wbr"}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        if tag == "tr":
            self.row_classes.append(a.get("class", ""))
        el_id = a.get("id")
        if el_id:
            self.attrs[el_id] = a
        opened = None
        if el_id in self.ids and self._chart is None:
            self._chart = opened = el_id
            self.counts[el_id] = {"traces": 0, "line_points": 0, "markers": 0, "bars": 0}
        if el_id:
            self.texts.setdefault(el_id, "")
        if self._chart is not None:
            c = self.counts[self._chart]
            cls = a.get("class", "").split()
            if tag == "g" and cls[:1] == ["trace"]:
                c["traces"] += 1
            if tag == "path" and "js-line" in cls:
                c["line_points"] += a.get("d", "").count("L") + 1 if a.get("d") else 0
            if tag == "path" and "point" in cls:
                c["markers"] += 1
            if tag == "g" and "point" in cls:
                c["bars"] += 1
        if tag not in self._VOID:
            self._stack.append((tag, opened, el_id))

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            t, opened, _ = self._stack.pop()
            if opened is not None:
                self._chart = None
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, _, el_id in self._stack:  # text belongs to every enclosing element with an id
            if el_id:
                self.texts[el_id] += data


def charts_of(dom: str, ids: set[str]) -> Charts:
    c = Charts(ids)
    c.feed(dom)
    return c


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> RunResult:
    result = run_sync(
        tiny_config(extra=["phases.3.params.duration_s=2.3"]),  # a timeline of 3 seconds
        json_path=tmp_path_factory.mktemp("runs") / "base.json",
    )
    assert result.status == "ok", result.reason
    return result


async def test_report_page_from_disk_draws_every_chart(chromium, base_run, tmp_path):
    path = write_html(base_run, tmp_path / "report.html")
    _, data, _ = parse(path)
    dom = await chromium.capture(path.resolve().as_uri(), screenshot=tmp_path / "report.png")
    figures = set(data["figures"])
    c = charts_of(dom, figures)
    assert c.body.get("data-charts-rendered") == str(len(figures)), "not every chart finished drawing"
    for fid in figures:
        n = c.counts[fid]
        assert n["traces"] >= 1, (fid, n)
        assert n["line_points"] + n["bars"] + n["markers"] > 0, (fid, n)
    for i in range(len(PHASES)):  # curves, not dots (plotly drops collinear points, so only a few for flat ones)
        assert c.counts[f"dist-latency-{i}"]["line_points"] >= 2 * len(data["figures"][f"dist-latency-{i}"]["data"])
    assert c.counts[f"dist-latency-{PHASES.index('writers@durable')}"]["line_points"] >= 5
    writers = base_run.phase("writers@durable")
    assert c.counts[f"timeline-{PHASES.index('writers@durable')}"]["bars"] == len(writers.timeline) >= 3
    assert c.counts["lag-by-phase"]["markers"] >= 4  # p50 and p99 of each lag of two phases
    assert "ok" in c.texts["run-status"]


async def test_compare_page_draws_side_by_side_charts_and_marks_regressions(chromium, base_run, tmp_path):
    new = slower(base_run, "fetch@durable", "get", 3)
    comparison = compare_runs(base_run, new, 0.10)
    path = write_compare_html(comparison, base_run, new, tmp_path / "diff.html")
    _, data, _ = parse(path)
    dom = await chromium.capture(path.resolve().as_uri(), screenshot=tmp_path / "compare.png")
    figures = set(data["figures"])
    c = charts_of(dom, figures)
    assert c.body.get("data-charts-rendered") == str(len(figures))
    p99 = c.counts["cmp-p99"]
    assert p99["traces"] == 2 and p99["bars"] == 2 * len(data["figures"]["cmp-p99"]["data"][0]["y"])
    curve = c.counts["cmp-curve-0"]  # base and new percentile curves (plotly drops collinear points)
    assert curve["traces"] == 2 and curve["line_points"] >= 4, curve
    # get p50 regressed; get p99 (200 samples, 2 beyond it) is shown as too few samples to gate
    assert c.row_classes.count("regressed") == len(comparison.regressions) == 1
    assert c.row_classes.count("ungated") == sum(1 for d in comparison.deltas if not d.gated) >= 1
    assert "REGRESSED" in c.texts["verdict"]


async def test_live_dashboard_during_a_run_and_its_stop_button(chromium, tmp_path):
    report = tmp_path / "run.json"
    runner = Runner(tiny_config(writer_ops=2_000_000), json_path=report)
    # The run gets a thread of its own, as in `sprout run`: its writers phase never yields its
    # loop, and this test's loop must keep driving Chromium meanwhile.
    url, run = await start_run_in_thread(runner, LiveMonitor(port=0, interval_s=0.5), linger_s=3.0)
    try:
        await wait_for_status(url + "api/status", lambda s: s["status"] == "running writers@durable")
        await wait_for_status(
            url + "api/metrics", lambda m: sum(p["phase"] == "writers@durable" for p in m["timeline"]) >= 3
        )

        # A page load during the run: status, finished phases and charts with points.
        dom = await chromium.capture(url, screenshot=tmp_path / "dashboard.png", budget_ms=2000)
        ids = {"chart-throughput", "chart-latency", "chart-lag"}
        c = charts_of(dom, ids)
        assert c.texts["status"].startswith("running writers@durable"), c.texts.get("status")
        assert "live-limit@durable" in c.texts["phases"] and c.texts["config"].strip().startswith("{")
        # Lag has points only from live-limit (writers has no subscriptions): at least one sample.
        for fid, least in (("chart-throughput", 3), ("chart-latency", 3), ("chart-lag", 1)):
            assert int(c.attrs[fid].get("data-points", "0")) >= least, (fid, c.attrs[fid])
            assert c.counts[fid]["traces"] >= 1 and c.counts[fid]["markers"] >= least, (fid, c.counts[fid])
        assert c.counts["chart-throughput"]["line_points"] >= 3
        assert "stop" in c.attrs and "disabled" not in c.attrs["stop"]

        # The stop button, clicked in a live page, ends the run gracefully.
        async with chromium.page(url) as page:
            await page.wait_for("document.getElementById('status').textContent.startsWith('running')")
            await page.wait_for("Number(document.getElementById('chart-throughput').getAttribute('data-points')) > 0")
            await page.evaluate("document.getElementById('stop').click()")
            final = await page.wait_for(
                "['cancelled','completed','failed'].includes(document.getElementById('status').textContent) && "
                "document.getElementById('status').textContent",
                timeout=90,
            )
            assert final == "cancelled"
            assert await page.evaluate("document.getElementById('stop').disabled") is True
        result = await asyncio.wait_for(asyncio.wrap_future(run), 60)
    finally:
        if not run.done():
            runner.request_stop("test cleanup")
            await asyncio.wait_for(asyncio.wrap_future(run), 60)

    assert result.status == "cancelled" and "stopped from the monitor" in result.reason
    saved = load_run(report)
    assert saved.status == "cancelled"
    assert [p.name for p in saved.phases] == PHASES[:4]
    assert saved.phase("writers@durable").status == "cancelled"
    assert 0 < saved.phase("writers@durable").ops < 2_000_000
