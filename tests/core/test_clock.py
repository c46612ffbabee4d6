from datetime import UTC, datetime

import pytest

from tidemark.core import SYSTEM_CLOCK, Clock, ManualClock


def test_manual_clock_moves_only_when_told():
    clock = ManualClock(datetime(2024, 1, 1, tzinfo=UTC))
    assert isinstance(clock, Clock)
    before, mono = clock.now(), clock.monotonic()
    clock.advance(1.5)
    assert (clock.now() - before).total_seconds() == 1.5
    assert clock.monotonic() - mono == 1.5
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_system_clock_is_aware_utc():
    assert SYSTEM_CLOCK.now().tzinfo is UTC
