"""The one clock abstraction: wall time for stamps, monotonic time for expiry and intervals.

Code that reads time takes a :class:`Clock` (default :data:`SYSTEM_CLOCK`) so tests can inject a
:class:`ManualClock` instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Source of time. ``now`` is an aware UTC datetime; ``monotonic`` is seconds, never decreasing."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock. Thread-safe."""

    __slots__ = ()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock that moves only when told to. Thread-safe; both readings advance together."""

    def __init__(self, start: datetime | None = None, monotonic_start: float = 1000.0) -> None:
        self._lock = threading.Lock()
        self._now = start or datetime(2024, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("ManualClock needs an aware start datetime")
        self._monotonic = monotonic_start

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._monotonic

    def advance(self, seconds: float) -> None:
        """Move both readings forward by ``seconds`` (must not be negative)."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._monotonic += seconds

    def set(self, moment: datetime) -> None:
        """Set the wall time (for tests of clock skew); the monotonic reading is unchanged."""
        with self._lock:
            self._now = moment.astimezone(UTC)
