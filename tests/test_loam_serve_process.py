"""loam's durable node in its own process: `loam serve --storage-param`, and an ephemeral node
that is a plain remote client of it (`local_reads=False`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from loam.node.api import Context
from loam.node.durable import DurableNode
from loam.node.ephemeral import EphemeralNode
from loam.storage import create_engine
from loam.transport.inprocess import InProcessServer
from support.procs import StderrWatch, alive, cmdline, descendants


async def _node_and_server() -> tuple[DurableNode, InProcessServer]:
    node = DurableNode(create_engine("memory"))
    await node.start()
    return node, InProcessServer(node)


async def test_local_reads_false_sends_every_read_to_the_durable_node() -> None:
    node, server = await _node_and_server()
    ctx = Context()
    try:
        for local_reads, expect_local in ((True, True), (False, False)):
            eph = EphemeralNode(server.connector(), local_reads=local_reads)
            await eph.start()
            coll = f"pets{int(local_reads)}"
            ids, _ = await eph.create(coll, [{"n": 1}, {"n": 2}], ctx)
            lq = await eph.subscribe(coll, "n >= 1 ORDER BY n LIMIT 5", ctx)
            got = await eph.fetch(coll, "n >= 1 ORDER BY n LIMIT 5", ctx)
            one = await eph.get(coll, ids[0], ctx)
            assert [e.id for e in got] == ids and one is not None and one.props["n"] == 1
            # the live query holds both answers: served here only when local reads are on
            assert (eph.reads_local, eph.reads_remote) == ((2, 0) if expect_local else (0, 2)), local_reads
            await lq.close()
            await eph.close()
    finally:
        await node.close()


def _serve(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loam", "serve", "--storage", "leveldb", "--path", str(tmp_path / "db"), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_storage_params_reach_the_engine_and_bad_ones_are_one_line(tmp_path: Path) -> None:
    bad_json = _serve(tmp_path, "--storage-param", "indexes={nope")
    assert bad_json.returncode == 2 and "--storage-param indexes: '{nope' is not JSON" in bad_json.stderr
    bad_shape = _serve(tmp_path, "--storage-param", "=1")
    assert bad_shape.returncode == 2 and "write KEY=JSON" in bad_shape.stderr
    unknown = _serve(tmp_path, "--storage-param", "colour=1")
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr
    assert unknown.stderr.count("\n") == 1 and "colour" in unknown.stderr, unknown.stderr
    # a wrongly shaped index is refused by the engine: the parameter reached it
    wrong = _serve(tmp_path, "--storage-param", 'indexes={"pets": 5}')
    assert wrong.returncode == 1 and "indexes" in wrong.stderr and "Traceback" not in wrong.stderr, wrong.stderr


# --- the loam stack with its durable nodes out of the harness's process -----------------------

ROOT = Path(__file__).resolve().parent.parent


def _run_cli(
    tmp_path: Path,
    *sets: str,
    signal_after: tuple[str, float] | None = None,
    kill_server_after: tuple[str, float] | None = None,
) -> tuple[int, str, dict | None, set[tuple[int, int]], list[str]]:
    """`sprout run leveldb-local` with the durable node in its own process; optionally SIGINT
    the run, or SIGKILL its server, `seconds` after a log line containing `marker`. Returns the
    exit code, the log, the report, the servers seen (pid, start) and those still running after."""
    import json
    import signal
    import time

    report = tmp_path / "report.json"
    cmd = [
        sys.executable,
        "-m",
        "sprout_harness",
        "run",
        "leveldb-local",
        "--verbose",
        "--json",
        str(report),
        "--set",
        "stack.params.durable_process=true",
        "--set",
        "datasets.albums=300",
        "--set",
        "datasets.pets=300",
        "--set",
        "phases.0.params.count=300",
        *[a for s in sets for a in ("--set", s)],
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    watch = StderrWatch(proc, (signal_after or kill_server_after or ("\0", 0))[0])
    servers: set[tuple[int, int]] = set()
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        servers |= {c for c in descendants(proc.pid) if "loam serve" in cmdline(c[0])}
        if watch.seen.is_set() and (signal_after or kill_server_after):
            time.sleep((signal_after or kill_server_after)[1])  # type: ignore[index]
            if signal_after:
                proc.send_signal(signal.SIGINT)
            else:
                for pid, _ in servers:
                    os.kill(pid, signal.SIGKILL)
            signal_after = kill_server_after = None
        time.sleep(0.02)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    log = watch.text()
    time.sleep(0.2)  # let the kernel reap what exited with the run
    left = alive(servers)
    data = json.loads(report.read_text()) if report.exists() else None
    return proc.returncode, log, data, servers, left


def test_a_durable_node_in_its_own_process_runs_the_suite_and_leaves_nothing(tmp_path: Path) -> None:
    code, log, report, servers, left = _run_cli(tmp_path)
    assert code == 0, log[-3000:]
    assert len(servers) == 1 and not left, (servers, left)  # one server, stopped at teardown
    notes = " ".join(report["metadata"]["notes"])
    assert f"own process (pid {min(servers)[0]}, python -m loam serve) at ws://127.0.0.1:" in notes, notes
    assert [p["status"] for p in report["phases"]] == ["ok"] * 5
    # the harness's figures were measured over the wire: the durable client reads remotely
    assert report["metadata"]["connector"] == "none" and "connectors=['websocket']" in notes


def test_ctrl_c_stops_the_server_process_too(tmp_path: Path) -> None:
    code, log, report, servers, left = _run_cli(
        tmp_path, "phases.3.params.duration_s=5", signal_after=("phase writers", 0.5)
    )
    assert code == 130, log[-3000:]
    assert servers and not left, f"server processes left behind: {left}"
    assert report is not None and report["status"] == "cancelled"
    assert "Traceback" not in log


def test_a_server_that_dies_mid_phase_fails_the_run_with_its_cause(tmp_path: Path) -> None:
    code, log, report, servers, left = _run_cli(
        tmp_path, "phases.3.params.duration_s=5", kill_server_after=("phase writers", 0.5)
    )
    assert code == 1, log[-3000:]
    assert report is not None and report["status"] in ("failed", "error"), report["status"]
    writers = next(p for p in report["phases"] if p["name"] == "writers@durable")
    assert writers["status"] != "ok"
    assert "exited with -9" in " ".join(report["metadata"]["notes"]) + log, log[-3000:]
    assert servers and not left and "Traceback" not in log


async def test_durable_urls_connect_to_servers_someone_else_runs(tmp_path: Path) -> None:
    from sprout_harness.config import config_from_dict
    from sprout_harness.topology.runner import run

    server = subprocess.Popen(
        [sys.executable, "-m", "loam", "serve", "--storage", "memory"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1]
        cfg = config_from_dict(
            {
                "name": "external",
                "stack": {"name": "loam", "params": {"durable_urls": [url]}},
                "topology": {"durable": 1, "ephemeral": 1},
                "datasets": {"albums": 200, "pets": 0},
                "phases": [
                    {"name": "create", "target": "ephemeral", "params": {"count": 50, "batch_size": 10}},
                    {"name": "fetch", "target": "durable", "params": {"get_ops": 20, "fetch_ops": 10}},
                ],
            }
        )
        result = await run(cfg)
        assert result.status == "ok", (result.reason, [(p.name, p.status, p.reason) for p in result.phases])
        assert any(f"external server at {url}" in n for n in result.metadata.notes), result.metadata.notes
        assert result.metadata.connector == "websocket"  # the stack's only connector out of process
        assert server.poll() is None  # not ours to stop
    finally:
        server.terminate()
        assert server.wait(10) == 0


async def test_the_5k_config_runs_at_a_small_size_with_its_server_apart() -> None:
    """configs/realtime-5k.yaml end to end, shrunk: clients in worker processes, the server in
    its own `loam serve` process, whose memory the phase reports per connection."""
    from sprout_harness.config import load_config
    from sprout_harness.topology.runner import run

    p = "phases.connection-scaling.params."
    cfg = load_config(
        ROOT / "configs" / "realtime-5k.yaml",
        [
            "datasets.pets=400",
            "runner.seed_batch_size=200",
            f"{p}connections=40",
            f"{p}steps=2",
            f"{p}commits_per_step=3",
            f"{p}commit_interval_ms=5",
            f"{p}processes=2",
            f"{p}connect_concurrency=20",
        ],
        check_stack=True,
    )
    result = await run(cfg)
    assert result.status == "ok", (result.reason, [(ph.name, ph.status, ph.reason) for ph in result.phases])
    (ph,) = result.phases
    assert ph.counters["connections"] == 40 and ph.counters["connect_failures"] == 0
    assert "server_rss_per_connection_bytes" in ph.counters, ph.counters
    assert all("server_rss_per_connection_bytes" in step for step in ph.extra["steps"])
    assert any("own process (pid " in n for n in result.metadata.notes), result.metadata.notes


def test_a_durable_url_where_nothing_listens_is_a_config_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sprout_harness",
            "run",
            "leveldb-local",
            "--set",
            f'stack.params.durable_urls=["ws://127.0.0.1:{port}"]',
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr.strip() == (
        f"error: stack.params.durable_urls[0]: nothing answers at ws://127.0.0.1:{port} "
        "(Connection refused); start the server or fix the address"
    )
