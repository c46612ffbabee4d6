"""Read the ADT tables back by natural keys (no generated ids), to compare whole databases."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session, aliased

from tidemark.tracking.hl7 import (
    AdtBase,
    Location,
    LocationType,
    LocationVisit,
    LocationVisitAudit,
    Patient,
    PatientAudit,
    Visit,
    VisitAudit,
    VisitMovement,
)


def final_rows(engine: Engine) -> dict[str, Any]:
    """Every value the ingest decides, by natural key (valid_from/stored_from excluded: they
    record when values were learned, which depends on arrival)."""
    merged_into = aliased(Patient)
    owner = aliased(Patient)
    with Session(engine) as session:
        patients = {
            row.mrn: (
                row.nhs_number,
                row.surname,
                row.given_name,
                str(row.date_of_birth) if row.date_of_birth else None,
                row.sex,
                row.death_datetime,
                into,
                row.message_order,
                row.field_order,
            )
            for row, into in session.execute(
                select(Patient, merged_into.mrn).outerjoin(
                    merged_into, merged_into.id == Patient.merged_into_id
                )
            )
        }
        visits = {
            row.encounter: (
                mrn,
                row.status,
                row.patient_class,
                row.hospital_service,
                row.admission_datetime,
                row.discharge_datetime,
                row.discharge_disposition,
                row.message_order,
                row.field_order,
            )
            for row, mrn in session.execute(
                select(Visit, owner.mrn).join(owner, owner.id == Visit.patient_id)
            )
        }
        movements = sorted(
            session.execute(
                select(
                    Visit.encounter,
                    VisitMovement.message_order,
                    VisitMovement.trigger,
                    VisitMovement.moved_at,
                    Location.location_string,
                )
                .join(Visit, Visit.id == VisitMovement.visit_id)
                .outerjoin(Location, Location.id == VisitMovement.location_id)
            ).all()
        )
        stays = sorted(
            session.execute(
                select(
                    Visit.encounter,
                    Location.location_string,
                    LocationVisit.admission_datetime,
                    LocationVisit.discharge_datetime,
                )
                .join(Visit, Visit.id == LocationVisit.visit_id)
                .join(Location, Location.id == LocationVisit.location_id)
            ).all(),
            key=repr,
        )
        locations = sorted(
            session.execute(
                select(
                    Location.location_string,
                    Location.facility,
                    Location.description,
                    LocationType.code,
                ).outerjoin(LocationType, LocationType.id == Location.location_type_id)
            ).all()
        )
    return {
        "patients": patients,
        "visits": visits,
        "movements": movements,
        "stays": stays,
        "locations": locations,
    }


def audit_count(engine: Engine) -> int:
    with Session(engine) as session:
        return sum(
            session.scalar(select(func.count()).select_from(audit)) or 0
            for audit in (PatientAudit, VisitAudit, LocationVisitAudit)
        )


def empty_tables(engine: Engine) -> None:
    """Delete every row of the ADT tables (children first)."""
    with Session(engine) as session, session.begin():
        session.execute(update(Patient).values(merged_into_id=None))
        for table in reversed(AdtBase.metadata.sorted_tables):
            session.execute(delete(table))
