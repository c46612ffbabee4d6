"""Message order: per-attribute last writer wins, so the final row is a function of the set of
messages applied, whatever their arrival order and however often they are replayed."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from tidemark.tracking import InterchangeValue, RowOutcome, RowState, order_key

from .models import Sensor, SensorAudit

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
PROCESSED = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
ATTRIBUTES = ("name", "place", "unit")

Message = tuple[datetime, str, dict[str, InterchangeValue[str]]]


def message(minutes: int, control: str, **values: str | None) -> Message:
    """A message at T0 + minutes: None is the explicit delete, absent attributes are unknown."""
    return (
        T0 + timedelta(minutes=minutes),
        control,
        {name: InterchangeValue.of_nullable(value) for name, value in values.items()},
    )


def apply(session: Session, sensors: dict[str, Sensor], item: Message) -> RowOutcome:
    moment, control, values = item
    existing = sensors.get("S1")
    entity = existing if existing is not None else Sensor(serial="S1")
    state = RowState(entity, existing is None, moment, PROCESSED, order_key(moment, control))
    for name, value in values.items():
        state.assign_interchange(value, name)
    sensors["S1"] = state.entity
    return state.save_or_audit(session)


def final_values(items: list[Message]) -> dict[str, Any]:
    """Apply ``items`` in the given order to one in-memory row (no database needed)."""
    sensors: dict[str, Sensor] = {}
    session = Session()
    for item in items:
        apply(session, sensors, item)
    sensor = sensors["S1"]
    return {
        "values": {name: getattr(sensor, name) for name in ATTRIBUTES},
        "message_order": sensor.message_order,
        "field_order": dict(sensor.field_order),
    }


def test_order_keys_sort_by_utc_time_then_by_the_tie_breakers():
    later_in_paris = datetime(2024, 3, 1, 10, 30, tzinfo=timezone(timedelta(hours=1)))
    assert order_key(T0, "C1") < order_key(later_in_paris, "C0")
    assert order_key(T0, "C1", "aa") < order_key(T0, "C1", "ab") < order_key(T0, "C10", "aa")
    assert order_key(T0, "C1") == "20240301090000.000000 C1"
    with pytest.raises(ValueError, match="aware"):
        order_key(datetime(2024, 1, 1), "C1")


def test_a_late_message_fills_what_no_newer_message_said_and_changes_nothing_else():
    newer = message(10, "B", name="JOAN", place=None)
    older = message(5, "A", name="JANE", place="WARD", unit="KG")
    for items in ([older, newer], [newer, older]):
        assert final_values(items)["values"] == {"name": "JOAN", "place": None, "unit": "KG"}


def test_a_message_with_the_same_value_still_moves_the_attribute_stamp():
    # Without the stamp moving, C would win over B when it arrives last.
    a, b, c = message(1, "A", name="X"), message(3, "B", name="X"), message(2, "C", name="Y")
    results = {repr(final_values(list(p))) for p in itertools.permutations([a, b, c])}
    assert len(results) == 1
    assert final_values([a, b, c])["values"]["name"] == "X"


def test_messages_of_the_same_time_are_ordered_by_their_tie_breaker():
    first, second = message(0, "C1", name="A"), message(0, "C2", name="B")
    assert final_values([second, first])["values"]["name"] == "B"
    assert final_values([first, second])["values"]["name"] == "B"


values = st.one_of(st.none(), st.sampled_from(["a", "b", "c"]))
messages = st.lists(
    st.tuples(
        st.integers(0, 5),
        st.sampled_from(["C1", "C2", "C3"]),
        st.dictionaries(st.sampled_from(ATTRIBUTES), values),
    ),
    min_size=1,
    max_size=8,
    unique_by=lambda m: (m[0], m[1]),
)


@settings(max_examples=300, deadline=None)
@given(messages, st.randoms(use_true_random=False))
def test_any_arrival_order_and_any_replays_give_the_same_row(raw, rng):
    items = [message(minutes, control, **vals) for minutes, control, vals in raw]
    expected = final_values(items)
    arrival = items + [rng.choice(items) for _ in range(rng.randint(0, 4))]
    rng.shuffle(arrival)
    assert final_values(arrival) == expected


def test_a_replay_changes_nothing_and_a_newer_message_only_moves_the_order_columns(
    model_engine, sql_log
):
    first = message(0, "A", name="pump", place="ICU")
    with Session(model_engine) as session, session.begin():
        assert apply(session, {}, first) is RowOutcome.CREATED
    sql_log.clear()
    for item in (first, message(5, "B", name="pump")):
        with Session(model_engine) as session, session.begin():
            stored = {"S1": session.scalars(select(Sensor)).one()}
            assert apply(session, stored, item) is RowOutcome.UNCHANGED
        if item is first:
            assert sql_log.writes() == []
    [update] = sql_log.writes()
    assert update.startswith("UPDATE sensor SET message_order=")
    with Session(model_engine) as session:
        sensor = session.scalars(select(Sensor)).one()
        assert sensor.message_order == order_key(T0 + timedelta(minutes=5), "B")
        assert sensor.field_order == {
            "name": order_key(T0 + timedelta(minutes=5), "B"),
            "place": order_key(T0, "A"),
        }
        assert sensor.valid_from == T0  # no value changed
        assert session.scalars(select(SensorAudit)).all() == []


def test_a_late_change_keeps_valid_time_moving_forward(model_engine):
    with Session(model_engine) as session, session.begin():
        apply(session, {}, message(10, "B", name="JOAN"))
    with Session(model_engine) as session, session.begin():
        stored = {"S1": session.scalars(select(Sensor)).one()}
        late = apply(session, stored, message(5, "A", name="JANE", unit="KG"))
        assert late is RowOutcome.UPDATED
    with Session(model_engine) as session:
        sensor = session.scalars(select(Sensor)).one()
        assert (sensor.name, sensor.unit) == ("JOAN", "KG")
        assert sensor.valid_from == T0 + timedelta(minutes=10)
        [audit] = session.scalars(select(SensorAudit)).all()
        assert (audit.unit, audit.valid_from, audit.valid_until) == (
            None,
            T0 + timedelta(minutes=10),
            T0 + timedelta(minutes=10),
        )


def test_staleness_and_newness_follow_the_order_key(model_engine):
    with Session(model_engine) as session, session.begin():
        apply(session, {}, message(10, "B", name="JOAN"))
    with Session(model_engine) as session:
        sensor = session.scalars(select(Sensor)).one()
        older = RowState(sensor, False, T0, PROCESSED, order_key(T0, "A"))
        assert older.is_stale_message
        assert not older.is_newer_for("name") and older.is_newer_for("unit")
        same = RowState(sensor, False, T0, PROCESSED, sensor.message_order)
        assert not same.is_stale_message and not same.is_newer_for("name")


def test_without_an_order_key_an_ordered_row_is_assigned_unconditionally(model_engine):
    with Session(model_engine) as session, session.begin():
        apply(session, {}, message(10, "B", name="JOAN"))
    with Session(model_engine) as session, session.begin():
        sensor = session.scalars(select(Sensor)).one()
        state = RowState(sensor, False, T0, PROCESSED)
        assert state.assign_if_different("MOVED", "name")
        assert state.save_or_audit(session) is RowOutcome.UPDATED
        stamps = dict(sensor.field_order)
    with Session(model_engine) as session:
        sensor = session.scalars(select(Sensor)).one()
        assert (sensor.name, sensor.field_order) == ("MOVED", stamps)


def test_delete_or_audit_removes_the_row_and_keeps_its_values_in_the_audit(model_engine):
    with Session(model_engine) as session, session.begin():
        apply(session, {}, message(0, "A", name="pump"))
    with Session(model_engine) as session, session.begin():
        sensor = session.scalars(select(Sensor)).one()
        state = RowState(sensor, False, T0 + timedelta(hours=1), PROCESSED)
        assert state.delete_or_audit(session) is RowOutcome.DELETED
        with pytest.raises(RuntimeError, match="already saved"):
            state.save_or_audit(session)
    with Session(model_engine) as session:
        assert session.scalars(select(Sensor)).all() == []
        [audit] = session.scalars(select(SensorAudit)).all()
        assert (audit.name, audit.valid_until) == ("pump", T0 + timedelta(hours=1))


def test_an_order_key_needs_an_ordered_entity():
    from .models import Device

    with pytest.raises(TypeError, match="OrderedMixin"):
        RowState(Device(serial="x"), True, T0, PROCESSED, order_key(T0, "A"))
