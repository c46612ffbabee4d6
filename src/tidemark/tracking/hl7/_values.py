"""HL7 v2 values: a field's text as an InterchangeValue, TS/DTM and DT texts as datetimes and dates."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Final

from tidemark.tracking import InterchangeValue

#: The HL7 v2 explicit null: a field holding two double quotes means "delete the value".
HL7_NULL: Final = '""'


def hl7_value(field: str | None) -> InterchangeValue[str]:
    """Map one HL7 v2 field (or component) text: empty or absent → unknown, ``""`` → delete.

    Any other text is a value, kept exactly as given (no trimming: HL7 spaces may matter).
    """
    if not field:
        return InterchangeValue.unknown()
    if field == HL7_NULL:
        return InterchangeValue.delete()
    return InterchangeValue.of(field)


# DTM/TS: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]. Precision shorter than a day is allowed
# for dates of birth ("1980") and fills the missing parts with their first value.
_HL7_TS = re.compile(
    r"(?P<year>\d{4})(?:(?P<month>\d{2})(?:(?P<day>\d{2})"
    r"(?:(?P<hour>\d{2})(?:(?P<minute>\d{2})(?:(?P<second>\d{2})(?:\.(?P<fraction>\d{1,4}))?)?)?)?)?)?"
    r"(?P<offset>[+-]\d{4})?"
)


def parse_hl7_datetime(text: str, default_tz: tzinfo = UTC) -> datetime:
    """Parse an HL7 v2 TS/DTM value into an aware datetime.

    A value with an offset (``+0100``) keeps it; one without is read in ``default_tz`` (the
    sender's zone: HL7 times are local unless they say otherwise). Raises ``ValueError`` with
    the offending text for anything that is not a valid timestamp.
    """
    match = _HL7_TS.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"not an HL7 timestamp: {text!r} (expected YYYY[MM[DD[HHMM[SS[.S]]]]][+/-ZZZZ])"
        )
    parts = match.groupdict()
    fraction = parts["fraction"] or ""
    try:
        moment = datetime(
            int(parts["year"]),
            int(parts["month"] or 1),
            int(parts["day"] or 1),
            int(parts["hour"] or 0),
            int(parts["minute"] or 0),
            int(parts["second"] or 0),
            int(fraction.ljust(6, "0")) if fraction else 0,
        )
    except ValueError as exc:
        raise ValueError(f"not an HL7 timestamp: {text!r} ({exc})") from None
    offset = parts["offset"]
    if offset is None:
        return moment.replace(tzinfo=default_tz)
    sign = -1 if offset[0] == "-" else 1
    hours, minutes = int(offset[1:3]), int(offset[3:5])
    if hours > 23 or minutes > 59:
        raise ValueError(f"not an HL7 timestamp: {text!r} (bad offset {offset})")
    return moment.replace(tzinfo=timezone(sign * timedelta(hours=hours, minutes=minutes)))


def parse_hl7_date(text: str) -> date:
    """Parse an HL7 v2 DT value (``YYYY[MM[DD]]``, a time part is ignored) into a date.

    Raises ``ValueError`` for anything that is not a valid date.
    """
    return parse_hl7_datetime(text).date()
