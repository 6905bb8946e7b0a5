"""The runner tears everything down on success, failure and cancellation, and still writes
the (partial) report. Real loam nodes on LevelDB / WebSocket / PostgreSQL where it matters."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from sprout_harness.config import config_from_dict, load_config
from sprout_harness.contracts import StackError
from sprout_harness.topology.runner import Runner, run
from support.procs import mentioning
from support.stacks import TINY, DictClient, DictStack, Store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def own_tmp(monkeypatch):
    """A private TMPDIR, traversable by the postgres user, so leftovers can be counted."""
    d = Path(tempfile.mkdtemp(prefix="sprout-teardown-", dir="/tmp"))
    d.chmod(0o755)
    monkeypatch.setenv("TMPDIR", str(d))
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Tracking(DictStack):
    """Records every close; lets a test make one factory or client call misbehave."""

    closed_clients: list[str] = []

    def __init__(self, settings):
        super().__init__(settings)
        self.workdir = settings.workdir()  # the runner must remove it
        settings.add_cleanup(lambda: Tracking.closed_clients.append("cleanup"))

    async def durable(self, index, context):
        c = await super().durable(index, context)
        return _Closing(c.store, f"durable-{index}")

    async def ephemeral(self, index, connector, context):
        return _Closing(connector, f"ephemeral-{index}")


class _Closing(DictClient):
    def __init__(self, store: Store, name: str):
        super().__init__(store)
        self.name = name

    async def close(self):
        Tracking.closed_clients.append(self.name)


def _cfg(phases, **extra):
    return config_from_dict({**TINY, "phases": phases, **extra})


async def test_phase_error_is_reported_and_everything_is_torn_down(tmp_path):
    class Boom(Tracking):
        async def durable(self, index, context):
            c = await super().durable(index, context)

            original = c.fetch

            async def fetch(collection, query):
                if query.kind in ("seq_range", "all"):  # the checks of create/writers still work
                    return await original(collection, query)
                raise RuntimeError("disk on fire")

            c.fetch = fetch
            return c

    Tracking.closed_clients = []
    cfg = _cfg(
        [{"name": "create", "params": {"count": 10}}, {"name": "fetch"}, {"name": "writers", "params": {"ops": 10}}]
    )
    result = await run(cfg, factory=Boom, json_path=tmp_path / "r.json", gab_path=tmp_path / "g.json")
    assert [p.status for p in result.phases] == ["ok", "error", "ok"]  # one broken phase does not stop the run
    assert "disk on fire" in result.phases[1].reason
    assert result.status == "error"
    stack = Boom.instances[-1]
    assert stack.closed and not stack.workdir.exists()
    assert Tracking.closed_clients == ["ephemeral-1", "ephemeral-0", "durable-0", "cleanup"]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"] == "error" and len(report["phases"]) == 3
    assert isinstance(json.loads((tmp_path / "g.json").read_text()), list)


async def test_setup_failure_closes_what_was_built_and_writes_the_report(tmp_path):
    class FailsOnSecondEphemeral(Tracking):
        async def ephemeral(self, index, connector, context):
            if index == 1:
                raise ConnectionRefusedError("nobody listening on 127.0.0.1:1")
            return await super().ephemeral(index, connector, context)

    Tracking.closed_clients = []
    result = await run(_cfg([{"name": "fetch"}]), factory=FailsOnSecondEphemeral, json_path=tmp_path / "r.json")
    assert result.status == "error"
    assert "ephemeral node 1" in result.reason and "nobody listening" in result.reason
    assert result.phases == []
    assert Tracking.closed_clients == ["ephemeral-0", "durable-0", "cleanup"]
    assert not FailsOnSecondEphemeral.instances[-1].workdir.exists()
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "error"


async def test_cancellation_mid_phase_tears_down_and_writes_a_cancelled_report(tmp_path):
    started = asyncio.Event()
    calls = {"n": 0}

    class Slow(Tracking):
        async def durable(self, index, context):
            c = await super().durable(index, context)
            original = c.update

            async def update(collection, id, props):
                calls["n"] += 1
                if calls["n"] > 5:
                    started.set()
                await asyncio.sleep(0.001)
                return await original(collection, id, props)

            c.update = update
            return c

    Tracking.closed_clients = []
    cfg = _cfg(
        [
            {"name": "create", "params": {"count": 10}},
            {"name": "writers", "target": "durable", "params": {"ops": 100000}},
            {"name": "fetch"},
        ]
    )
    task = asyncio.ensure_future(run(cfg, factory=Slow, json_path=tmp_path / "r.json"))
    await asyncio.wait_for(started.wait(), 30)
    task.cancel()
    result = await task
    assert result.status == "cancelled"
    assert [(p.name, p.status) for p in result.phases] == [("create@durable", "ok"), ("writers@durable", "cancelled")]
    assert result.phases[1].latencies["update"].count > 0  # what was measured is kept
    assert Tracking.closed_clients == ["ephemeral-1", "ephemeral-0", "durable-0", "cleanup"]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"] == "cancelled" and report["phases"][1]["status"] == "cancelled"


async def test_an_unloadable_stack_is_an_error_result_not_an_exception(tmp_path):
    cfg = config_from_dict({**TINY, "stack": {"name": "no_such_pkg.mod:stack"}})
    result = await run(cfg, json_path=tmp_path / "r.json")
    assert result.status == "error" and "cannot import module 'no_such_pkg.mod'" in result.reason
    assert (tmp_path / "r.json").exists()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_real_loam_on_websocket_is_torn_down_after_cancellation(own_tmp, tmp_path):
    cfg = load_config(
        ROOT / "configs" / "leveldb-ephemeral.yaml",
        [
            "datasets.albums=200",
            "datasets.pets=200",
            "topology.connector=websocket",
            "phases=[{name: writers, target: ephemeral, params: {ops: 1000000}}]",
        ],
    )
    runner = Runner(cfg, json_path=tmp_path / "r.json")
    task = asyncio.ensure_future(runner.run())
    for _ in range(2000):  # wait until the phase is running (a condition, not a fixed sleep)
        if runner.recorder is not None and runner.recorder.latency("update").count > 20:
            break
        await asyncio.sleep(0.01)
    stack = runner.stack
    ports = [s.port for s in stack.servers.values()]
    workdir = runner.settings._workdir
    assert ports and workdir is not None and workdir.exists()
    task.cancel()
    result = await task
    assert result.status == "cancelled"
    assert not workdir.exists()
    assert not any(_port_open(p) for p in ports)
    assert not stack.servers
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "cancelled"
    assert list(own_tmp.iterdir()) == []


@pytest.mark.postgres
@pytest.mark.parametrize("config", ["leveldb-local", "postgres-pool"])
def test_ctrl_c_on_the_cli_stops_everything_and_writes_the_partial_report(tmp_path, own_tmp, config):
    if (
        config == "postgres-pool"
        and shutil.which("initdb") is None
        and not list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    ):
        pytest.fail("PostgreSQL server binaries are needed: apt-get install postgresql (or set SPROUT_PG_DSN)")
    env = {**os.environ, "TMPDIR": str(own_tmp)}
    env.pop("SPROUT_PG_DSN", None)  # exercise the throwaway cluster and its teardown
    report = tmp_path / "partial.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sprout_harness",
            "run",
            config,
            "--verbose",
            "--json",
            str(report),
            "--set",
            "datasets.albums=300",
            "--set",
            "datasets.pets=300",
            "--set",
            "phases=[{name: create, params: {count: 100}}, {name: writers, params: {ops: 10000000}}]",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen = []
        for line in proc.stderr:  # the verbose log says when the long phase starts
            seen.append(line)
            if "phase writers" in line:
                break
        else:
            pytest.fail("the run ended before the writers phase: " + "".join(seen)[-2000:])
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    assert "interrupted" in err
    data = json.loads(report.read_text())
    assert data["status"] == "cancelled"
    assert [p["status"] for p in data["phases"]] == ["ok", "cancelled"]
    assert list(own_tmp.iterdir()) == [], "temp dirs left behind"
    assert mentioning(str(own_tmp)) == [], "processes left behind"


def test_sigterm_on_the_cli_is_a_graceful_stop(tmp_path, own_tmp):
    report = tmp_path / "partial.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sprout_harness",
            "run",
            "leveldb-local",
            "--verbose",
            "--json",
            str(report),
            "--set",
            "datasets.albums=200",
            "--set",
            "datasets.pets=200",
            "--set",
            "phases=[{name: writers, params: {ops: 10000000}}]",
        ],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(own_tmp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stderr:
            if "phase writers" in line:
                break
        proc.terminate()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    data = json.loads(report.read_text())
    assert data["status"] == "cancelled" and "terminated (SIGTERM)" in data["reason"]
    assert data["phases"][0]["status"] == "cancelled"
    assert list(own_tmp.iterdir()) == []


@pytest.fixture
def sigint_guard():
    """A SIGINT that reaches pytest outside a run is recorded, not a KeyboardInterrupt: these
    tests signal their own process and must not take the session down if they miss."""
    stray: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stray.append(signum))
    try:
        yield stray
    finally:
        signal.signal(signal.SIGINT, previous)


def _sigint_when(condition, timeout_s: float = 30.0) -> threading.Thread:
    """A thread that sends this process SIGINT once `condition()` holds (Ctrl+C from outside)."""

    def watch() -> None:
        deadline = time.monotonic() + timeout_s
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(os.getpid(), signal.SIGINT)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


class Blocking(DictStack):
    """Calls that block and never suspend, like a stack doing its work synchronously: nothing
    but the runner's own checkpoints can let a stop request in."""

    built = 0
    seeded = 0

    async def durable(self, index, context):
        c = await super().durable(index, context)
        original = c.create

        async def create(collection, props):
            time.sleep(0.002)
            if collection != "sprout_sync":
                Blocking.seeded += len(props)
            return await original(collection, props)

        c.create = create
        return c

    async def ephemeral(self, index, connector, context):
        time.sleep(0.002)
        Blocking.built += 1
        return await super().ephemeral(index, connector, context)


