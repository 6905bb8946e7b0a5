"""sprout's asv benchmark suite (see asv.conf.json and docs/asv.md).

`anchors` measures the raw libraries under loam; the other modules measure loam through the
harness. Shared payloads, sizes and skip helpers live in `_common`.
"""
