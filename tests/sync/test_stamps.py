from datetime import UTC, datetime, timedelta

from tidemark.core import ManualClock
from tidemark.sync import HybridClock, format_stamp, normalize_stamp


def test_stamps_are_fixed_width_so_string_order_is_time_order():
    early = format_stamp(datetime(999, 1, 1, tzinfo=UTC))
    late = format_stamp(datetime(2024, 5, 1, 10, 0, 0, 5, tzinfo=UTC))
    assert early == "0999-01-01T00:00:00.000000Z"
    assert late == "2024-05-01T10:00:00.000005Z"
    assert early < late


def test_normalize_accepts_iso_with_offsets_and_sinks_garbage():
    assert normalize_stamp("2024-05-01T12:00:00+02:00") == "2024-05-01T10:00:00.000000Z"
    assert normalize_stamp("2024-05-01T10:00:00.000005Z") == "2024-05-01T10:00:00.000005Z"
    assert normalize_stamp("yesterday") == ""
    assert normalize_stamp(None) == ""
    assert normalize_stamp(17) == ""


def test_hybrid_clock_never_repeats_even_when_the_wall_clock_stands_still():
    clock = HybridClock(ManualClock())
    stamps = [clock.stamp() for _ in range(1000)]
    assert len(set(stamps)) == 1000
    assert stamps == sorted(stamps)


def test_hybrid_clock_does_not_go_back_with_the_wall_clock():
    manual = ManualClock(datetime(2024, 1, 2, tzinfo=UTC))
    clock = HybridClock(manual)
    first = clock.stamp()
    manual.set(datetime(2024, 1, 1, tzinfo=UTC))
    assert clock.stamp() > first


def test_a_write_after_a_future_stamped_version_is_stamped_later():
    clock = HybridClock(ManualClock(datetime(2024, 1, 1, tzinfo=UTC)))
    future = format_stamp(datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=3))
    assert clock.stamp(after=future) > future
    assert clock.stamp() > future


def test_horizon_is_relative_to_the_wall_clock():
    clock = HybridClock(ManualClock(datetime(2024, 4, 1, tzinfo=UTC)))
    assert clock.horizon(86400) == "2024-03-31T00:00:00.000000Z"
