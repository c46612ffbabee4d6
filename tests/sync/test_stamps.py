from datetime import UTC, datetime, timedelta

from tidemark.core import ManualClock
from tidemark.sync import (
    HybridClock,
    format_stamp,
    new_id,
    normalize_stamp,
    skew_horizon,
    stamp_problems,
)


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


def test_a_replaced_version_beyond_the_skew_does_not_drag_the_clock_along():
    wall = ManualClock(datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    bounded = HybridClock(wall, max_skew=3600)
    assert bounded.stamp(after="9999-12-31T23:59:59.999999Z") == "2024-05-01T12:00:00.000000Z"
    # Within the skew the replaced version is still followed (a device slightly ahead).
    assert bounded.stamp(after="2024-05-01T12:30:00.000000Z") == "2024-05-01T12:30:00.000001Z"
    assert bounded.not_after() == "2024-05-01T13:00:00.000000Z"
    unbounded = HybridClock(wall)
    assert unbounded.stamp(after="2030-01-01T00:00:00.000000Z") == "2030-01-01T00:00:00.000001Z"
    assert unbounded.not_after() is None


def test_stamp_problems_name_each_stamp_a_receiver_refuses():
    entity = new_id("k")
    blob = {
        "Note": {entity: {"id": entity, "updated_at": "9999-01-01T00:00:00Z"}},
        "deleted": {"Note": {new_id("k"): "soon"}},
    }
    problems = stamp_problems(blob, "2024-05-01T13:00:00.000000Z")
    assert set(problems) == {
        f"$.Note.{entity}.updated_at",
        *(f"$.deleted.Note.{i}" for i in blob["deleted"]["Note"]),
    }
    assert skew_horizon(ManualClock(datetime(9999, 12, 31, tzinfo=UTC)), 86400 * 2) == (
        "9999-12-31T23:59:59.999999Z"
    )
