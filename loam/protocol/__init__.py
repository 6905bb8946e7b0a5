"""loam's wire protocol, sans-I/O: `messages` (dataclasses; Notify a msgspec Struct),
`codec` (orjson out, msgspec or orjson in; strict, size limit), `matching` (request ids
-> replies, timeouts), `session` (server handshake/auth state). Transports live in
`loam.transport`. See docs/protocol.md."""
