"""loam: the reference reactive document store that sprout measures.

Entities live in collections; every write is an event merged last-writer-wins per
property; durable nodes own a storage engine, ephemeral nodes cache and subscribe.
"""

__version__ = "0.2.0"
