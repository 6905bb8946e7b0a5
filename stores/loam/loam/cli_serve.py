"""`python -m loam serve`: run a durable node over WebSocket until SIGINT/SIGTERM.

Prints `loam serving on ws://HOST:PORT` (flushed) once bound, so a parent process can
read the port when `--port 0` picks a free one. On SIGINT/SIGTERM it closes every
connection, the node and its storage, and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from typing import Any

from loam.errors import LoamError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loam serve", description="Serve a durable loam node over WebSocket.")
    p.add_argument(
        "--storage", choices=["leveldb", "postgres", "memory"], required=True, help="storage engine of the durable node"
    )
    p.add_argument("--path", help="LevelDB directory (with --storage leveldb)")
    p.add_argument("--sync", action="store_true", help="LevelDB: fsync every commit")
    p.add_argument("--dsn", help="PostgreSQL DSN (with --storage postgres)")
    p.add_argument("--pool-size", type=int, default=4, help="PostgreSQL connection pool size (default 4)")
    p.add_argument(
        "--storage-param",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="another parameter of the storage engine, its value as JSON, e.g. "
        '--storage-param \'indexes={"pets": ["seq"]}\' (repeatable)',
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port to bind (default 0: any free port)")
    p.add_argument("--token", default=None, help="clients must present this token in their hello")
    p.add_argument(
        "--auth",
        default=None,
        metavar="token-file:PATH",
        help="authenticate every connection: PATH holds `TOKEN USER` lines; each connection "
        "is then served as its token's user (default: trust the user each request names)",
    )
    p.add_argument("--policy", default=None, help="policy agent name (default: permissive)")
    p.add_argument(
        "--policy-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter of the policy agent, e.g. --policy-param read=owner (repeatable; "
        "true/false and integers are typed, anything else is text)",
    )
    p.add_argument("--node-id", default=None, help="node id (default: random)")
    p.add_argument(
        "--max-message-size",
        type=int,
        default=None,
        help="protocol message size limit in bytes (default 1 MiB, at least 4096)",
    )
    p.add_argument(
        "--max-pending",
        type=int,
        default=None,
        help="messages that may wait for one client that does not read before it is disconnected "
        "(code 1013; default 10000)",
    )
    p.add_argument(
        "--max-pending-bytes",
        type=int,
        default=None,
        help="bytes that may wait for one client that does not read before it is disconnected "
        "(code 1013; default 64 MiB, at least --max-message-size)",
    )
    p.add_argument(
        "--max-subscriptions", type=int, default=None, help="live queries one connection may hold (default 1000)"
    )
    p.add_argument("--log-level", default="WARNING")
    return p


# Numeric flags: attribute, lowest and highest value (None: no limit), unit.
_NUMERIC: tuple[tuple[str, int, int | None, str], ...] = (
    ("port", 0, 65535, ""),
    ("pool_size", 1, 1024, "connections"),
    ("max_message_size", 4096, 1 << 30, "bytes"),  # 4096: NodeService's MIN_MAX_SIZE
    ("max_pending", 1, None, "messages"),
    ("max_pending_bytes", 4096, None, "bytes"),
    ("max_subscriptions", 1, None, "live queries"),
)


def check_numbers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse out-of-range numeric flags with an argparse error (exit 2) naming the flag."""
    for attr, low, high, unit in _NUMERIC:
        v = getattr(args, attr, None)
        if v is None or (v >= low and (high is None or v <= high)):
            continue
        flag = "--" + attr.replace("_", "-")
        unit = f" ({unit})" if unit else ""
        if high is None:
            parser.error(f"{flag} must be at least {low}{unit}, got {v}")
        parser.error(f"{flag} must be in {low}..{high}{unit}, got {v}")
    size = args.max_message_size if args.max_message_size is not None else 1 << 20
    if args.max_pending_bytes is not None and args.max_pending_bytes < size:
        parser.error(
            f"--max-pending-bytes must be at least the message size limit ({size} bytes), got {args.max_pending_bytes}"
        )


