from datetime import UTC, datetime

import pytest

from tidemark.core import (
    EntityTag,
    etag_matches,
    format_http_date,
    iso_utc,
    parse_etags,
    parse_http_date,
    parse_iso_utc,
    version_etag,
)


def test_version_etag_headers():
    assert version_etag(42).header() == '"42"'
    assert version_etag(42, weak=True).header() == 'W/"42"'


def test_parse_etags_forms():
    assert parse_etags(None) is None
    assert parse_etags("  ") is None
    assert parse_etags("*") == []
    assert parse_etags('"1", W/"2"') == [EntityTag("1"), EntityTag("2", True)]
    assert parse_etags("17") == [EntityTag("17")]
    with pytest.raises(ValueError):
        parse_etags('"1" junk "2"')


def test_etag_matches_ignores_weakness_and_star_needs_a_representation():
    current = version_etag(7)
    assert etag_matches('W/"7"', current)
    assert etag_matches('"6", "7"', current)
    assert not etag_matches('"8"', current)
    assert etag_matches("*", current)
    assert not etag_matches("*", None)
    assert not etag_matches(None, current)


def test_http_date_round_trip_drops_microseconds():
    moment = datetime(2024, 3, 5, 6, 7, 8, 999_000, tzinfo=UTC)
    text = format_http_date(moment)
    assert text == "Tue, 05 Mar 2024 06:07:08 GMT"
    assert parse_http_date(text) == moment.replace(microsecond=0)
    assert parse_http_date("Tuesday, 05-Mar-24 06:07:08 GMT") == moment.replace(microsecond=0)
    assert parse_http_date("not a date") is None
    assert parse_http_date(None) is None


def test_iso_utc_ends_in_z_and_parses_back():
    moment = datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)
    assert iso_utc(moment) == "2024-01-02T03:04:05.123000Z"
    assert iso_utc(moment, timespec="milliseconds") == "2024-01-02T03:04:05.123Z"
    assert parse_iso_utc("2024-01-02T04:04:05.123+01:00") == moment
    with pytest.raises(ValueError):
        iso_utc(datetime(2024, 1, 1))  # naive datetimes are refused
