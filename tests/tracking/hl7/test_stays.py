"""A visit's stays from its movements in message order, cancellations included: pure."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from tidemark.tracking.hl7._stays import Movement, Stay, effective_movements, stays_of

T = datetime(2024, 3, 5, 8, 0, tzinfo=UTC)


def at(hours: int) -> datetime:
    return T + timedelta(hours=hours)


def move(order: int, trigger: str, location: int | None = None) -> Movement:
    return Movement(f"{order:04d}", trigger, at(order), location)


def test_admit_transfer_discharge_make_two_closed_stays():
    movements = [move(1, "A01", 10), move(2, "A02", 20), move(3, "A03", 20)]
    assert stays_of(movements) == [Stay(10, at(1), at(2)), Stay(20, at(2), at(3))]


def test_the_stays_do_not_depend_on_the_arrival_order():
    movements = [move(1, "A01", 10), move(2, "A02", 20), move(3, "A02", 30), move(4, "A03")]
    expected = stays_of(movements)
    for arrival in itertools.permutations(movements):
        assert stays_of(arrival) == expected


def test_a_late_admission_does_not_open_a_stay_after_the_discharge():
    assert stays_of([move(3, "A03", 10), move(1, "A01", 10)]) == [Stay(10, at(1), at(3))]


def test_cancel_transfer_returns_the_patient_to_the_prior_location():
    movements = [move(1, "A01", 10), move(2, "A02", 20), move(3, "A12", 10)]
    assert stays_of(movements) == [Stay(10, at(1), None)]


def test_cancel_transfer_undoes_only_the_newest_transfer():
    movements = [move(1, "A01", 10), move(2, "A02", 20), move(3, "A02", 30), move(4, "A12")]
    assert stays_of(movements) == [Stay(10, at(1), at(2)), Stay(20, at(2), None)]


def test_cancel_discharge_reopens_the_last_stay():
    movements = [move(1, "A01", 10), move(2, "A03", 10), move(3, "A13", 10)]
    assert stays_of(movements) == [Stay(10, at(1), None)]


def test_cancel_admit_removes_the_admission_and_what_followed():
    movements = [move(1, "A01", 10), move(2, "A02", 20), move(3, "A11")]
    assert stays_of(movements) == []
    assert effective_movements(movements) == []


def test_a_cancellation_before_its_event_arrives_still_undoes_it():
    assert stays_of([move(1, "A01", 10), move(3, "A12")]) == [Stay(10, at(1), None)]
    late = [move(1, "A01", 10), move(3, "A12"), move(2, "A02", 20)]
    assert stays_of(late) == [Stay(10, at(1), None)]


def test_a_cancellation_only_undoes_earlier_events():
    movements = [move(1, "A01", 10), move(2, "A12"), move(3, "A02", 20)]
    assert stays_of(movements) == [Stay(10, at(1), at(3)), Stay(20, at(3), None)]


def test_a_registration_opens_a_stay_like_an_admission_and_is_cancelled_by_a11():
    assert stays_of([move(1, "A04", 10)]) == [Stay(10, at(1), None)]
    assert stays_of([move(1, "A04", 10), move(2, "A11")]) == []


def test_a_transfer_to_where_the_patient_is_or_after_the_discharge_changes_nothing():
    assert stays_of([move(1, "A01", 10), move(2, "A02", 10)]) == [Stay(10, at(1), None)]
    discharged = [move(1, "A01", 10), move(2, "A03"), move(3, "A02", 20)]
    assert stays_of(discharged) == [Stay(10, at(1), at(2))]


def test_a_transfer_without_an_admission_opens_the_new_stay():
    assert stays_of([move(2, "A02", 20), move(3, "A03")]) == [Stay(20, at(2), at(3))]


def test_a_second_admission_at_another_location_moves_the_patient():
    movements = [move(1, "A01", 10), move(2, "A01", 20)]
    assert stays_of(movements) == [Stay(10, at(1), at(2)), Stay(20, at(2), None)]
