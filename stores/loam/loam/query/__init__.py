"""loam's query language: text -> `Query` AST, Python evaluation, PostgreSQL compilation.

See docs/query-language.md for the syntax and the one total order every engine follows.
"""

from loam.query.ast import And, Compare, Expr, In, Not, Or, OrderKey, Query
from loam.query.parser import parse, parse_or_query

__all__ = ["And", "Compare", "Expr", "In", "Not", "Or", "OrderKey", "Query", "parse", "parse_or_query"]
