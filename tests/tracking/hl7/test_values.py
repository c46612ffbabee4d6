"""HL7 field texts as InterchangeValue, and the HL7 date/time conversions: pure, no I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from tidemark.tracking import InterchangeValue
from tidemark.tracking.hl7 import (
    HL7_NULL,
    PartialDate,
    hl7_value,
    parse_hl7_date,
    parse_hl7_datetime,
)


def test_hl7_value_maps_empty_to_unknown_null_to_delete_and_text_to_value():
    assert hl7_value("") is InterchangeValue.unknown()
    assert hl7_value(None) is InterchangeValue.unknown()
    assert hl7_value(HL7_NULL) is InterchangeValue.delete()
    assert hl7_value('""') is InterchangeValue.delete()
    assert hl7_value(" SMITH ") == InterchangeValue.of(" SMITH ")


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
    assert parse_hl7_date("19720814").to_date() == date(1972, 8, 14)
    assert parse_hl7_date("197208142359+1200") == PartialDate(1972, 8, 14)


@pytest.mark.parametrize(
    ("text", "expected", "iso", "precision"),
    [
        ("1949", PartialDate(1949), "1949", "year"),
        ("194903", PartialDate(1949, 3), "1949-03", "month"),
        ("19490312", PartialDate(1949, 3, 12), "1949-03-12", "day"),
    ],
)
def test_a_partial_hl7_date_keeps_its_precision(text, expected, iso, precision):
    value = parse_hl7_date(text)
    assert value == expected
    assert (value.isoformat(), str(value), value.precision) == (iso, iso, precision)
    assert PartialDate.fromisoformat(iso) == value
    assert value.first_day == date(1949, value.month or 1, value.day or 1)


def test_a_year_is_not_the_first_of_january():
    assert parse_hl7_date("1949") != parse_hl7_date("19490101")
    with pytest.raises(ValueError, match="known only to the year"):
        parse_hl7_date("1949").to_date()


@pytest.mark.parametrize("text", ["", "49", "1949-03", "19491332", "19490230"])
def test_malformed_hl7_dates_raise_value_error(text):
    with pytest.raises(ValueError, match="not an HL7 date"):
        parse_hl7_date(text)


def test_impossible_partial_dates_are_refused():
    with pytest.raises(ValueError, match="needs a month"):
        PartialDate(1949, None, 3)
    with pytest.raises(ValueError):
        PartialDate(1949, 13)
    with pytest.raises(ValueError, match="not a partial ISO date"):
        PartialDate.fromisoformat("1949-3")
