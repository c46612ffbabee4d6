"""The small relational schema of the HL7 v2 ADT example: patients, visits and where they were."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Dialect,
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from tidemark.tracking import OrderedMixin, TemporalMixin, UtcDateTime, declare_audit

from ._values import PartialDate

# BIGINT on PostgreSQL; SQLite only auto-increments a column declared exactly INTEGER.
_Id = BigInteger().with_variant(Integer(), "sqlite")


class PartialDateType(TypeDecorator[PartialDate]):
    """A :class:`PartialDate` stored as its ISO text: ``1949``, ``1949-03`` or ``1949-03-12``.

    The text sorts like the dates and keeps what the sender did not know unknown.
    """

    impl = String(10)
    cache_ok = True

    def process_bind_param(self, value: PartialDate | None, dialect: Dialect) -> str | None:
        return None if value is None else value.isoformat()

    def process_result_value(self, value: str | None, dialect: Dialect) -> PartialDate | None:
        return None if value is None else PartialDate.fromisoformat(value)


class AdtBase(DeclarativeBase):
    """Declarative base of the ADT example tables (``AdtBase.metadata``)."""


class LocationType(AdtBase):
    """A kind of location (HL7 table 0305: N nursing unit, C clinic, D department...). A type
    entity: read through a type cache."""

    __tablename__ = "location_type"

    id: Mapped[int] = mapped_column(_Id, primary_key=True)
    code: Mapped[str] = mapped_column(String, unique=True)
    description: Mapped[str | None] = mapped_column(String)


class Location(AdtBase):
    """A bed, room or ward, keyed by ``point of care^room^bed``. A type entity.

    ``message_order`` is the order key of the message its attributes last changed from: a
    message changes them only when it is newer, and fills attributes still unknown.
    """

    __tablename__ = "location"

    id: Mapped[int] = mapped_column(_Id, primary_key=True)
    location_string: Mapped[str] = mapped_column(String, unique=True)
    facility: Mapped[str | None] = mapped_column(String)
    description: Mapped[str | None] = mapped_column(String)
    location_type_id: Mapped[int | None] = mapped_column(ForeignKey("location_type.id"))
    message_order: Mapped[str | None] = mapped_column(String)

    # The relationships of these tables are only declared so that one flush inserts parents
    # before children; rows are linked through their id columns (no cascades to walk).
    location_type: Mapped[LocationType | None] = relationship(lazy="raise", cascade="")


class Patient(TemporalMixin, OrderedMixin, AdtBase):
    """A person, keyed by medical record number (PID-3 of type MR).

    ``date_of_birth`` keeps the precision the sender gave (see :class:`PartialDate`).
    ``merged_into_id`` is set by an A40: this record was merged into that patient, whose
    record holds the visits from then on.
    """

    __tablename__ = "patient"

    id: Mapped[int] = mapped_column(_Id, primary_key=True)
    mrn: Mapped[str] = mapped_column(String, unique=True)
    nhs_number: Mapped[str | None] = mapped_column(String)
    surname: Mapped[str | None] = mapped_column(String)
    given_name: Mapped[str | None] = mapped_column(String)
    date_of_birth: Mapped[PartialDate | None] = mapped_column(PartialDateType())
    sex: Mapped[str | None] = mapped_column(String)
    death_datetime: Mapped[datetime | None] = mapped_column(UtcDateTime())
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"))


class Visit(TemporalMixin, OrderedMixin, AdtBase):
    """A hospital visit (encounter), keyed by visit number (PV1-19).

    ``status`` is ``active`` (admitted, registered, transferred, discharge cancelled),
    ``discharged`` or ``cancelled`` (admission cancelled), from the newest message that says.
    """

    __tablename__ = "visit"
    __table_args__ = (Index("ix_visit_patient", "patient_id"),)

    id: Mapped[int] = mapped_column(_Id, primary_key=True)
    encounter: Mapped[str] = mapped_column(String, unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    status: Mapped[str | None] = mapped_column(String)
    patient_class: Mapped[str | None] = mapped_column(String)
    hospital_service: Mapped[str | None] = mapped_column(String)
    admission_datetime: Mapped[datetime | None] = mapped_column(UtcDateTime())
    discharge_datetime: Mapped[datetime | None] = mapped_column(UtcDateTime())
    discharge_disposition: Mapped[str | None] = mapped_column(String)

    patient: Mapped[Patient] = relationship(lazy="raise", cascade="")


class VisitMovement(AdtBase):
    """One message that moved a visit: an admit, transfer or discharge, or the cancellation of
    one. Kept (never changed) so that the visit's stays can be derived from all its movements in
    message order, whatever order they arrived in."""

    __tablename__ = "visit_movement"
    __table_args__ = (UniqueConstraint("visit_id", "message_order"),)

    id: Mapped[int] = mapped_column(_Id, primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id"))
    message_order: Mapped[str] = mapped_column(String)
    trigger: Mapped[str] = mapped_column(String)
    moved_at: Mapped[datetime] = mapped_column(UtcDateTime())
    location_id: Mapped[int | None] = mapped_column(ForeignKey("location.id"))

    visit: Mapped[Visit] = relationship(lazy="raise", cascade="")
    location: Mapped[Location | None] = relationship(lazy="raise", cascade="")


class LocationVisit(TemporalMixin, AdtBase):
    """A stay of a visit at one location, from admission (or transfer in) to discharge (or out)."""

    __tablename__ = "location_visit"
    __table_args__ = (Index("ix_location_visit_visit_location", "visit_id", "location_id"),)

    id: Mapped[int] = mapped_column(_Id, primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id"))
    location_id: Mapped[int] = mapped_column(ForeignKey("location.id"))
    admission_datetime: Mapped[datetime | None] = mapped_column(UtcDateTime())
    discharge_datetime: Mapped[datetime | None] = mapped_column(UtcDateTime())

    visit: Mapped[Visit] = relationship(lazy="raise", cascade="")
    location: Mapped[Location] = relationship(lazy="raise", cascade="")


PatientAudit: type[Any] = declare_audit(Patient)
VisitAudit: type[Any] = declare_audit(Visit)
LocationVisitAudit: type[Any] = declare_audit(LocationVisit)


def create_adt_schema(engine: Engine) -> None:
    """Create the ADT example tables (and their audit tables) that do not exist yet."""
    AdtBase.metadata.create_all(engine)