def policy_params(items: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs as the policy's keyword arguments (ValueError naming a bad one)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--policy-param {item!r}: expected KEY=VALUE, e.g. read=owner")
        low = raw.lower()
        out[key] = (
            True if low == "true" else False if low == "false" else int(raw) if raw.lstrip("-").isdigit() else raw
        )
    return out


def build_policy(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Any:
    """The policy agent the flags name, built now so a bad parameter is a usage error."""
    from loam.policy import create_policy

    try:
        params = policy_params(args.policy_param)
        if params and not args.policy:
            raise ValueError("--policy-param needs --policy NAME")
        return create_policy(args.policy, **params) if args.policy else None
    except (ValueError, LoamError) as exc:
        parser.error(str(exc))
    except TypeError as exc:  # an unknown keyword
        parser.error(f"--policy-param: policy {args.policy!r} does not take that parameter ({exc})")


def storage_params(specs: list[str]) -> dict[str, Any]:
    """`KEY=JSON` pairs (ValueError naming the bad one)."""
    out: dict[str, Any] = {}
    for spec in specs:
        key, sep, raw = spec.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--storage-param {spec!r}: write KEY=JSON, e.g. sync=true")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            raise ValueError(f"--storage-param {key}: {raw[:80]!r} is not JSON") from None
    return out


def engine_params(args: argparse.Namespace) -> dict[str, Any]:
    extra = storage_params(args.storage_param)
    if args.storage == "leveldb":
        if not args.path:
            raise SystemExit("--storage leveldb needs --path DIR (the LevelDB directory)")
        return {"path": args.path, "sync": args.sync} | extra
    if args.storage == "postgres":
        if not args.dsn:
            raise SystemExit("--storage postgres needs --dsn DSN (e.g. postgresql://user@127.0.0.1:5432/db)")
        return {"dsn": args.dsn, "pool_size": args.pool_size} | extra
    return extra


def build_authenticator(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Any:
    """The authenticator `--auth` names, built now so a bad spec or file is a usage error."""
    from loam.auth import create_authenticator

    if args.auth is None:
        return None
    try:
        return create_authenticator(args.auth)
    except LoamError as exc:
        parser.error(str(exc))


async def serve(args: argparse.Namespace, policy: Any = None, authenticator: Any = None) -> None:
    from loam.node.durable import DurableNode
    from loam.protocol.codec import DEFAULT_MAX_SIZE
    from loam.storage import create_engine
    from loam.transport.service import DEFAULT_MAX_PENDING, DEFAULT_MAX_SUBSCRIPTIONS
    from loam.transport.websocket import NodeServer

    storage = create_engine(args.storage, **engine_params(args))
    node = DurableNode(storage, policy=policy, node_id=args.node_id)
    await node.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = NodeServer(
        node,
        args.host,
        args.port,
        token=args.token,
        max_size=DEFAULT_MAX_SIZE if args.max_message_size is None else args.max_message_size,
        max_pending=DEFAULT_MAX_PENDING if args.max_pending is None else args.max_pending,
        max_pending_bytes=args.max_pending_bytes,
        max_subscriptions=DEFAULT_MAX_SUBSCRIPTIONS if args.max_subscriptions is None else args.max_subscriptions,
        authenticator=authenticator,
    )
    try:
        await server.start()
        print(f"loam serving on {server.url}", flush=True)
        await stop.wait()
    finally:
        await server.close()
        await node.close("server shutting down")  # closes storage


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_numbers(parser, args)
    try:
        storage_params(args.storage_param)
    except ValueError as exc:
        parser.error(str(exc))
    policy = build_policy(parser, args)
    authenticator = build_authenticator(parser, args)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        asyncio.run(serve(args, policy, authenticator))
    except LoamError as exc:
        print(f"loam serve: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # port in use, permission
        print(f"loam serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
