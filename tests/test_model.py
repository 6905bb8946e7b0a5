"""loam.model: property validation and entity ids."""

from __future__ import annotations

import math

import pytest

from loam.errors import ValidationError
from loam.model import IdGenerator, check_props


@pytest.mark.parametrize(
    "props, message",
    [
        ({"id": 1}, "reserved"),
        ({"": 1}, "non-empty strings"),
        ({1: 2}, "non-empty strings"),
        ({"a": math.nan}, "not a finite number"),
        ({"a": math.inf}, "not a finite number"),
        ({"a": -math.inf}, "not a finite number"),
        ({"a": [1]}, "list is not allowed"),
        ({"a": {"b": 1}}, "dict is not allowed"),
        ({"a": b"x"}, "bytes is not allowed"),
        ([("a", 1)], "must be a dict"),
    ],
)
def test_check_props_rejects_with_the_field_named(props, message):
    with pytest.raises(ValidationError, match=message):
        check_props(props)


def test_check_props_accepts_every_json_scalar():
    props = {"s": "x", "i": -3, "f": 2.5, "t": True, "n": None, "big": 10**30, "z": 0.0}
    assert check_props(props) is props


def test_ids_sort_by_creation_and_are_unique():
    gen, other = IdGenerator(), IdGenerator()
    ids = [gen.new() for _ in range(2000)] + gen.new_many(2000)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(len(i) == 26 for i in ids)
    assert not set(ids) & {other.new() for _ in range(2000)}
