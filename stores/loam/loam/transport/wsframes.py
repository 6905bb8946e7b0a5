"""RFC 6455 framing for the one frame shape loam's hot path sends: a final, unmasked
binary frame without extensions (server -> client). Sans-I/O, no state.

`websockets` frames and parses everything else (handshake, control frames, client
frames, which must be masked, fragments, closing). On the commit -> notification path its
general machinery (a `Frame` object, a generator-based parser, an event list) costs a few
microseconds per message, a noticeable share of a ~50 us lag; these two functions do the
same work for this one shape. `WebSocketChannel` and the client connection use them only
when `websockets`' own state says nothing else is going on (see websocket.py), and
tests/test_wsframes.py checks them against `websockets`' serializer and parser.
"""

from __future__ import annotations

_FIN_BINARY = 0x82  # FIN set, RSV1-3 clear, opcode 0x2 (binary)


def binary_frame(payload: bytes) -> bytes:
    """`payload` as one final, unmasked binary frame (header + payload)."""
    n = len(payload)
    if n < 126:
        return bytes((_FIN_BINARY, n)) + payload
    if n < 65536:
        return bytes((_FIN_BINARY, 126)) + n.to_bytes(2, "big") + payload
    return bytes((_FIN_BINARY, 127)) + n.to_bytes(8, "big") + payload


def split_binary_frames(data: bytes, max_size: int | None) -> tuple[list[bytes], int]:
    """The payloads of the complete, final, unmasked binary frames at the start of `data`
    (at most `max_size` bytes each, when set), and the offset where the first frame of
    any other kind, an oversized or an incomplete one begins (`len(data)` if none)."""
    out: list[bytes] = []
    i = 0
    end = len(data)
    while end - i >= 2:
        if data[i] != _FIN_BINARY:
            break
        n = data[i + 1]  # the mask bit is the top bit: any masked frame stops here too
        h = 2
        if n == 126:
            if end - i < 4:
                break
            n = int.from_bytes(data[i + 2 : i + 4], "big")
            h = 4
        elif n == 127:
            if end - i < 10:
                break
            n = int.from_bytes(data[i + 2 : i + 10], "big")
            h = 10
        elif n > 127:
            break
        if (max_size is not None and n > max_size) or end - i - h < n:
            break
        out.append(data[i + h : i + h + n])
        i += h + n
    return out, i
