"""Sans-I/O server-side session: handshake, auth and which live queries the peer holds.

The session turns received bytes into either a message to act on or a `Reject` (send
this error, then close the connection). It never performs I/O, so every transport
(in-process, WebSocket) shares it.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from loam.auth import Authenticator
from loam.errors import PolicyDenied, ProtocolError, ValidationError
from loam.model import Context, collection_error, id_error
from loam.protocol import codec
from loam.protocol import messages as m

# Messages a client may send once the handshake is done.
_CLIENT_REQUESTS = frozenset({"commit", "get", "fetch", "subscribe", "unsubscribe", "ping"})


@dataclass(slots=True)
class Reject:
    """Protocol violation: send `error`, then close the connection with `reason`."""

    error: m.Error
    reason: str


class ServerSession:
    """State of one client connection on the server: "handshake" -> "open" -> "closed"."""

    def __init__(
        self,
        server_node_id: str,
        token: str | None = None,
        max_size: int = codec.DEFAULT_MAX_SIZE,
        authenticator: Authenticator | None = None,
    ):
        self.server_node_id = server_node_id
        self.token = token
        self.authenticator = authenticator
        self.user: str | None = None  # bound at hello by the authenticator
        self.max_size = max_size
        self.state = "handshake"
        self.peer_node_id: str | None = None
        self.queries: set[str] = set()  # server-side live query ids this peer holds

    def receive(self, data: bytes | str) -> m.Message | Reject:
        """Decode and check one incoming message against the session state."""
        if self.state == "closed":
            return self._reject(None, "unexpected", "connection is closed")
        try:
            msg = codec.decode(data, self.max_size)
        except ProtocolError as exc:
            if len(data) > self.max_size and "limit" in str(exc):
                return self._reject(None, "too_large", str(exc))
            # The reply names the request when its rid is readable and in range.
            return self._reject(codec.request_id(data), "malformed", str(exc))
        rid = getattr(msg, "rid", None)
        if self.state == "handshake":
            if not isinstance(msg, m.Hello):
                return self._reject(rid, "unexpected", f"expected hello as the first message, got {msg.TYPE}")
            if msg.version != m.PROTOCOL_VERSION:
                return self._reject(
                    rid,
                    "version",
                    f"protocol version {msg.version} is not supported; "
                    f"this server speaks version {m.PROTOCOL_VERSION} (upgrade loam on one side)",
                )
            if self.token is not None and not (
                msg.token is not None and hmac.compare_digest(msg.token.encode(), self.token.encode())
            ):
                return self._reject(
                    rid, "auth", "wrong or missing token; pass the token the server was started with (--token)"
                )
            if self.authenticator is not None:
                self.user = self.authenticator.authenticate(msg.token)
                if self.user is None:
                    return self._reject(
                        rid,
                        "auth",
                        "unknown or missing token: this server authenticates "
                        "every connection; present a token it was given (--auth)",
                    )
            self.state = "open"
            self.peer_node_id = msg.node_id
            return msg
        if msg.TYPE not in _CLIENT_REQUESTS:
            return self._reject(
                rid,
                "unexpected",
                f"a client may not send {msg.TYPE} messages (allowed: {', '.join(sorted(_CLIENT_REQUESTS))})",
            )
        return msg

    def check_request(self, msg: m.Message) -> None:
        """ValidationError if a request names an entity id or collection outside the wire
        syntax (`loam.model.id_error` / `collection_error`); the connection stays open.

        On an authenticated connection the request is bound to the connection's user: a
        context naming nobody is served as that user, one naming another user is refused
        (PolicyDenied, nothing read or written)."""
        t = type(msg)
        if self.user is not None and t in (m.Commit, m.Get, m.Fetch, m.Subscribe):
            ctx = msg.ctx  # type: ignore[union-attr]
            if ctx.user is None:
                msg.ctx = Context(self.user, ctx.data)  # type: ignore[union-attr]
            elif ctx.user != self.user:
                raise PolicyDenied(
                    f"this connection is authenticated as {self.user!r}; a request may not act as {ctx.user!r}"
                )
        if t is m.Commit:
            seen = None
            for op in msg.tx.ops:  # type: ignore[union-attr]
                if op.collection != seen:  # a transaction's ops mostly share one collection
                    _check(collection_error(op.collection))
                    seen = op.collection
                _check(id_error(op.id))
        elif t is m.Get:
            _check(collection_error(msg.collection))  # type: ignore[union-attr]
            _check(id_error(msg.id))  # type: ignore[union-attr]
        elif t is m.Fetch or t is m.Subscribe:
            _check(collection_error(msg.collection))  # type: ignore[union-attr]

    def welcome(self, hello: m.Hello, clock: int) -> m.Welcome:
        return m.Welcome(hello.rid, self.server_node_id, clock, m.PROTOCOL_VERSION, self.max_size)

    def _reject(self, rid: int | None, code: m.ErrorCode, message: str) -> Reject:
        self.state = "closed"
        return Reject(m.Error(rid, code, message), f"{code}: {message}"[:120])

    def add_query(self, query_id: str) -> None:
        self.queries.add(query_id)

    def remove_query(self, query_id: str) -> bool:
        if query_id in self.queries:
            self.queries.discard(query_id)
            return True
        return False

    def close(self) -> set[str]:
        """Mark closed; returns the live query ids to release."""
        self.state = "closed"
        held, self.queries = self.queries, set()
        return held


def _check(error: str | None) -> None:
    if error is not None:
        raise ValidationError(error)
