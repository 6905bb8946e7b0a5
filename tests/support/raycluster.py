"""A real two-node Ray cluster for tests, each node in a network namespace the fixture creates.

Ray replaces 127.0.0.1 with the machine's own (non-loopback) address, and tests may only talk
to loopback or to hosts in namespaces they create. So each node gets its own namespace
(`sprout-ray-<random>-h` / `-w`), joined to the root namespace by a veth pair whose root ends
sit on one bridge; the bridge holds the root namespace's address in a random private /24, so
the driver (this process) reaches the head and a server bound to `cluster.root_ip` is reachable
from actors on both nodes. Nodes run `ray start --block`: the fixture owns their processes and
stops them by those PIDs (never `ray stop`, which kills every Ray process on the machine).
Teardown runs however the test ends: processes, namespaces, links, temp dirs.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HEAD_PORT = 6379  # free: the head has a namespace of its own
START_DEADLINE_S = 60.0
RAY = str(Path(sys.executable).with_name("ray"))
_ROUTE_TYPES = {
    "local",
    "broadcast",
    "unicast",
    "multicast",
    "anycast",
    "unreachable",
    "blackhole",
    "prohibit",
    "throw",
    "nat",
}


@dataclass
class RayCluster:
    """Where the cluster is: `address` (the head's GCS) for RayFleet, `root_ip` for servers."""

    address: str
    root_ip: str
    head_ip: str
    worker_ip: str
    namespaces: tuple[str, str]
    temp_dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def node_ips(self) -> set[str]:
        return {self.head_ip, self.worker_ip}


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")


def _free_subnet() -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 that no route of the root namespace overlaps."""
    routes = subprocess.run(
        ["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    used = []
    for line in routes.splitlines():
        words = [w for w in line.split() if w not in _ROUTE_TYPES][:1]  # "local 10.0.0.1 ..." etc.
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(words[0] if words else "", strict=False))
    rng = random.SystemRandom()
    for _ in range(100):
        net = ipaddress.IPv4Network(f"10.{rng.randrange(16, 250)}.{rng.randrange(0, 256)}.0/24")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise RuntimeError("no free 10.x.y.0/24 for the test network")


def _require_root() -> None:
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.fail(
            "the Ray cluster tests create network namespaces: run them as root (CAP_NET_ADMIN) with "
            "iproute2's `ip` on PATH (`apt-get install -y iproute2`)",
            pytrace=False,
        )


def _stop(procs: list[subprocess.Popen[bytes]], grace_s: float = 5.0) -> None:
    """SIGTERM the process groups we started (`ray start --block` then stops its daemons),
    SIGKILL whatever is left after `grace_s`."""
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(max(0.1, deadline - time.monotonic()))
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(5)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Teardown must not be cut short by a second Ctrl-C or a SIGTERM: hold them until it is
    done, then raise KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = {sig: signal.signal(sig, lambda signum, frame: got.append(signum)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if got:
        raise KeyboardInterrupt(f"signal {got[0]} during teardown")


def _kill_namespace_pids(ns: str) -> None:
    """Kill whatever still runs in a namespace this fixture created (Ray daemons that left our
    process group): only our own descendants can be in there."""
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=30, check=False)
    for word in out.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(word), signal.SIGKILL)


def _start_node(ns: str, args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            ["ip", "netns", "exec", ns, RAY, "start", "--block", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )


def _wait_alive(cluster: RayCluster, logs: list[Path]) -> None:
    """Until the GCS lists both nodes alive (a driver in the root namespace asks it)."""
    probe = (
        "import sys, ray; ray.init(address=sys.argv[1], log_to_driver=False); "
        "print(sum(1 for n in ray.nodes() if n['Alive']))"
    )
    deadline = time.monotonic() + START_DEADLINE_S
    last = ""
    while time.monotonic() < deadline:
        for p, log in zip(cluster.procs, logs):
            if p.poll() is not None:
                raise RuntimeError(f"ray node exited ({p.returncode}): {log.read_text(errors='replace')[-1500:]}")
        try:
            done = subprocess.run(
                [sys.executable, "-c", probe, cluster.address],
                capture_output=True,
                text=True,
                timeout=max(1.0, deadline - time.monotonic()),
                check=False,
                env={**os.environ, "RAY_TMPDIR": str(cluster.temp_dir)},
            )
        except subprocess.TimeoutExpired:
            break
        last = done.stdout.strip() or done.stderr.strip()[-800:]
        if done.returncode == 0 and last.splitlines()[-1] == "2":
            return
        time.sleep(0.5)
    raise RuntimeError(f"the 2-node Ray cluster was not up within {START_DEADLINE_S:.0f} s: {last}")


def _shutdown_driver() -> None:
    """Disconnect this process if it is still a driver: once the GCS is gone a driver's core
    worker ends its whole process (here: pytest)."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


@contextlib.contextmanager
def ray_cluster() -> Iterator[RayCluster]:
    """Start the two-node cluster (see the module docstring); tear it all down on exit."""
    _require_root()
    tag = secrets.token_hex(3)
    net = _free_subnet()
    hosts = list(net.hosts())
    root_ip, head_ip, worker_ip = (str(hosts[i]) for i in range(3))
    ns_h, ns_w = f"sprout-ray-{tag}-h", f"sprout-ray-{tag}-w"
    bridge, veth_h, veth_w = f"srb{tag}", f"srh{tag}", f"srw{tag}"
    temp = Path(tempfile.mkdtemp(prefix="sprout-ray-"))
    cluster = RayCluster(f"{head_ip}:{HEAD_PORT}", root_ip, head_ip, worker_ip, (ns_h, ns_w), temp)
    made_ns: list[str] = []
    made_links: list[str] = []
    try:
        _ip("link", "add", bridge, "type", "bridge")
        made_links.append(bridge)
        _ip("addr", "add", f"{root_ip}/{net.prefixlen}", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for ns, veth, addr in ((ns_h, veth_h, head_ip), (ns_w, veth_w, worker_ip)):
            _ip("netns", "add", ns)
            made_ns.append(ns)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            made_links.append(veth)
            _ip("link", "set", veth, "master", bridge)
            _ip("link", "set", veth, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{addr}/{net.prefixlen}", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
        # two CPUs a node: four one-CPU actors under SPREAD then land two per node
        common = ["--num-cpus", "2", "--object-store-memory", "80000000"]
        logs = [temp / "head.log", temp / "worker.log"]
        env = {**os.environ, "RAY_TMPDIR": str(temp)}
        cluster.procs.append(
            _start_node(
                ns_h,
                [
                    "--head",
                    "--node-ip-address",
                    head_ip,
                    "--port",
                    str(HEAD_PORT),
                    "--include-dashboard=false",
                    "--disable-usage-stats",
                    "--temp-dir",
                    str(temp / "h"),
                    *common,
                ],
                logs[0],
                env,
            )
        )
        cluster.procs.append(
            _start_node(ns_w, ["--address", cluster.address, "--node-ip-address", worker_ip, *common], logs[1], env)
        )
        _wait_alive(cluster, logs)
        yield cluster
    finally:
        with _signals_deferred():
            _shutdown_driver()
            _stop(list(reversed(cluster.procs)))
            for ns in made_ns:
                _kill_namespace_pids(ns)
            for ns in made_ns:
                with contextlib.suppress(RuntimeError):
                    _ip("netns", "delete", ns)
            for link in made_links:  # the veth ends vanish with their namespaces; the bridge does not
                with contextlib.suppress(RuntimeError):
                    _ip("link", "delete", link)
            shutil.rmtree(temp, ignore_errors=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="module")
def ray_cluster_2() -> Iterator[RayCluster]:
    """A two-node Ray cluster in network namespaces of its own (module scope: ~10 s to start)."""
    main = threading.current_thread() is threading.main_thread()
    # a terminated run unwinds like an interrupted one, so teardown still runs
    old_handler = signal.signal(signal.SIGTERM, _interrupt) if main else None
    before = os.environ.get("RAY_TMPDIR")
    try:
        cm = ray_cluster()
        try:
            cluster = cm.__enter__()
        except RuntimeError as exc:
            pytest.fail(f"cannot start the test Ray cluster: {exc}", pytrace=False)
        os.environ["RAY_TMPDIR"] = str(cluster.temp_dir)  # this process's driver files go there too
        try:
            yield cluster
        finally:
            cm.__exit__(None, None, None)
    finally:
        if before is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = before
        if main:
            signal.signal(signal.SIGTERM, old_handler)
