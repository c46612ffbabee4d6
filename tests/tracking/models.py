"""Small mapped classes for the RowState and type-cache tests (not the ADT example schema)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tidemark.tracking import OrderedMixin, TemporalMixin, UtcDateTime, declare_audit


class ModelBase(DeclarativeBase):
    pass


class DeviceKind(ModelBase):
    """A type entity."""

    __tablename__ = "device_kind"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String, unique=True)
    label: Mapped[str | None] = mapped_column(String)


class Device(TemporalMixin, ModelBase):
    """A tracked entity with an audit table."""

    __tablename__ = "device"

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String, unique=True)
    name: Mapped[str | None] = mapped_column(String)
    installed_on: Mapped[date | None]
    last_seen: Mapped[datetime | None] = mapped_column(UtcDateTime())
    kind_id: Mapped[int | None] = mapped_column(ForeignKey("device_kind.id"))


DeviceAudit: type[Any] = declare_audit(Device)


class Unaudited(TemporalMixin, ModelBase):
    """Temporal but without an audit class: an update must fail loudly."""

    __tablename__ = "unaudited"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str | None] = mapped_column(String)


class Sensor(TemporalMixin, OrderedMixin, ModelBase):
    """A tracked entity under message order (per-attribute last writer wins)."""

    __tablename__ = "sensor"

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String, unique=True)
    name: Mapped[str | None] = mapped_column(String)
    place: Mapped[str | None] = mapped_column(String)
    unit: Mapped[str | None] = mapped_column(String)


SensorAudit: type[Any] = declare_audit(Sensor)
