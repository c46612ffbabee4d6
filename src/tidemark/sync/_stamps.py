"""Write stamps: fixed-width ISO-8601 UTC times with microseconds, issued by a hybrid logical clock.

Stamps order the versions of an entity. Every stamp has the form ``YYYY-MM-DDTHH:MM:SS.ffffffZ``,
so comparing the strings compares the instants. The :class:`HybridClock` never issues the same
stamp twice, never goes backwards, and stamps a write strictly after the version it replaces even
when the local wall clock is behind the clock that wrote that version — unless that version is
stamped further ahead than the allowed clock skew: such a stamp cannot be trusted (a device
with a broken clock, ``9999-12-31…``), so it is never accepted, never wins a merge and never
drags later stamps with it.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from tidemark.core import SYSTEM_CLOCK, Clock, parse_iso_utc

#: How far ahead of the local clock a stamp may be before it is refused (seconds; the default of
#: :class:`~tidemark.sync.SyncSettings` ``max_clock_skew`` and of the sync server).
DEFAULT_MAX_CLOCK_SKEW: Final = 3600.0

#: Why a stamp cannot order a version: not a date-time, or later than the skew allows.
StampFault = Literal["invalid", "ahead"]

_CANONICAL = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_MICROS = -62135596800 * 1_000_000  # 0001-01-01T00:00:00Z
_MAX_MICROS = 253402300799999999  # 9999-12-31T23:59:59.999999Z


def format_stamp(moment: datetime) -> str:
    """The stamp of an aware datetime (``2024-01-02T03:04:05.000006Z``)."""
    if moment.tzinfo is None:
        raise ValueError("a stamp needs an aware datetime")
    m = moment.astimezone(UTC)
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T"
        f"{m.hour:02d}:{m.minute:02d}:{m.second:02d}.{m.microsecond:06d}Z"
    )


def normalize_stamp(value: object) -> str:
    """The canonical stamp of ``value`` (a stamp or any ISO-8601 date-time string).

    Anything that is not a parseable date-time yields ``""``, which orders before every real
    stamp: a version with a broken stamp loses to any version with a valid one.
    """
    if not isinstance(value, str):
        return ""
    if _CANONICAL.fullmatch(value):
        return value
    try:
        return format_stamp(parse_iso_utc(value))
    except (ValueError, OverflowError):
        return ""


def stamp_fault(value: object, not_after: str) -> StampFault | None:
    """Why ``value`` (an ``updated_at`` or ``deleted_at``) cannot order a version, or ``None``.

    ``None`` for a missing stamp (``None``: it orders first and can never win), ``"invalid"``
    for anything else that is not an ISO-8601 date-time string, ``"ahead"`` for a stamp later
    than ``not_after`` (the local clock plus the allowed skew, a canonical stamp).
    """
    if value is None:
        return None
    normalized = normalize_stamp(value)
    if not normalized:
        return "invalid"
    return "ahead" if normalized > not_after else None


def skew_horizon(clock: Clock, max_skew: float) -> str:
    """The latest acceptable stamp: ``clock`` now plus ``max_skew`` seconds (clamped to the
    largest stamp)."""
    try:
        return format_stamp(clock.now() + timedelta(seconds=max_skew))
    except OverflowError:
        return _from_micros(_MAX_MICROS)


def _to_micros(stamp: str) -> int:
    moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(micros: int) -> str:
    micros = max(_MIN_MICROS, min(_MAX_MICROS, micros))
    return format_stamp(_EPOCH + timedelta(microseconds=micros))


class HybridClock:
    """Issues strictly increasing write stamps: ``max(wall clock, last issued + 1 µs,
    replaced version + 1 µs)``. Thread-safe.

    ``stamp(after=...)`` is how causality reaches last-writer-wins: a write made after reading a
    version stamped in the future (a device whose clock runs ahead) is still stamped later than
    that version, so the newer write really wins. A replaced version stamped more than
    ``max_skew`` seconds ahead of the wall clock is not followed (``None``: always followed):
    one such stamp would otherwise push every later write to the end of time, where writes tie.
    """

    def __init__(self, clock: Clock = SYSTEM_CLOCK, *, max_skew: float | None = None) -> None:
        self._clock = clock
        self._max_skew = max_skew
        self._lock = threading.Lock()
        self._last = _MIN_MICROS

    @property
    def max_skew(self) -> float | None:
        """How far ahead of the wall clock a stamp may be (seconds; ``None``: unbounded)."""
        return self._max_skew

    def not_after(self) -> str | None:
        """The latest stamp accepted from another replica now (``None`` when unbounded)."""
        if self._max_skew is None:
            return None
        return skew_horizon(self._clock, self._max_skew)

    def stamp(self, after: str | None = None) -> str:
        """A new stamp, later than every stamp issued before and later than ``after`` (unless
        ``after`` is further ahead than ``max_skew``)."""
        wall = self._clock.now()
        delta = wall.astimezone(UTC) - _EPOCH
        now = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
        floor = _MIN_MICROS
        normalized = normalize_stamp(after) if after else ""
        limit = self.not_after()
        if normalized and (limit is None or normalized <= limit):
            floor = _to_micros(normalized) + 1
        with self._lock:
            issued = max(now, self._last + 1, floor)
            self._last = issued
        return _from_micros(issued)

    def now(self) -> str:
        """The wall clock as a stamp (not unique; for horizons such as tombstone expiry)."""
        return format_stamp(self._clock.now())

    def horizon(self, seconds: float) -> str:
        """The stamp ``seconds`` before the wall clock."""
        return format_stamp(self._clock.now() - timedelta(seconds=seconds))
