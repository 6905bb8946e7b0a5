"""memstack: an in-memory document store with live queries, plugged into sprout as a stack."""

__version__ = "0.1.0"
