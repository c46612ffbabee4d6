"""FHIR search values as intervals and keys: dates, numbers, quantities, strings (pure)."""

from __future__ import annotations

import calendar
import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

#: Bounds standing for an open end of a Period (about ±31 million years in epoch seconds).
OPEN_LOW = -1e15
OPEN_HIGH = 1e15
#: Prefixes of date, number and quantity search values (FHIR R4 §3.1.1.5.6).
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
#: Longest indexed string (characters); longer values match on their first characters.
MAX_KEY_LENGTH = 256
#: The largest magnitude a number or quantity search value may have.
MAX_NUMBER = 1e300

_DATE = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_NUMBER = re.compile(r"^[+-]?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$")
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")
_UNESCAPED_BAR = re.compile(r"(?<!\\)\|")


@dataclass(frozen=True, slots=True)
class Interval:
    """The closed interval ``[low, high]`` a value covers (epoch seconds for dates)."""

    low: float
    high: float


def date_interval(text: str) -> Interval:
    """The instants a FHIR date, dateTime or instant covers, in epoch seconds.

    ``2024`` covers the whole year, ``2024-03-01T10:00`` the whole minute, ``…:05.1`` a tenth of
    a second; the high end is the last microsecond. A value without an offset is UTC. Raises
    ``ValueError`` (with a message for a client) when malformed or out of range: years
    0001-9999, months, days, hours and offsets within their ranges (``+14:00`` at most).
    """
    match = _DATE.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a FHIR date, dateTime or instant")
    parts = match.groupdict()
    year = int(parts["year"])
    month = int(parts["month"] or 1)
    day = int(parts["day"] or 1)
    hour = int(parts["hour"] or 0)
    minute = int(parts["minute"] or 0)
    second = int(parts["second"] or 0)
    fraction = parts["fraction"] or ""
    if year < 1:
        raise ValueError(f"{text!r}: the year must be between 0001 and 9999")
    if not 1 <= month <= 12:
        raise ValueError(f"{text!r}: the month must be between 01 and 12")
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        raise ValueError(f"{text!r}: there is no day {day:02d} in {year:04d}-{month:02d}")
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"{text!r}: the time of day is out of range")
    offset = _offset_seconds(parts["zone"], text)
    start = datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp() - offset
    if fraction:
        start += int(fraction[:6].ljust(6, "0")) / 1e6
        span = 10.0 ** -min(len(fraction), 6)
    elif parts["second"] is not None:
        span = 1.0
    elif parts["minute"] is not None:
        span = 60.0
    elif parts["day"] is not None:
        span = 86400.0
    elif parts["month"] is not None:
        span = 86400.0 * calendar.monthrange(year, month)[1]
    else:
        span = 86400.0 * (366 if calendar.isleap(year) else 365)
    return Interval(start, start + span - 1e-6)


def _offset_seconds(zone: str | None, text: str) -> float:
    if zone is None or zone == "Z":
        return 0.0
    hours, minutes = int(zone[1:3]), int(zone[4:6])
    if minutes > 59 or hours * 60 + minutes > 14 * 60:
        raise ValueError(f"{text!r}: the time-zone offset must be between -14:00 and +14:00")
    sign = -1 if zone[0] == "-" else 1
    return sign * (hours * 3600 + minutes * 60)


def instant_of(seconds: float) -> datetime:
    """The UTC datetime of an epoch-seconds value (clamped to datetime's range)."""
    low = datetime(1, 1, 1, tzinfo=UTC)
    high = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    if seconds <= low.timestamp():
        return low
    if seconds >= high.timestamp():
        return high
    return datetime.fromtimestamp(seconds, UTC)


def zone_of(text: str) -> timezone:
    """The offset a date text carries (UTC when none)."""
    match = _DATE.match(text.strip())
    zone = match["zone"] if match else None
    return timezone(timedelta(seconds=_offset_seconds(zone, text)))


def number_interval(text: str) -> Interval:
    """The interval a decimal search value denotes by its precision (``100`` → 99.5 to 100.5).

    Raises ``ValueError`` when malformed or beyond ±1e300.
    """
    match = _NUMBER.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a number")
    value = float(text)
    if not math.isfinite(value) or abs(value) > MAX_NUMBER:
        raise ValueError(f"{text!r} is out of range")
    decimals = len(match[2] or "") - int(match[3] or 0)
    half = 0.5 * 10.0**-decimals
    return Interval(value - half, value + half)


def value_interval(value: float | int) -> Interval:
    """The interval a stored JSON number denotes by the precision it was written with."""
    if isinstance(value, bool) or not math.isfinite(value):
        raise ValueError("not a number")
    text = repr(value)
    if "e" in text or "E" in text:
        return Interval(float(value), float(value))
    decimals = len(text.split(".", 1)[1]) if "." in text else 0
    half = 0.5 * 10.0**-decimals
    return Interval(value - half, value + half)


#: The comparison signs of FHIR DSTU1 that clients still send (fhirclient's ``$gt`` is ``>``).
LEGACY_PREFIXES = {">=": "ge", "<=": "le", ">": "gt", "<": "lt"}


def split_prefix(text: str) -> tuple[str, str]:
    """``("ge", "2020")`` for ``ge2020`` (or ``>=2020``); ``("eq", …)`` without a prefix."""
    if text[:2] in PREFIXES and len(text) > 2 and not text[2:3].isalpha():
        return text[:2], text[2:]
    for sign, prefix in LEGACY_PREFIXES.items():
        if text.startswith(sign):
            return prefix, text[len(sign) :]
    return "eq", text


def split_values(value: str) -> list[str]:
    """Split a parameter value on unescaped commas (the values are OR-ed), keeping escapes."""
    return [part for part in _UNESCAPED_COMMA.split(value) if part != ""]


def split_bars(value: str) -> list[str]:
    """Split a token or quantity value on unescaped ``|`` and undo FHIR's escapes."""
    return [unescape(part) for part in _UNESCAPED_BAR.split(value)]


def unescape(text: str) -> str:
    """Undo FHIR's search escapes (``\\,`` ``\\|`` ``\\$`` ``\\\\``)."""
    return re.sub(r"\\([\\,|$])", r"\1", text)


def fold(text: str) -> str:
    """Case- and accent-insensitive form of a string, as FHIR string search compares them."""
    decomposed = unicodedata.normalize("NFKD", text)
    folded = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(folded.split())[:MAX_KEY_LENGTH]


def clip(text: str) -> str:
    """An exact string as indexed: at most :data:`MAX_KEY_LENGTH` characters."""
    return text[:MAX_KEY_LENGTH]