async def test_sigint_while_building_stops_at_the_next_node(tmp_path, sigint_guard):
    Blocking.built = 0
    cfg = _cfg([{"name": "fetch"}], topology={"durable": 1, "ephemeral": 1000, "connector": "direct"})
    _sigint_when(lambda: Blocking.built >= 10)
    result = await run(cfg, factory=Blocking, json_path=tmp_path / "r.json")
    assert result.status == "cancelled" and "interrupted (Ctrl+C)" in result.reason
    assert Blocking.built < 100, f"{Blocking.built} of 1000 ephemerals built after the signal"
    assert Blocking.instances[-1].closed
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "cancelled"
    assert sigint_guard == []


async def test_sigint_while_seeding_stops_at_the_next_batch(tmp_path, sigint_guard):
    Blocking.seeded = 0
    cfg = _cfg([{"name": "fetch"}], datasets={"albums": 500_000, "pets": 0}, runner={"seed_batch_size": 500})
    _sigint_when(lambda: Blocking.seeded >= 5000)
    result = await run(cfg, factory=Blocking, json_path=tmp_path / "r.json")
    assert result.status == "cancelled" and "interrupted (Ctrl+C)" in result.reason
    assert result.phases == []
    assert Blocking.seeded < 50_000, f"{Blocking.seeded} of 500000 rows seeded after the signal"
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "cancelled"
    assert sigint_guard == []


async def test_sigint_while_the_reports_are_written_reports_the_run_cancelled(tmp_path, sigint_guard, monkeypatch):
    from sprout_harness.reports import json_report

    written: list[str] = []
    original = json_report.write

    def write(result, path):
        written.append(result.status)
        if len(written) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # lands while the first report is being written
        return original(result, path)

    monkeypatch.setattr(json_report, "write", write)
    result = await run(_cfg([{"name": "fetch"}]), factory=DictStack, json_path=tmp_path / "r.json")
    assert written == ["ok", "cancelled"]
    assert result.status == "cancelled" and "interrupted (Ctrl+C) while tearing down" in result.reason
    assert [p.status for p in result.phases] == ["ok"]  # the phase had finished: its figures stay
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "cancelled"
    assert sigint_guard == []


def test_stack_error_type_is_public():
    assert issubclass(StackError, Exception)
