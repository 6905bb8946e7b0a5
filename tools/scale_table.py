"""The per-step table of connection-scaling reports, as docs/scaling.md quotes it.

    python tools/scale_table.py label=report.json [label=report.json ...]

For each report: per step (connections), the commit -> notification lag (p50 / p99, ms) from
the store's stamp and from the writer's send, the server's memory per connection (from the
harness's RSS when the server runs in it, else from the server process), the clients' memory
per connection, and where the server and the clients ran.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _ms(v: Any) -> str:
    return "-" if v is None else f"{v:.1f}"


def rows(label: str, report: dict[str, Any]) -> list[str]:
    phase = next(p for p in report["phases"] if p["name"].startswith("connection-scaling"))
    lags = phase.get("lags", {})
    out = []
    for step in phase["extra"]["steps"]:
        c = step["connections"]
        server = step.get("server_rss_per_connection_bytes", step.get("rss_per_connection_bytes"))
        send = lags.get(f"send_to_notify@{c}")
        send_p = _percentiles(send)
        out.append(
            f"| {label} | {c:,} | {_ms(step['lag']['p50_ms'])} / {_ms(step['lag']['p99_ms'])} | "
            f"{send_p} | {server / 1024:.1f} | "
            f"{(step.get('client_rss_per_connection_bytes') or 0) / 1024:.1f} |"
        )
    return out


def _percentiles(h: dict[str, Any] | None) -> str:
    if not h:
        return "-"
    from sprout_harness.metrics.histogram import Histogram

    hist = Histogram.from_dict(h)
    if not hist.count:
        return "-"
    p50, p99 = hist.percentiles([50.0, 99.0])
    return f"{p50 / 1e6:.1f} / {p99 / 1e6:.1f}"


def main(argv: list[str]) -> int:
    print(
        "| run | connections | lag p50 / p99 (ms), store stamp | from the writer's send | "
        "server KiB / conn | client KiB / conn |"
    )
    print("|---|---|---|---|---|---|")
    for arg in argv:
        label, _, path = arg.partition("=")
        report = json.loads(Path(path).read_text())
        print("\n".join(rows(label, report)))
        notes = [n for n in report["metadata"]["notes"] if "durables=" in n or "placement" in n]
        other = report["metadata"]["host"].get("other_cpu_share")
        print(
            f"<!-- {label}: wall {report['metadata']['ended_at'] - report['metadata']['started_at']:.0f} s, "
            f"other processes' CPU share {other}, {'; '.join(notes) or 'server in the harness process'} -->"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
