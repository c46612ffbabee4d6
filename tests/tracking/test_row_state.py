"""RowState on SQLite and PostgreSQL: temporal values and audit rows only for real changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tidemark.core import ConfigurationError, ManualClock
from tidemark.tracking import InterchangeValue, RowOutcome, RowState

from .models import Device, DeviceAudit, Unaudited

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
T1 = datetime(2024, 3, 2, 9, 0, tzinfo=UTC)
PROCESSED_0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
PROCESSED_1 = datetime(2024, 6, 1, 12, 5, tzinfo=UTC)

pytestmark = pytest.mark.usefixtures("model_engine")


def create_device(engine, **values) -> int:
    with Session(engine) as session, session.begin():
        state = RowState.get_or_create(
            session, Device, {"serial": "SN-1"}, message_datetime=T0, stored_from=PROCESSED_0
        )
        for name, value in {"name": "pump", "installed_on": date(2023, 5, 1), **values}.items():
            state.assign_if_different(value, name)
        assert state.save_or_audit(session) is RowOutcome.CREATED
        session.flush()
        return state.entity.id


def load_state(session: Session, message_datetime=T1) -> RowState[Device]:
    return RowState.get_or_create(
        session,
        Device,
        {"serial": "SN-1"},
        message_datetime=message_datetime,
        stored_from=PROCESSED_1,
    )


def stored_device(session: Session, device_id: int) -> Device:
    return session.get_one(Device, device_id)


def audit_rows(engine) -> list[Any]:
    with Session(engine) as session:
        return list(session.scalars(select(DeviceAudit).order_by(DeviceAudit.audit_id)))


def test_create_sets_valid_from_and_stored_from_and_writes_no_audit_row(engine):
    device_id = create_device(engine)
    with Session(engine) as session:
        device = session.get(Device, device_id)
        assert device is not None
        assert device.valid_from == T0
        assert device.stored_from == PROCESSED_0
        assert device.name == "pump"
    assert audit_rows(engine) == []


def test_created_state_reports_created_not_updated(engine):
    with Session(engine) as session:
        state = load_state(session)
        assert state.is_created
        assert not state.is_updated
        assert not state.is_stale_message


def test_real_change_writes_exactly_one_audit_row_with_the_old_values(engine):
    device_id = create_device(engine)
    with Session(engine) as session, session.begin():
        state = load_state(session)
        assert state.assign_if_different("infusion pump", "name")
        assert state.is_updated and not state.is_created
        assert state.changes() == {"name": ("pump", "infusion pump")}
        assert state.save_or_audit(session) is RowOutcome.UPDATED
    [audit] = audit_rows(engine)
    assert (audit.id, audit.serial, audit.name) == (device_id, "SN-1", "pump")
    assert audit.installed_on == date(2023, 5, 1)
    assert (audit.valid_from, audit.stored_from) == (T0, PROCESSED_0)
    assert (audit.valid_until, audit.stored_until) == (T1, PROCESSED_1)
    with Session(engine) as session:
        device = session.get(Device, device_id)
        assert device is not None
        assert device.name == "infusion pump"
        assert (device.valid_from, device.stored_from) == (T1, PROCESSED_1)


def test_identical_values_write_nothing(engine, sql_log):
    create_device(engine, last_seen=T0)
    sql_log.clear()
    with Session(engine) as session, session.begin():
        state = load_state(session)
        assert not state.assign_if_different("pump", "name")
        assert not state.assign_interchange(InterchangeValue.of(date(2023, 5, 1)), "installed_on")
        # An aware datetime read back from the database compares equal on both engines.
        assert not state.assign_if_different(
            T0.astimezone(timezone(timedelta(hours=2))), "last_seen"
        )
        assert state.save_or_audit(session) is RowOutcome.UNCHANGED
    assert sql_log.writes() == []
    assert audit_rows(engine) == []


def test_change_and_change_back_is_no_update_and_writes_nothing(engine, sql_log):
    create_device(engine)
    sql_log.clear()
    with Session(engine) as session, session.begin():
        state = load_state(session)
        assert state.assign_if_different("other", "name")
        updated_midway = state.is_updated
        assert state.assign_interchange(InterchangeValue.of("pump"), "name")
        assert updated_midway and not state.is_updated
        assert state.save_or_audit(session) is RowOutcome.UNCHANGED
    assert sql_log.writes() == []
    assert audit_rows(engine) == []


def test_unknown_leaves_the_value_untouched(engine, sql_log):
    device_id = create_device(engine)
    sql_log.clear()
    with Session(engine) as session, session.begin():
        state = load_state(session)
        assert not state.assign_interchange(InterchangeValue.unknown(), "name")
        assert state.save_or_audit(session) is RowOutcome.UNCHANGED
    assert sql_log.writes() == []
    with Session(engine) as session:
        assert stored_device(session, device_id).name == "pump"


def test_delete_nulls_the_value_and_audits_the_old_one(engine):
    device_id = create_device(engine)
    with Session(engine) as session, session.begin():
        state = load_state(session)
        assert state.assign_interchange(InterchangeValue.delete(), "name")
        assert state.save_or_audit(session) is RowOutcome.UPDATED
    with Session(engine) as session:
        assert stored_device(session, device_id).name is None
    [audit] = audit_rows(engine)
    assert audit.name == "pump"


def test_delete_of_an_already_null_value_writes_nothing(engine, sql_log):
    create_device(engine, name=None)
    sql_log.clear()
    with Session(engine) as session, session.begin():
        state = load_state(session)
        assert not state.assign_interchange(InterchangeValue.delete(), "name")
        assert state.save_or_audit(session) is RowOutcome.UNCHANGED
    assert sql_log.writes() == []


def test_each_real_change_adds_one_audit_row_closing_the_previous_interval(engine):
    create_device(engine)
    moments = [T1, T1 + timedelta(days=1)]
    for moment, name in zip(moments, ["a", "b"], strict=True):
        with Session(engine) as session, session.begin():
            state = load_state(session, moment)
            state.assign_if_different(name, "name")
            state.save_or_audit(session)
    first, second = audit_rows(engine)
    assert (first.name, first.valid_from, first.valid_until) == ("pump", T0, T1)
    assert (second.name, second.valid_from, second.valid_until) == ("a", T1, moments[1])


def test_a_change_made_directly_on_the_entity_still_counts_as_an_update(engine):
    create_device(engine)
    with Session(engine) as session, session.begin():
        state = load_state(session)
        state.entity.name = "renamed behind RowState's back"
        assert state.is_updated
        assert state.save_or_audit(session) is RowOutcome.UPDATED
    assert len(audit_rows(engine)) == 1


def test_a_message_older_than_the_row_is_stale(engine):
    create_device(engine)
    with Session(engine) as session:
        assert load_state(session, T0 - timedelta(seconds=1)).is_stale_message
        assert not load_state(session, T0).is_stale_message


def test_update_of_an_entity_without_audit_class_raises_configuration_error(engine):
    with Session(engine) as session, session.begin():
        state = RowState(Unaudited(id=1, name="a"), True, T0, PROCESSED_0)
        state.save_or_audit(session)
    with Session(engine) as session:
        state = RowState(session.get_one(Unaudited, 1), False, T1, PROCESSED_1)
        state.assign_if_different("b", "name")
        with pytest.raises(ConfigurationError, match="declare_audit"):
            state.save_or_audit(session)


def test_get_or_create_reads_the_processing_time_from_the_clock(engine):
    clock = ManualClock(PROCESSED_1)
    with Session(engine) as session, session.begin():
        state = RowState.get_or_create(
            session, Device, {"serial": "SN-9"}, message_datetime=T0, clock=clock
        )
        state.save_or_audit(session)
    with Session(engine) as session:
        device = session.scalars(select(Device).where(Device.serial == "SN-9")).one()
        assert device.stored_from == PROCESSED_1
        assert session.scalar(select(func.count()).select_from(DeviceAudit)) == 0


def test_misuse_is_refused_clearly(engine):
    create_device(engine)
    with Session(engine) as session:
        state = load_state(session)
        with pytest.raises(AttributeError, match="no column attribute 'nmae'"):
            state.assign_if_different("x", "nmae")
        with pytest.raises(AttributeError, match="set by save_or_audit"):
            state.assign_if_different(T1, "valid_from")
        assert state.assign_if_different("by attribute", Device.name)
        state.save_or_audit(session)
        with pytest.raises(RuntimeError, match="already saved"):
            state.save_or_audit(session)
        with pytest.raises(RuntimeError, match="already saved"):
            state.assign_if_different("again", "name")
        session.rollback()


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="aware"):
        RowState(Device(serial="x"), True, datetime(2024, 1, 1), PROCESSED_0)
