"""The SQLAlchemy pieces: aware UTC timestamps everywhere, and declared audit tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import String, inspect, select
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tidemark.tracking import TemporalMixin, audit_class_of, declare_audit

from .models import Device, DeviceAudit, DeviceKind, ModelBase, Unaudited


def test_audit_table_has_every_column_plus_audit_id_and_closing_times():
    table = DeviceAudit.__table__
    assert set(table.c.keys()) == {
        "audit_id",
        "id",
        "serial",
        "name",
        "installed_on",
        "last_seen",
        "kind_id",
        "valid_from",
        "stored_from",
        "valid_until",
        "stored_until",
    }
    assert table.name == "device_audit"
    assert [c.name for c in table.primary_key] == ["audit_id"]


def test_audit_table_copies_no_constraints_so_history_never_blocks_the_live_row():
    table = DeviceAudit.__table__
    assert table.foreign_keys == set()
    assert not any(c.unique for c in table.c)
    assert all(
        c.nullable for c in table.c if c.name not in ("audit_id", "valid_until", "stored_until")
    )
    assert not table.c.valid_until.nullable and not table.c.stored_until.nullable
    assert [list(i.columns.keys()) for i in table.indexes] == [["id"]]


def test_audit_class_is_registered_for_the_entity():
    assert audit_class_of(Device) is DeviceAudit
    assert audit_class_of(Unaudited) is None
    assert DeviceAudit.__name__ == "DeviceAudit"


def test_declare_audit_refuses_non_temporal_and_second_declarations():
    with pytest.raises(TypeError, match="TemporalMixin"):
        declare_audit(DeviceKind)
    with pytest.raises(TypeError, match="already has an audit class"):
        declare_audit(Device, tablename="device_audit_again")


def test_declare_audit_refuses_entities_with_audit_column_names():
    class Base(DeclarativeBase):
        pass

    class Clash(TemporalMixin, Base):
        __tablename__ = "clash"
        id: Mapped[int] = mapped_column(primary_key=True)
        valid_until: Mapped[str | None] = mapped_column(String)

    with pytest.raises(TypeError, match="valid_until"):
        declare_audit(Clash)


def test_declare_audit_keeps_attribute_names_when_columns_are_renamed():
    class Base(DeclarativeBase):
        pass

    class Renamed(TemporalMixin, Base):
        __tablename__ = "renamed"
        id: Mapped[int] = mapped_column("renamed_id", primary_key=True)
        label: Mapped[str | None] = mapped_column("label_text", String)

    audit = declare_audit(Renamed, classname="RenamedHistory", tablename="renamed_history")
    assert audit.__name__ == "RenamedHistory"
    assert {attr.key for attr in inspect(audit).column_attrs} >= {"id", "label"}
    assert audit.__table__.c.label.name == "label_text"
    assert audit.__table__.name == "renamed_history"


def test_utc_datetime_returns_aware_utc_on_both_engines(model_engine):
    plus_two = datetime(2024, 3, 1, 11, 30, tzinfo=timezone(timedelta(hours=2)))
    with Session(model_engine) as session, session.begin():
        session.add(
            Device(id=1, serial="A", last_seen=plus_two, valid_from=plus_two, stored_from=plus_two)
        )
    with Session(model_engine) as session:
        device = session.get(Device, 1)
        assert device is not None
        assert device.last_seen == plus_two
        assert device.last_seen.tzinfo is not None
        assert device.last_seen.utcoffset() == timedelta(0)
        assert device.last_seen == datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
        found = session.scalars(select(Device).where(Device.last_seen == plus_two)).all()
        assert [d.id for d in found] == [1]


def test_utc_datetime_refuses_naive_datetimes(model_engine):
    naive = datetime(2024, 3, 1, 9, 30)
    with Session(model_engine) as session, pytest.raises(StatementError, match="aware"):
        session.add(Device(id=1, serial="A", last_seen=naive, valid_from=naive, stored_from=naive))
        session.flush()


def test_temporal_columns_are_required_in_the_database(model_engine):
    from sqlalchemy.exc import IntegrityError

    with Session(model_engine) as session, pytest.raises(IntegrityError):
        session.add(Device(id=1, serial="A"))
        session.flush()


def test_model_metadata_creates_audit_tables(model_engine):
    names = set(inspect(model_engine).get_table_names())
    assert {"device", "device_audit", "device_kind", "unaudited"} <= names
    assert "unaudited_audit" not in names
    assert ModelBase.metadata.tables["device_audit"] is DeviceAudit.__table__
