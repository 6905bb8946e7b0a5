"""loam's durable node in its own process: `loam serve --storage-param`, and an ephemeral node
that is a plain remote client of it (`local_reads=False`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from loam.node.api import Context
from loam.node.durable import DurableNode
from loam.node.ephemeral import EphemeralNode
from loam.storage import create_engine
from loam.transport.inprocess import InProcessServer


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
    return subprocess.run([sys.executable, "-m", "loam", "serve", "--storage", "leveldb", "--path",
                           str(tmp_path / "db"), *extra], capture_output=True, text=True, timeout=60)


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
