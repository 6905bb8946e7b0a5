"""Tokenizer for loam's query language.

Tokens carry their 0-based start offset so the parser can point at the culprit.
Keywords are recognised case-insensitively from bare identifiers; a double-quoted
identifier is never a keyword (that is how a field called `order` is written).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from loam.errors import QueryError

TokenKind = Literal[
    "ident",  # bare identifier (not a keyword)
    "qident",  # double-quoted identifier
    "keyword",  # AND OR NOT IN ORDER BY ASC DESC LIMIT TRUE FALSE NULL (value upper-cased)
    "string",
    "number",
    "op",  # = != <> < <= > >=
    "(",
    ")",
    ",",
    "eof",
]

KEYWORDS = frozenset({"AND", "OR", "NOT", "IN", "ORDER", "BY", "ASC", "DESC", "LIMIT", "TRUE", "FALSE", "NULL"})


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    value: object  # str for names/keywords/ops/strings, int | float for numbers
    pos: int
    end: int

    def describe(self) -> str:
        """How the token is named in error messages."""
        if self.kind == "eof":
            return "end of query"
        if self.kind == "string":
            return f"string {self.value!r}"
        if self.kind == "qident":
            return f'"{self.value}"'
        return repr(str(self.value))


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DIGITS = frozenset("0123456789")
_WS = re.compile(r"\s+")
_OPS = ("<=", ">=", "!=", "<>", "=", "<", ">")
_STRING_ESCAPES = {"'": "'", "\\": "\\"}
_QIDENT_ESCAPES = {'"': '"', "\\": "\\"}


def tokenize(text: str) -> list[Token]:
    """Split `text` into tokens, ending with an `eof` token; raise QueryError on bad input."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while True:
        m = _WS.match(text, i)
        if m:
            i = m.end()
        if i >= n:
            tokens.append(Token("eof", None, n, n))
            return tokens
        c = text[i]
        if c == "'":
            value, end = _quoted(text, i, "'", _STRING_ESCAPES, "string literal")
            tokens.append(Token("string", value, i, end))
            i = end
        elif c == '"':
            value, end = _quoted(text, i, '"', _QIDENT_ESCAPES, "quoted field name")
            if not value:
                raise QueryError('empty quoted field name ""; a field name needs at least one character', i, text)
            tokens.append(Token("qident", value, i, end))
            i = end
        elif c in _DIGITS or (
            c in "-." and i + 1 < n and (text[i + 1] in _DIGITS or (text[i + 1] == "." and c == "-"))
        ):
            m = _NUMBER.match(text, i)
            if m is None:
                raise QueryError(f"malformed number {text[i : i + 2]!r}", i, text)
            end = m.end()
            if end < n and (text[end].isalnum() or text[end] in "_."):
                raise QueryError(
                    f"malformed number {text[i : end + 1]!r}; separate a number from what follows with a space",
                    i,
                    text,
                )
            tokens.append(Token("number", _number(m.group(), i, text), i, end))
            i = end
        elif c.isalpha() or c == "_":
            m = _IDENT.match(text, i)
            if m is None:  # a non-ASCII letter: names outside [A-Za-z_] must be quoted
                raise QueryError(
                    f"unexpected character {c!r}; write field names with other characters in double quotes",
                    i,
                    text,
                )
            word = m.group()
            upper = word.upper()
            if upper in KEYWORDS:
                tokens.append(Token("keyword", upper, i, m.end()))
            else:
                tokens.append(Token("ident", word, i, m.end()))
            i = m.end()
        elif c in "(),":
            tokens.append(Token(c, c, i, i + 1))  # type: ignore[arg-type]
            i += 1
        else:
            for op in _OPS:
                if text.startswith(op, i):
                    tokens.append(Token("op", "!=" if op == "<>" else op, i, i + len(op)))
                    i += len(op)
                    break
            else:
                raise QueryError(f"unexpected character {c!r}", i, text)


def _quoted(text: str, start: int, quote: str, escapes: dict[str, str], what: str) -> tuple[str, int]:
    """Read a quoted token starting at `start`: doubled quote or backslash escapes inside."""
    out: list[str] = []
    i, n = start + 1, len(text)
    while i < n:
        c = text[i]
        if c == quote:
            if i + 1 < n and text[i + 1] == quote:
                out.append(quote)
                i += 2
                continue
            return "".join(out), i + 1
        if c == "\\":
            if i + 1 >= n:
                break
            nxt = text[i + 1]
            if nxt not in escapes:
                raise QueryError(
                    f"unsupported escape '\\{nxt}' in {what}; only \\{quote} and \\\\ are escapes "
                    f"(write a backslash as \\\\)",
                    i,
                    text,
                )
            out.append(escapes[nxt])
            i += 2
            continue
        out.append(c)
        i += 1
    raise QueryError(f"unterminated {what} (missing closing {quote})", start, text)


def _number(lexeme: str, pos: int, text: str) -> int | float:
    if "." in lexeme or "e" in lexeme or "E" in lexeme:
        value = float(lexeme)
        if not math.isfinite(value):
            raise QueryError(f"number {lexeme} is out of range (JSON numbers must be finite)", pos, text)
        return value
    try:
        return int(lexeme)
    except ValueError:  # more digits than Python's int-parsing limit
        raise QueryError(f"integer {lexeme[:20]}... has too many digits", pos, text) from None
