"""Safe rendering of user input inside one-line error messages.

A config value can be 100 kB long or carry terminal escape sequences; an error message
quotes it shortened and with control characters escaped, so the message stays one short,
inert line.
"""

from __future__ import annotations

from typing import Any

MAX_SHOWN = 80
"""Characters of a value or a name an error message quotes."""


def _escape(text: str) -> str:
    """`text` with control characters (C0, DEL, C1, line/paragraph separators) escaped as repr does."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)


def clip(text: str, limit: int = MAX_SHOWN) -> str:
    """`text` escaped and cut to about `limit` characters ("..." marks the cut)."""
    out = _escape(text)
    return out if len(out) <= limit else out[: limit - 3] + "..."


def short(value: Any, limit: int = MAX_SHOWN) -> str:
    """`repr(value)` cut to about `limit` characters; never renders a huge value whole."""
    if isinstance(value, str) and len(value) > 4 * limit:
        value = value[: 4 * limit]  # repr of the head only: the rest would be cut anyway
    try:
        text = repr(value)
    except Exception:  # a repr that fails (or a too-large int) must not hide the error itself
        text = f"<{type(value).__name__}>"
    return clip(text, limit)


def name(key: Any, limit: int = MAX_SHOWN) -> str:
    """A mapping key as it appears in a field path: plain when it is a short printable
    name, else shortened and escaped (a key is user input too)."""
    if isinstance(key, str):
        return clip(key, limit)
    return short(key, limit)


def one_line(message: str, limit: int = 1000) -> str:
    """A whole error message as one inert line of at most about `limit` characters."""
    return clip(message, limit)
