"""InterchangeValue: pure, no I/O."""

from __future__ import annotations

import pickle

import pytest

from tidemark.tracking import InterchangeValue


def test_the_three_states_are_exclusive():
    unknown, delete, save = (
        InterchangeValue.unknown(),
        InterchangeValue.delete(),
        InterchangeValue.of(3),
    )
    assert (unknown.is_unknown, unknown.is_delete, unknown.is_save) == (True, False, False)
    assert (delete.is_unknown, delete.is_delete, delete.is_save) == (False, True, False)
    assert (save.is_unknown, save.is_delete, save.is_save) == (False, False, True)


def test_of_none_raises_and_points_to_delete():
    with pytest.raises(ValueError, match="delete"):
        InterchangeValue.of(None)


@pytest.mark.parametrize("value", [InterchangeValue.unknown(), InterchangeValue.delete()])
def test_get_raises_on_unknown_and_on_delete(value):
    with pytest.raises(LookupError):
        value.get()


def test_get_returns_a_saved_value_even_when_falsy():
    assert InterchangeValue.of(0).get() == 0
    assert InterchangeValue.of("").get() == ""
    assert InterchangeValue.of(False).get() is False


def test_applied_to_keeps_current_on_unknown_nulls_on_delete_and_replaces_on_save():
    assert InterchangeValue.unknown().applied_to("old") == "old"
    assert InterchangeValue.delete().applied_to("old") is None
    assert InterchangeValue.of("new").applied_to("old") == "new"


def test_get_or_gives_the_default_for_unknown_and_delete():
    assert InterchangeValue.unknown().get_or(7) == 7
    assert InterchangeValue.delete().get_or(7) == 7
    assert InterchangeValue.of(1).get_or(7) == 1


def test_map_converts_saved_values_only():
    assert InterchangeValue.of("42").map(int) == InterchangeValue.of(42)
    assert InterchangeValue.unknown().map(int).is_unknown
    assert InterchangeValue.delete().map(int).is_delete


def test_map_refuses_a_conversion_to_none_and_propagates_errors():
    with pytest.raises(ValueError, match="None"):
        InterchangeValue.of("x").map(lambda _text: None)
    with pytest.raises(ValueError):
        InterchangeValue.of("x").map(int)


def test_values_are_immutable_hashable_and_picklable():
    value = InterchangeValue.of("a")
    with pytest.raises(AttributeError):
        value._value = "b"
    assert {value, InterchangeValue.of("a"), InterchangeValue.delete()} == {
        InterchangeValue.of("a"),
        InterchangeValue.delete(),
    }
    assert pickle.loads(pickle.dumps(value)) == value
    assert pickle.loads(pickle.dumps(InterchangeValue.unknown())) is InterchangeValue.unknown()


def test_of_nullable_turns_none_into_delete():
    assert InterchangeValue.of_nullable(None).is_delete
    assert InterchangeValue.of_nullable(5) == InterchangeValue.of(5)


def test_repr_names_the_state():
    assert repr(InterchangeValue.of(1)) == "InterchangeValue.of(1)"
    assert repr(InterchangeValue.unknown()) == "InterchangeValue.unknown()"
