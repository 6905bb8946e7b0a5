"""Recursive-descent parser: query text -> `loam.query.ast.Query`.

Grammar (keywords case-insensitive; AND binds tighter than OR, NOT tighter than AND):

    query      := [or_expr] [ORDER BY key ("," key)*] [LIMIT int] EOF
    or_expr    := and_expr (OR and_expr)*
    and_expr   := not_expr (AND not_expr)*
    not_expr   := NOT not_expr | "(" or_expr ")" | comparison
    comparison := field (op value | [NOT] IN "(" [value ("," value)*] ")")
    key        := field [ASC | DESC]
    field      := identifier | "double-quoted name"
    value      := 'string' | number | TRUE | FALSE | NULL
"""

from __future__ import annotations

from functools import lru_cache

from loam.errors import QueryError
from loam.model import Scalar
from loam.query.ast import And, Compare, Expr, In, Not, Or, OrderKey, Query
from loam.query.lexer import Token, tokenize

MAX_DEPTH = 100  # nesting of parentheses/NOT; keeps every recursive consumer far from Python's limit

_CLAUSE_HINT = "AND, OR, ORDER BY, LIMIT or end of query"


class _Parser:
    __slots__ = ("text", "tokens", "i", "depth")

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    # -- token helpers ------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        t = self.tokens[self.i]
        if t.kind != "eof":
            self.i += 1
        return t

    def at_keyword(self, *words: str) -> bool:
        t = self.tok
        return t.kind == "keyword" and t.value in words

    def error(self, message: str, tok: Token | None = None) -> QueryError:
        tok = tok or self.tok
        return QueryError(f"{message}, found {tok.describe()}", tok.pos, self.text)

    def expect(self, kind: str, what: str) -> Token:
        if self.tok.kind != kind:
            raise self.error(f"expected {what}")
        return self.advance()

    # -- grammar ------------------------------------------------------------------------

    def query(self) -> Query:
        where: Expr | None = None
        if not (self.tok.kind == "eof" or self.at_keyword("ORDER", "LIMIT")):
            where = self.or_expr()
        order_by: list[OrderKey] = []
        if self.at_keyword("ORDER"):
            self.advance()
            if not self.at_keyword("BY"):
                raise self.error('expected BY after ORDER (a field named "order" must be written in double quotes)')
            self.advance()
            order_by.append(self.order_key())
            while self.tok.kind == ",":
                self.advance()
                order_by.append(self.order_key())
        limit: int | None = None
        if self.at_keyword("LIMIT"):
            self.advance()
            t = self.tok
            if t.kind != "number" or type(t.value) is not int or t.value < 0:
                raise self.error("expected a non-negative integer after LIMIT")
            limit = t.value
            self.advance()
        if self.tok.kind != "eof":
            if self.tok.kind == ")":
                raise self.error("unbalanced ')': no matching '('")
            expected = (
                "end of query" if limit is not None else ("',', LIMIT or end of query" if order_by else _CLAUSE_HINT)
            )
            raise self.error(f"unexpected token; expected {expected}")
        return Query(where=where, order_by=tuple(order_by), limit=limit, text=self.text)

    def or_expr(self) -> Expr:
        items = [self.and_expr()]
        while self.at_keyword("OR"):
            self.advance()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Expr:
        items = [self.not_expr()]
        while self.at_keyword("AND"):
            self.advance()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_expr(self) -> Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"query nested too deeply (more than {MAX_DEPTH} levels of NOT or parentheses)")
        try:
            if self.at_keyword("NOT"):
                self.advance()
                return Not(self.not_expr())
            if self.tok.kind == "(":
                open_tok = self.advance()
                inner = self.or_expr()
                closing = self.tok  # moved on by or_expr (mypy keeps the narrowing of self.tok)
                if closing.kind != ")":
                    raise self.error(f"expected ')' to close the '(' at position {open_tok.pos}")
                self.advance()
                return inner
            return self.comparison()
        finally:
            self.depth -= 1

    def field(self, what: str) -> str:
        t = self.tok
        if t.kind in ("ident", "qident"):
            self.advance()
            return t.value  # type: ignore[return-value]
        if t.kind == "keyword":
            raise self.error(
                f"expected {what}; {t.value} is a keyword, write a field of that name in double quotes"
                f' ("{str(t.value).lower()}")'
            )
        raise self.error(f"expected {what}")

    def comparison(self) -> Expr:
        name = self.field("a field name or '('")
        t = self.tok
        if t.kind == "op":
            self.advance()
            return Compare(name, t.value, self.value(f"after '{t.value}'"))  # type: ignore[arg-type]
        negated = False
        if self.at_keyword("NOT"):
            self.advance()
            if not self.at_keyword("IN"):
                raise self.error(f"expected IN after NOT (field {name!r})")
            negated = True
        if self.at_keyword("IN"):
            self.advance()
            kw = "NOT IN" if negated else "IN"
            self.expect("(", f"'(' after {kw}")
            values: list[Scalar] = []
            if self.tok.kind != ")":
                values.append(self.value(f"in the {kw} list"))
                while self.tok.kind == ",":
                    self.advance()
                    values.append(self.value(f"after ',' in the {kw} list"))
            if self.tok.kind != ")":
                raise self.error(f"expected ',' or ')' in the {kw} list")
            self.advance()
            return In(name, tuple(values), negated)
        raise self.error(f"expected a comparison (=, !=, <, <=, >, >=, IN, NOT IN) after field {name!r}")

    def value(self, where: str) -> Scalar:
        t = self.tok
        if t.kind in ("string", "number"):
            self.advance()
            return t.value  # type: ignore[return-value]
        if t.kind == "keyword" and t.value in ("TRUE", "FALSE", "NULL"):
            self.advance()
            return {"TRUE": True, "FALSE": False, "NULL": None}[t.value]
        raise self.error(f"expected a value {where} (a 'string', number, true, false or null)")

    def order_key(self) -> OrderKey:
        name = self.field("a field name in ORDER BY")
        descending = False
        if self.at_keyword("ASC", "DESC"):
            descending = self.advance().value == "DESC"
        return OrderKey(name, descending)


@lru_cache(maxsize=4096)
def _parse_cached(text: str) -> Query:
    return _Parser(text).query()


def parse(text: str) -> Query:
    """Parse query text into a `Query` (with `text` set); raise QueryError naming the position.

    Results are cached: the same text is parsed repeatedly by live queries and clients.
    """
    if not isinstance(text, str):
        raise QueryError(f"a query must be a str, got {type(text).__name__}")
    return _parse_cached(text)


def parse_or_query(q: str | Query) -> Query:
    """Accept either query text or an already-built `Query`."""
    if isinstance(q, Query):
        return q
    return parse(q)
