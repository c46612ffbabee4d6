"""HL7 v2 values: a field's text as an InterchangeValue, TS/DTM texts as datetimes, DT texts as
dates that keep their precision."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Final, Literal

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


@dataclass(frozen=True, slots=True)
class PartialDate:
    """A date known to the year, the month or the day: HL7 DT ``1949``, ``194903``, ``19490312``.

    ``1949`` is not 1949-01-01: the year is all the sender knows. :meth:`isoformat` gives the
    ISO 8601 text of the known part (``1949``, ``1949-03``, ``1949-03-12``, as FHIR ``date``
    does), which is also how the ADT tables store it. Raises ``ValueError`` for an impossible
    date or a day without a month.
    """

    year: int
    month: int | None = None
    day: int | None = None

    def __post_init__(self) -> None:
        if self.day is not None and self.month is None:
            raise ValueError("a partial date with a day needs a month")
        date(self.year, self.month or 1, self.day or 1)  # raises ValueError when impossible

    @property
    def precision(self) -> Literal["year", "month", "day"]:
        """How much of the date is known."""
        if self.day is not None:
            return "day"
        return "month" if self.month is not None else "year"

    @property
    def first_day(self) -> date:
        """The earliest date the value allows (1949 → 1949-01-01)."""
        return date(self.year, self.month or 1, self.day or 1)

    def to_date(self) -> date:
        """The date; raises ``ValueError`` unless the day is known."""
        if self.day is None:
            raise ValueError(f"{self.isoformat()} is known only to the {self.precision}")
        return self.first_day

    def isoformat(self) -> str:
        """``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``."""
        text = f"{self.year:04d}"
        if self.month is not None:
            text += f"-{self.month:02d}"
        if self.day is not None:
            text += f"-{self.day:02d}"
        return text

    @classmethod
    def fromisoformat(cls, text: str) -> PartialDate:
        """Read what :meth:`isoformat` wrote; raises ``ValueError`` for anything else."""
        match = _ISO_PARTIAL.fullmatch(text)
        if match is None:
            raise ValueError(f"not a partial ISO date: {text!r}")
        year, month, day = match.groups()
        return cls(int(year), int(month) if month else None, int(day) if day else None)

    def __str__(self) -> str:
        return self.isoformat()


_ISO_PARTIAL = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


def parse_hl7_date(text: str) -> PartialDate:
    """Parse an HL7 v2 DT value (``YYYY[MM[DD]]``; a time part is ignored) keeping its precision.

    Raises ``ValueError`` for anything that is not a valid date.
    """
    match = _HL7_TS.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not an HL7 date: {text!r} (expected YYYY[MM[DD]])")
    parts = match.groupdict()
    try:
        return PartialDate(
            int(parts["year"]),
            int(parts["month"]) if parts["month"] else None,
            int(parts["day"]) if parts["day"] else None,
        )
    except ValueError as exc:
        raise ValueError(f"not an HL7 date: {text!r} ({exc})") from None
