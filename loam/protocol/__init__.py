"""loam's wire protocol, sans-I/O: `messages` (dataclasses), `codec` (orjson, strict, size
limit), `matching` (request ids -> replies, timeouts), `session` (server handshake/auth
state). Transports live in `loam.transport`. See docs/protocol.md."""
