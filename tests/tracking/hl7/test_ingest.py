"""The HL7 v2 ADT ingest on SQLite and PostgreSQL: replays write nothing, bad messages are skipped."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tidemark.core import Settings
from tidemark.tracking import TypeCaches
from tidemark.tracking.hl7 import (
    AdtIngester,
    Location,
    LocationType,
    LocationVisit,
    Patient,
    PatientAudit,
    Visit,
    example_files,
    ingest_files,
)

from ..conftest import SqlLog
from .adt_messages import adt


def caches(enabled: bool = True) -> TypeCaches:
    return TypeCaches(Settings({"type_cache": {"enabled": enabled}}, env={}))


def count(engine, model) -> int:
    with Session(engine) as session:
        return session.scalars(select(func.count()).select_from(model)).one()


def ingester(engine, clock, **options) -> AdtIngester:
    return AdtIngester(engine, type_caches=caches(), clock=clock, **options)


def test_second_run_over_the_examples_creates_nothing_and_writes_no_sql(
    engine, clock, sql_log: SqlLog
):
    first = ingest_files(example_files(), engine, type_caches=caches(), clock=clock)
    assert (first.messages, first.ingested, first.skipped) == (12, 12, 0)
    assert first.created == 23
    assert first.audit_rows == first.updated == 14
    sql_log.clear()
    clock.advance(3600)
    second = ingest_files(example_files(), engine, type_caches=caches(), clock=clock)
    assert (second.messages, second.ingested, second.skipped) == (12, 12, 0)
    assert (second.created, second.updated, second.audit_rows) == (0, 0, 0)
    assert second.unchanged == 30
    assert sql_log.writes() == []


def test_the_examples_build_the_expected_history(engine, clock):
    ingest_files(example_files(), engine, type_caches=caches(), clock=clock)
    assert [count(engine, m) for m in (Patient, Visit, LocationVisit, Location, LocationType)] == [
        4,
        4,
        6,
        6,
        3,
    ]
    with Session(engine) as session:
        sarah = session.scalars(select(Patient).where(Patient.mrn == "40800001")).one()
        assert sarah.given_name == "SARA"  # corrected by the A08
        assert sarah.valid_from == datetime(2024, 3, 6, 9, 0, 44, tzinfo=UTC)
        assert sarah.stored_from == clock.now()
        [old] = session.scalars(select(PatientAudit).where(PatientAudit.mrn == "40800001"))
        assert old.given_name == "SARAH"
        assert old.valid_until == sarah.valid_from

        linh = session.scalars(select(Patient).where(Patient.mrn == "40800003")).one()
        assert linh.nhs_number is None  # the HL7 null "" deleted it
        [before] = session.scalars(select(PatientAudit).where(PatientAudit.mrn == "40800003"))
        assert before.nhs_number == "9434765862"

        stays = session.execute(
            select(
                Location.location_string,
                LocationVisit.admission_datetime,
                LocationVisit.discharge_datetime,
            )
            .join(Location, Location.id == LocationVisit.location_id)
            .join(Visit, Visit.id == LocationVisit.visit_id)
            .where(Visit.encounter == "TMG-E-10001")
            .order_by(LocationVisit.admission_datetime)
        ).all()
        assert stays == [
            (
                "ACU^BAY2^BED04",
                datetime(2024, 3, 5, 8, 10, tzinfo=UTC),
                datetime(2024, 3, 5, 14, 30, tzinfo=UTC),
            ),
            (
                "WARD7^RM3^BED12",
                datetime(2024, 3, 5, 14, 30, tzinfo=UTC),
                datetime(2024, 3, 8, 11, 15, tzinfo=UTC),
            ),
        ]
        assert (
            session.scalar(
                select(func.count())
                .select_from(LocationVisit)
                .where(LocationVisit.discharge_datetime.is_(None))
            )
            == 0
        )
        daniel = session.scalars(select(Patient).where(Patient.mrn == "40800002")).one()
        assert daniel.death_datetime == datetime(2024, 3, 9, 3, 20, tzinfo=UTC)
        kinds = dict(session.execute(select(LocationType.code, LocationType.description)).all())
        assert kinds == {"N": "Nursing Unit", "D": "Department", "C": "Clinic"}


def test_a_repeated_identical_message_writes_nothing(engine, clock, sql_log: SqlLog):
    loader = ingester(engine, clock)
    message = adt(admitted="20240305080000").encode()
    loader.ingest_bytes(message)
    sql_log.clear()
    loader.ingest_bytes(message)
    assert sql_log.writes() == []
    assert loader.summary.created == 5  # patient, visit, location type, location, stay: once
    assert loader.summary.unchanged == 3
    assert loader.summary.audit_rows == 0


def test_a_real_change_writes_one_audit_row_with_the_old_values(engine, clock):
    loader = ingester(engine, clock)
    loader.ingest_bytes(adt(name="DOE^JANE").encode())
    loader.ingest_bytes(adt("A08", when="20240306090000", name="DOE^JOAN").encode())
    assert loader.summary.audit_rows == 1
    with Session(engine) as session:
        [audit] = session.scalars(select(PatientAudit))
        assert (audit.given_name, audit.valid_until) == (
            "JANE",
            datetime(2024, 3, 6, 9, tzinfo=UTC),
        )
        assert session.scalars(select(Patient.given_name)).one() == "JOAN"


def test_an_empty_field_leaves_the_value_and_the_hl7_null_deletes_it(engine, clock):
    loader = ingester(engine, clock)
    loader.ingest_bytes(adt(sex="F", nhs="943").encode())
    loader.ingest_bytes(adt("A08", when="20240306090000", sex="", nhs='""').encode())
    with Session(engine) as session:
        patient = session.scalars(select(Patient)).one()
        assert (patient.sex, patient.nhs_number) == ("F", None)


def test_a_late_older_message_does_not_roll_back_newer_data(engine, clock):
    loader = ingester(engine, clock)
    loader.ingest_bytes(adt("A08", when="20240306090000", name="DOE^JOAN").encode())
    loader.ingest_bytes(adt("A01", when="20240305081502", name="DOE^JANE").encode())
    assert loader.summary.audit_rows == 0
    with Session(engine) as session:
        assert session.scalars(select(Patient.given_name)).one() == "JOAN"


def test_a_malformed_message_in_the_middle_is_reported_skipped_and_loses_nothing(
    engine, clock, tmp_path
):
    good_before = adt(mrn="M1", encounter="V1", control="ok-1")
    malformed = adt(mrn="M2", encounter="V2", control="bad", dob="19801340")
    good_after = adt(mrn="M3", encounter="V3", control="ok-3")
    path = tmp_path / "mixed.hl7"
    path.write_bytes("\n".join([good_before, malformed, good_after]).encode())
    summary = ingest_files([path], engine, type_caches=caches(), clock=clock)
    assert (summary.messages, summary.ingested, summary.skipped) == (3, 2, 1)
    [problem] = summary.problems
    assert (problem.source, problem.index, problem.line) == (str(path), 2, 7)
    assert problem.reason.startswith("PID-7: not an HL7 timestamp: '19801340'")
    assert f"{path}: message 2 (line 7)" in str(problem)
    with Session(engine) as session:
        assert sorted(session.scalars(select(Patient.mrn))) == ["M1", "M3"]


def test_a_message_that_cannot_be_applied_is_rolled_back_and_skipped(engine, clock):
    loader = ingester(engine, clock)
    loader.ingest_bytes(adt(mrn="M1", encounter="V1").encode())
    # An A02 with no new location cannot be applied: nothing of it may stay.
    loader.ingest_bytes(
        adt("A02", when="20240306090000", mrn="M9", encounter="V9", location="").encode(),
        "late.hl7",
    )
    loader.ingest_bytes(adt(mrn="M3", encounter="V3").encode())
    assert loader.summary.skipped == 1
    assert "PV1-3" in loader.summary.problems[0].reason
    with Session(engine) as session:
        assert sorted(session.scalars(select(Patient.mrn))) == ["M1", "M3"]


def test_an_unreadable_file_is_one_problem_and_the_others_are_ingested(engine, clock, tmp_path):
    summary = ingest_files(
        [tmp_path / "missing.hl7", example_files()[0]], engine, type_caches=caches(), clock=clock
    )
    assert summary.ingested == 4
    [problem] = summary.problems
    assert problem.index == 0 and "cannot read file" in problem.reason


@pytest.mark.parametrize("enabled", [True, False])
def test_the_type_cache_changes_queries_not_results(engine, clock, sql_log: SqlLog, enabled):
    type_caches = caches(enabled)
    summary = ingest_files(example_files(), engine, type_caches=type_caches, clock=clock)
    assert (summary.created, summary.updated, summary.audit_rows) == (23, 14, 14)
    location_type_reads = sql_log.selects_from("location_type")
    stats = type_caches.stats()["location_type"]
    if enabled:
        assert location_type_reads == 3  # one miss per type code, then hits
        assert stats.hits == 9
    else:
        assert location_type_reads == 12  # every location of every message
        assert stats.hits == 0
    assert stats.queries == location_type_reads


@pytest.mark.postgres
def test_a_message_refused_by_the_database_is_skipped_with_the_reason(request, tmp_path, clock):
    from ..conftest import make_engine

    engine = make_engine("postgresql", request, tmp_path)
    try:
        loader = ingester(engine, clock)
        # PostgreSQL text cannot hold NUL: the database, not the parser, refuses this one.
        loader.ingest_bytes(adt(mrn="M1", name="DO\x00E^JANE").encode(), "nul.hl7")
        loader.ingest_bytes(adt(mrn="M2", encounter="V2").encode())
        [problem] = loader.summary.problems
        assert (problem.source, problem.index) == ("nul.hl7", 1)
        assert "NUL" in problem.reason, problem.reason
        assert problem.reason.startswith("refused by the database")
        with Session(engine) as session:
            assert list(session.scalars(select(Patient.mrn))) == ["M2"]
    finally:
        engine.dispose()


def test_skipped_messages_are_logged_with_structured_fields(engine, clock, caplog):
    loader = ingester(engine, clock)
    with caplog.at_level(logging.WARNING, logger="tidemark.tracking"):
        loader.ingest_bytes(adt(dob="1980-01-01").encode(), "feed.hl7")
    [record] = [r for r in caplog.records if r.getMessage() == "message skipped"]
    assert record.component == "tracking"
    assert record.fields["source"] == "feed.hl7"
    assert (record.fields["index"], record.fields["line"]) == (1, 3)
