from datetime import UTC, datetime

import pytest

from tidemark.fhir.search import (
    date_interval,
    fold,
    number_interval,
    split_bars,
    split_prefix,
    split_values,
    value_interval,
)


def _epoch(year: int, month: int, day: int, *time: int) -> float:
    hour, minute, second = (*time, 0, 0, 0)[:3]
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("1949", _epoch(1949, 1, 1), _epoch(1950, 1, 1)),
        ("2024-02", _epoch(2024, 2, 1), _epoch(2024, 3, 1)),
        ("2024-02-29", _epoch(2024, 2, 29), _epoch(2024, 3, 1)),
        ("2024-03-01T10:00Z", _epoch(2024, 3, 1, 10), _epoch(2024, 3, 1, 10, 1)),
        ("2024-03-01T10:00:05+02:00", _epoch(2024, 3, 1, 8, 0, 5), _epoch(2024, 3, 1, 8, 0, 6)),
    ],
)
def test_a_date_covers_every_instant_of_its_precision(text, low, high):
    interval = date_interval(text)
    assert interval.low == low
    assert high - 1e-5 < interval.high < high


def test_a_fraction_of_a_second_covers_its_own_precision():
    interval = date_interval("2024-03-01T10:00:05.1Z")
    assert interval.low == pytest.approx(_epoch(2024, 3, 1, 10, 0, 5) + 0.1)
    assert interval.high == pytest.approx(_epoch(2024, 3, 1, 10, 0, 5) + 0.2, abs=1e-5)


def test_the_largest_instant_with_the_largest_offset_is_in_range():
    interval = date_interval("9999-12-31T23:59:59.999999-14:00")
    assert interval.low > _epoch(9999, 12, 31, 23)


@pytest.mark.parametrize(
    "text",
    [
        "0000",
        "2024-13",
        "2023-02-29",
        "2024-01-01T24:00Z",
        "2024-01-01T10:00+15:00",
        "2024-01-01T10:00+14:30",
        "20240101",
        "next week",
    ],
)
def test_malformed_or_out_of_range_dates_are_rejected(text):
    with pytest.raises(ValueError, match=repr(text)[1:-1][:4]):
        date_interval(text)


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [("100", 99.5, 100.5), ("1.5", 1.45, 1.55), ("-2", -2.5, -1.5), ("1e2", 50.0, 150.0)],
)
def test_a_number_search_value_has_the_precision_it_is_written_with(text, low, high):
    interval = number_interval(text)
    assert (interval.low, interval.high) == pytest.approx((low, high))


@pytest.mark.parametrize("text", ["1e400", "99999999999999999999" * 20, "1.2.3", "ten", "NaN"])
def test_numbers_out_of_range_or_malformed_are_rejected(text):
    with pytest.raises(ValueError):
        number_interval(text)


def test_a_stored_number_has_the_precision_of_its_json():
    assert (value_interval(72).low, value_interval(72).high) == (71.5, 72.5)
    assert value_interval(0.25).low == pytest.approx(0.245)


def test_prefixes_split_only_before_a_value():
    assert split_prefix("ge2020") == ("ge", "2020")
    assert split_prefix("2020") == ("eq", "2020")
    assert split_prefix("apx") == ("eq", "apx")
    # DSTU1 signs, as fhirclient still sends them
    assert split_prefix(">=2020") == ("ge", "2020")
    assert split_prefix("<2020") == ("lt", "2020")


def test_commas_and_bars_split_unless_escaped():
    assert split_values(r"a,b\,c,") == ["a", r"b\,c"]
    assert split_bars(r"http://s|a\|b") == ["http://s", "a|b"]


def test_strings_fold_case_accents_and_spacing():
    assert fold("  Élise   DE la Cruz ") == "elise de la cruz"
