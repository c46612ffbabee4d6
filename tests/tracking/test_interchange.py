"""InterchangeValue and the HL7 date/time conversions: pure, no I/O."""

from __future__ import annotations

import pickle
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from tidemark.tracking import HL7_NULL, InterchangeValue, parse_hl7_date, parse_hl7_datetime


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


def test_from_hl7_maps_empty_to_unknown_null_to_delete_and_text_to_value():
    assert InterchangeValue.from_hl7("") is InterchangeValue.unknown()
    assert InterchangeValue.from_hl7(None) is InterchangeValue.unknown()
    assert InterchangeValue.from_hl7(HL7_NULL) is InterchangeValue.delete()
    assert InterchangeValue.from_hl7('""') is InterchangeValue.delete()
    assert InterchangeValue.from_hl7(" SMITH ") == InterchangeValue.of(" SMITH ")


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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024", datetime(2024, 1, 1, tzinfo=UTC)),
        ("202403", datetime(2024, 3, 1, tzinfo=UTC)),
        ("20240305", datetime(2024, 3, 5, tzinfo=UTC)),
        ("2024030508", datetime(2024, 3, 5, 8, tzinfo=UTC)),
        ("202403050815", datetime(2024, 3, 5, 8, 15, tzinfo=UTC)),
        ("20240305081502", datetime(2024, 3, 5, 8, 15, 2, tzinfo=UTC)),
        ("20240305081502.25", datetime(2024, 3, 5, 8, 15, 2, 250000, tzinfo=UTC)),
        (
            "20240305081502+0130",
            datetime(2024, 3, 5, 8, 15, 2, tzinfo=timezone(timedelta(hours=1, minutes=30))),
        ),
        ("20240305081502-0500", datetime(2024, 3, 5, 13, 15, 2, tzinfo=UTC)),
    ],
)
def test_hl7_timestamps_parse_to_aware_datetimes(text, expected):
    parsed = parse_hl7_datetime(text)
    assert parsed == expected
    assert parsed.tzinfo is not None


def test_hl7_timestamp_without_offset_is_read_in_the_default_zone():
    london = ZoneInfo("Europe/London")
    summer = parse_hl7_datetime("20240701120000", london)
    assert summer.astimezone(UTC) == datetime(2024, 7, 1, 11, 0, tzinfo=UTC)
    assert parse_hl7_datetime("20240701120000+0000", london).utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    ["", "24", "2024-03-05", "20241305", "20240230", "2024030525", "20240305081502+2500", "2024x"],
)
def test_malformed_hl7_timestamps_raise_value_error_naming_the_text(text):
    with pytest.raises(ValueError, match="not an HL7 timestamp"):
        parse_hl7_datetime(text)


def test_hl7_date_ignores_the_time_part():
    assert parse_hl7_date("19720814") == date(1972, 8, 14)
    assert parse_hl7_date("197208142359+1200") == date(1972, 8, 14)
