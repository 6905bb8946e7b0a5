"""loam's wire protocol, sans-I/O (no asyncio, sockets or `websockets` here): `messages`
(the message types, msgspec Structs: the one wire schema), `codec` (bytes <-> those
Structs; strict, size and depth limits), `matching` (request ids -> replies, error replies -> exceptions),
`session` (server handshake/auth state). Transports, futures and timers live in
`loam.transport`. See docs/protocol.md."""
