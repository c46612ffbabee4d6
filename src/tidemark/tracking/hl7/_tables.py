"""The small relational schema of the HL7 v2 ADT example: patients, visits and where they were."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Date, Engine, ForeignKey, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tidemark.tracking import TemporalMixin, UtcDateTime, declare_audit

# BIGINT on PostgreSQL; SQLite only auto-increments a column declared exactly INTEGER.
_Id = BigInteger().with_variant(Integer(), "sqlite")


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
    """A bed, room or ward, keyed by ``point of care^room^bed``. A type entity."""

    __tablename__ = "location"

    id: Mapped[int] = mapped_column(_Id, primary_key=True)
    location_string: Mapped[str] = mapped_column(String, unique=True)
    facility: Mapped[str | None] = mapped_column(String)
    description: Mapped[str | None] = mapped_column(String)
    location_type_id: Mapped[int | None] = mapped_column(ForeignKey("location_type.id"))


class Patient(TemporalMixin, AdtBase):
    """A person, keyed by medical record number (PID-3 of type MR)."""

    __tablename__ = "patient"

    id: Mapped[int] = mapped_column(_Id, primary_key=True)
    mrn: Mapped[str] = mapped_column(String, unique=True)
    nhs_number: Mapped[str | None] = mapped_column(String)
    surname: Mapped[str | None] = mapped_column(String)
    given_name: Mapped[str | None] = mapped_column(String)
    date_of_birth: Mapped[date | None] = mapped_column(Date)
    sex: Mapped[str | None] = mapped_column(String)
    death_datetime: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Visit(TemporalMixin, AdtBase):
    """A hospital visit (encounter), keyed by visit number (PV1-19)."""

    __tablename__ = "visit"

    id: Mapped[int] = mapped_column(_Id, primary_key=True)
    encounter: Mapped[str] = mapped_column(String, unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    patient_class: Mapped[str | None] = mapped_column(String)
    hospital_service: Mapped[str | None] = mapped_column(String)
    admission_datetime: Mapped[datetime | None] = mapped_column(UtcDateTime())
    discharge_datetime: Mapped[datetime | None] = mapped_column(UtcDateTime())
    discharge_disposition: Mapped[str | None] = mapped_column(String)


class LocationVisit(TemporalMixin, AdtBase):
    """A stay of a visit at one location, from admission (or transfer in) to discharge (or out)."""

    __tablename__ = "location_visit"
    __table_args__ = (Index("ix_location_visit_visit_location", "visit_id", "location_id"),)

    id: Mapped[int] = mapped_column(_Id, primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id"))
    location_id: Mapped[int] = mapped_column(ForeignKey("location.id"))
    admission_datetime: Mapped[datetime | None] = mapped_column(UtcDateTime())
    discharge_datetime: Mapped[datetime | None] = mapped_column(UtcDateTime())


PatientAudit: type[Any] = declare_audit(Patient)
VisitAudit: type[Any] = declare_audit(Visit)
LocationVisitAudit: type[Any] = declare_audit(LocationVisit)


def create_adt_schema(engine: Engine) -> None:
    """Create the ADT example tables (and their audit tables) that do not exist yet."""
    AdtBase.metadata.create_all(engine)
