"""Who a connection is: authenticators map the token a client presents in its `hello` to a user.

A server with an authenticator binds that user to the connection: every request is served
as that user (a request naming another user is refused), so the policy agent judges the
authenticated user, not whatever a client writes into its requests. Without one, a server
trusts the user each request names (benchmarks, trusted networks; docs/security.md).

`token-file:PATH` (`loam serve --auth token-file:PATH`): one `TOKEN USER` pair per line,
separated by whitespace; blank lines and lines starting with `#` are ignored. The file is
read once, at start.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Protocol, runtime_checkable

from loam.errors import ValidationError


@runtime_checkable
class Authenticator(Protocol):
    def authenticate(self, token: str | None) -> str | None:
        """The user `token` authenticates, or None (the connection is refused)."""
        ...


class TokenFileAuthenticator:
    """Tokens and their users from a file (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValidationError(f"token file {str(p)!r}: cannot read it ({exc})") from None
        self.users: dict[str, str] = {}
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValidationError(
                    f"token file {str(p)!r} line {n}: expected `TOKEN USER`, got {len(parts)} field(s)"
                )
            token, user = parts
            if token in self.users:
                raise ValidationError(f"token file {str(p)!r} line {n}: a token appears twice")
            self.users[token] = user
        if not self.users:
            raise ValidationError(f"token file {str(p)!r} holds no `TOKEN USER` line")

    def authenticate(self, token: str | None) -> str | None:
        if token is None:
            return None
        found = None
        for known, user in self.users.items():  # compare every token in constant time
            if hmac.compare_digest(known.encode(), token.encode()):
                found = user
        return found


def create_authenticator(spec: str) -> Authenticator:
    """An authenticator from its spec: `token-file:PATH`."""
    kind, sep, arg = spec.partition(":")
    if kind == "token-file" and sep and arg:
        return TokenFileAuthenticator(arg)
    raise ValidationError(f"--auth {spec!r}: expected token-file:PATH")
