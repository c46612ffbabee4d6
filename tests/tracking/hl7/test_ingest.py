"""The HL7 v2 ADT ingest on SQLite and PostgreSQL: replays write nothing, arrival order does not
matter, the ADT events do what a receiving system expects, bad messages are rejected alone."""

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
    LocationVisitAudit,
    PartialDate,
    Patient,
    PatientAudit,
    Visit,
    VisitAudit,
    VisitMovement,
    example_files,
    ingest_files,
)

from ..conftest import SqlLog
from .adt_messages import adt, without
from .rows import audit_count, final_rows


def caches(enabled: bool = True) -> TypeCaches:
    return TypeCaches(Settings({"type_cache": {"enabled": enabled}}, env={}))


def count(engine, model) -> int:
    with Session(engine) as session:
        return session.scalars(select(func.count()).select_from(model)).one()


def ingester(engine, clock, **options) -> AdtIngester:
    return AdtIngester(engine, type_caches=caches(), clock=clock, **options)


def feed(*messages: str) -> bytes:
    return "\r".join(messages).encode()


def run(engine, clock, *messages: str, **options) -> AdtIngester:
    loader = ingester(engine, clock, **options)
    loader.ingest_bytes(feed(*messages), "feed.hl7")
    return loader


def stays(engine, encounter: str = "V1") -> list[tuple[str, datetime | None, datetime | None]]:
    with Session(engine) as session:
        return list(
            session.execute(
                select(
                    Location.location_string,
                    LocationVisit.admission_datetime,
                    LocationVisit.discharge_datetime,
                )
                .join(Location, Location.id == LocationVisit.location_id)
                .join(Visit, Visit.id == LocationVisit.visit_id)
                .where(Visit.encounter == encounter)
                .order_by(LocationVisit.admission_datetime)
            ).all()
        )


def visit(engine, encounter: str = "V1") -> Visit:
    with Session(engine, expire_on_commit=False) as session:
        return session.scalars(select(Visit).where(Visit.encounter == encounter)).one()


def patient(engine, mrn: str = "M1") -> Patient:
    with Session(engine, expire_on_commit=False) as session:
        return session.scalars(select(Patient).where(Patient.mrn == mrn)).one()


def at(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC)


# -- replays and the examples ------------------------------------------------------------------
def test_second_run_over_the_examples_creates_nothing_and_writes_no_sql(
    engine, clock, sql_log: SqlLog
):
    first = ingest_files(example_files(), engine, type_caches=caches(), clock=clock)
    assert (first.messages, first.changed, first.rejected) == (12, 12, 0)
    assert (first.created, first.audit_rows, first.updated) == (33, 14, 14)
    sql_log.clear()
    clock.advance(3600)
    second = ingest_files(example_files(), engine, type_caches=caches(), clock=clock)
    assert (second.messages, second.changed, second.unchanged, second.stale) == (12, 0, 4, 8)
    assert (second.created, second.updated, second.audit_rows) == (0, 0, 0)
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
        ross = session.scalars(select(Patient).where(Patient.mrn == "40800004")).one()
        assert ross.date_of_birth == PartialDate(1949)  # the year is all the sender knew
        daniel = session.scalars(select(Patient).where(Patient.mrn == "40800002")).one()
        assert daniel.death_datetime == datetime(2024, 3, 9, 3, 20, tzinfo=UTC)
        kinds = dict(session.execute(select(LocationType.code, LocationType.description)).all())
        assert kinds == {"N": "Nursing Unit", "D": "Department", "C": "Clinic"}
    assert stays(engine, "TMG-E-10001") == [
        ("ACU^BAY2^BED04", at("20240305081000"), at("20240305143000")),
        ("WARD7^RM3^BED12", at("20240305143000"), at("20240308111500")),
    ]


def test_the_examples_in_reverse_order_give_the_same_rows(engine, clock, tmp_path):
    reverse = tmp_path / "reverse.hl7"
    messages = [m for path in example_files() for m in path.read_bytes().split(b"MSH|")[1:]]
    reverse.write_bytes(b"".join(b"MSH|" + m.rstrip(b"\r\n") + b"\r" for m in messages[::-1]))
    ingest_files([reverse], engine, type_caches=caches(), clock=clock)
    backwards = final_rows(engine)
    ingest_files(example_files(), engine, type_caches=caches(), clock=clock)
    assert final_rows(engine) == backwards


def test_a_repeated_identical_message_writes_nothing(engine, clock, sql_log: SqlLog):
    loader = ingester(engine, clock)
    message = adt(admitted="20240305080000").encode()
    loader.ingest_bytes(message)
    sql_log.clear()
    loader.ingest_bytes(message)
    assert sql_log.writes() == []
    assert loader.summary.created == 6  # patient, visit, type, location, movement, stay: once
    assert (loader.summary.changed, loader.summary.unchanged) == (1, 1)
    assert loader.summary.audit_rows == 0


def test_a_real_change_writes_one_audit_row_with_the_old_values(engine, clock):
    loader = run(engine, clock, adt(name="DOE^JANE"))
    loader.ingest_bytes(adt("A08", when="20240306090000", name="DOE^JOAN").encode())
    assert loader.summary.audit_rows == 1
    with Session(engine) as session:
        [audit] = session.scalars(select(PatientAudit))
        assert (audit.given_name, audit.valid_until) == ("JANE", at("20240306090000"))
        assert session.scalars(select(Patient.given_name)).one() == "JOAN"


def test_an_empty_field_leaves_the_value_and_the_hl7_null_deletes_it(engine, clock):
    run(engine, clock, adt(sex="F", nhs="943"), adt("A08", when="20240306090000", sex="", nhs='""'))
    assert (patient(engine).sex, patient(engine).nhs_number) == ("F", None)


# -- the cases of the issue --------------------------------------------------------------------
@pytest.mark.parametrize("reverse", [False, True])
def test_two_messages_of_the_same_second_do_not_flip_flop_on_replay(engine, clock, reverse):
    a01 = adt("A01", when="20240305081502", control="A", name="DOE^JANE")
    a08 = adt("A08", when="20240305081502", control="B", name="DOE^JOAN")
    messages = (a08, a01) if reverse else (a01, a08)
    first = run(engine, clock, *messages).summary
    # In order, the A08 renames JANE (one patient audit row); reversed, the late A01 only fills
    # the visit's admission time and status.
    assert first.by_table["patient"].get("audit_rows", 0) == (0 if reverse else 1)
    for _ in range(2):
        again = run(engine, clock, *messages).summary
        assert (again.changed, again.audit_rows) == (0, 0)
    assert patient(engine).given_name == "JOAN"  # control ID B comes after A
    with Session(engine) as session:
        for audit in session.scalars(select(PatientAudit)):
            assert audit.valid_from <= audit.valid_until


def test_a_late_admission_fills_the_admission_time_and_opens_no_stay_after_discharge(
    engine, clock, sql_log: SqlLog
):
    a03 = adt("A03", when="20240306120000", control="D", discharged="20240306115500")
    a01 = adt("A01", when="20240305080000", control="A", admitted="20240305075500")
    first = run(engine, clock, a03, a01).summary
    assert (first.changed, first.stale) == (2, 0)
    assert stays(engine) == [("WARD1^ROOM1^BED1", at("20240305075500"), at("20240306115500"))]
    assert visit(engine).admission_datetime == at("20240305075500")
    assert visit(engine).discharge_datetime == at("20240306115500")
    assert visit(engine).status == "discharged"
    sql_log.clear()
    replay = run(engine, clock, a03, a01).summary
    assert (replay.changed, replay.updated, replay.audit_rows) == (0, 0, 0)
    assert sql_log.writes() == []
    assert final_rows(engine) == {**final_rows(engine)}


def test_a_cut_mllp_frame_is_rejected_and_its_discharge_not_taken_from_evn(engine, clock):
    full = adt("A03", when="20240306120000", event="20240306110000", discharged="20240306115500")
    cut = full[: full.index("|V1|") + 3]  # ends right after PV1-19
    loader = ingester(engine, clock)
    loader.ingest_bytes(b"\x0b" + adt().encode() + b"\x1c\r\x0b" + cut.encode(), "cut.hl7")
    assert (loader.summary.changed, loader.summary.rejected) == (1, 1)
    [problem] = loader.summary.problems
    assert (problem.index, problem.line) == (2, 5)
    assert problem.reason.startswith("cut off: MLLP frame has a start byte (0x0B) but no end byte")
    assert visit(engine).discharge_datetime is None


def test_a_byte_order_mark_before_the_first_message_is_skipped(engine, clock):
    loader = ingester(engine, clock)
    loader.ingest_bytes(b"\xef\xbb\xbf" + adt().encode(), "bom.hl7")
    assert (loader.summary.changed, loader.summary.rejected) == (1, 0)


def test_a_year_only_birth_date_is_stored_as_the_year(engine, clock):
    run(engine, clock, adt(dob="1949"))
    assert patient(engine).date_of_birth == PartialDate(1949)
    with Session(engine) as session:
        stored = session.execute(select(Patient.__table__.c.date_of_birth)).scalar_one()
        assert stored == PartialDate(1949)
        raw = session.connection().exec_driver_sql("SELECT date_of_birth FROM patient").scalar()
        assert raw == "1949"


def test_stale_messages_are_reported_apart_from_unchanged_ones(engine, clock):
    run(engine, clock, adt("A08", when="20240306090000", name="DOE^JOAN"))
    late = run(engine, clock, adt("A01", when="20240305081502", name="DOE^JANE")).summary
    assert (late.changed, late.stale, late.unchanged) == (1, 0, 0)  # it opened the stay
    again = run(engine, clock, adt("A01", when="20240305081502", name="DOE^JANE")).summary
    assert (again.changed, again.stale, again.unchanged) == (0, 1, 0)
    newest = run(engine, clock, adt("A08", when="20240306090000", name="DOE^JOAN")).summary
    assert (newest.changed, newest.stale, newest.unchanged) == (0, 0, 1)
    assert patient(engine).given_name == "JOAN"


def test_a_stray_backslash_costs_its_field_with_a_warning(engine, clock):
    run(engine, clock, adt(name="DOE^JANE"))
    loader = run(engine, clock, adt("A08", when="20240306090000", name="O\\NEIL^ANN"))
    assert (loader.summary.changed, loader.summary.rejected) == (1, 0)
    [warning] = loader.summary.warnings
    assert (warning.source, warning.index, warning.line) == ("feed.hl7", 1, 3)
    assert "PID-5" in warning.reason and "ignored" in warning.reason
    # Only the component with the bad escape is lost: the surname stays, the given name changes.
    assert (patient(engine).surname, patient(engine).given_name) == ("DOE", "ANN")


def test_the_discharge_time_comes_from_pv1_45_not_evn(engine, clock):
    run(
        engine,
        clock,
        adt(),
        adt("A03", when="20240306120000", event="20240306110000", discharged="20240306115500"),
    )
    assert visit(engine).discharge_datetime == at("20240306115500")
    assert stays(engine)[-1][2] == at("20240306115500")


def test_a04_registers_a_visit_and_opens_its_stay(engine, clock):
    run(engine, clock, adt("A04", patient_class="O", event="20240305081000"))
    assert (visit(engine).status, visit(engine).patient_class) == ("active", "O")
    assert visit(engine).admission_datetime == at("20240305081000")
    assert stays(engine) == [("WARD1^ROOM1^BED1", at("20240305081000"), None)]


@pytest.mark.parametrize("trigger", ["A04", "A08"])
def test_an_event_without_pv1_updates_the_patient_only(engine, clock, trigger):
    loader = run(engine, clock, without(adt(trigger, name="DOE^ANN"), "PV1"))
    assert (loader.summary.changed, loader.summary.rejected) == (1, 0)
    assert patient(engine).given_name == "ANN"
    assert count(engine, Visit) == 0


def test_a11_cancels_the_admission_with_audit(engine, clock):
    admit = adt("A01", when="20240305080000", control="1", admitted="20240305075500")
    cancel = adt("A11", when="20240305090000", control="2")
    for order in ((admit, cancel), (cancel, admit)):
        run(engine, clock, *order)
        assert stays(engine) == []
        assert (visit(engine).status, visit(engine).admission_datetime) == ("cancelled", None)
    assert count(engine, LocationVisitAudit) == 1  # the undone stay, once
    with Session(engine) as session:
        [before] = session.scalars(select(VisitAudit))
        assert (before.status, before.admission_datetime) == ("active", at("20240305075500"))


def test_a12_returns_the_patient_to_the_prior_location(engine, clock):
    run(
        engine,
        clock,
        adt("A01", when="20240305080000", control="1", event="20240305080000"),
        adt(
            "A02",
            when="20240305100000",
            control="2",
            location="WARD2^ROOM1^BED1",
            prior="WARD1^ROOM1^BED1",
        ),
        adt("A12", when="20240305110000", control="3", location="WARD1^ROOM1^BED1"),
    )
    assert stays(engine) == [("WARD1^ROOM1^BED1", at("20240305080000"), None)]
    with Session(engine) as session:
        undone = session.scalars(select(LocationVisitAudit)).all()
        assert {row.discharge_datetime for row in undone} == {at("20240305100000"), None}


def test_a13_cancels_the_discharge_and_reopens_the_stay(engine, clock):
    run(
        engine,
        clock,
        adt("A01", when="20240305080000", control="1", event="20240305080000"),
        adt("A03", when="20240306080000", control="2", discharged="20240306080000"),
        adt("A13", when="20240306090000", control="3"),
    )
    assert (visit(engine).status, visit(engine).discharge_datetime) == ("active", None)
    assert stays(engine) == [("WARD1^ROOM1^BED1", at("20240305080000"), None)]
    with Session(engine) as session:
        discharged = session.scalars(
            select(VisitAudit).where(VisitAudit.discharge_datetime.is_not(None))
        ).all()
        assert [row.status for row in discharged] == ["discharged"]


@pytest.mark.parametrize("merge_first", [False, True])
def test_a40_moves_the_visits_to_the_surviving_patient_and_marks_the_other(
    engine, clock, merge_first
):
    visits = [
        adt("A01", when="20240305080000", control="1", mrn="M3", encounter="V3"),
        adt("A01", when="20240305080100", control="2", mrn="M1", encounter="V1"),
    ]
    merge = adt("A40", when="20240306080000", control="3", mrn="M1", merged="M3")
    messages = [merge, *visits] if merge_first else [*visits, merge]
    run(engine, clock, *messages)
    survivor, merged = patient(engine, "M1"), patient(engine, "M3")
    assert merged.merged_into_id == survivor.id and survivor.merged_into_id is None
    assert {visit(engine, "V1").patient_id, visit(engine, "V3").patient_id} == {survivor.id}
    late = run(
        engine, clock, adt("A08", when="20240307080000", control="4", mrn="M3", encounter="V3")
    )
    assert late.summary.rejected == 0 and visit(engine, "V3").patient_id == survivor.id


def test_unsupported_events_are_counted_by_type_and_are_no_errors(engine, clock):
    loader = run(
        engine,
        clock,
        adt().replace("ADT^A01^ADT_A01", "ADT^A28^ADT_A05"),
        adt(control="2").replace("ADT^A01^ADT_A01", "ADT^A28^ADT_A05"),
        adt(control="3").replace("ADT^A01^ADT_A01", "ORU^R01^ORU_R01"),
        adt(control="4"),
    )
    summary = loader.summary
    assert summary.unsupported == {"ADT^A28": 2, "ORU^R01": 1}
    assert (summary.messages, summary.changed, summary.rejected, summary.problems) == (4, 1, 0, [])


# -- batches, savepoints and errors ------------------------------------------------------------
def overflowing(control: str) -> str:
    # Year 1 at +14:00 is before the start of UTC time: no engine can store it.
    return adt("A08", control=control, mrn="MX", death="00010101000000+1400")


@pytest.mark.parametrize("batch_size", [1, 3, 500])
def test_one_message_the_database_refuses_does_not_fail_its_batch(
    engine, clock, sql_log: SqlLog, batch_size
):
    messages = [adt(control=f"C{i}", mrn=f"M{i}", encounter=f"V{i}") for i in range(5)]
    messages.insert(2, overflowing("BAD"))
    loader = run(engine, clock, *messages, batch_size=batch_size)
    summary = loader.summary
    assert (summary.changed, summary.rejected) == (5, 1), summary.problems
    [problem] = summary.problems
    assert (problem.source, problem.index, problem.line) == ("feed.hl7", 3, 9)
    assert problem.reason.startswith("cannot store:")
    with Session(engine) as session:
        assert sorted(session.scalars(select(Patient.mrn))) == [f"M{i}" for i in range(5)]
    savepoints = [s for s in sql_log.statements if s.startswith("SAVEPOINT")]
    assert savepoints  # the refused batch was applied again, one savepoint per message


def test_a_batch_the_database_accepts_takes_one_insert_per_table_and_no_savepoint(
    engine, clock, sql_log: SqlLog
):
    run(engine, clock, adt(control="seed", mrn="M0", encounter="V0"))  # creates the location
    sql_log.clear()
    messages = [adt(control=f"C{i}", mrn=f"M{i}", encounter=f"V{i}") for i in range(1, 21)]
    run(engine, clock, *messages, batch_size=500)
    assert not [s for s in sql_log.statements if s.startswith("SAVEPOINT")]
    for table in ("patient", "visit", "visit_movement", "location_visit"):
        assert len([s for s in sql_log.writes() if s.startswith(f"INSERT INTO {table} ")]) == 1
    assert count(engine, Patient) == 21


def test_the_batch_size_changes_statements_not_rows(engine, clock, request):
    messages = [
        path_message.decode()
        for path in example_files()
        for path_message in path.read_bytes().replace(b"\n", b"\r").split(b"\rMSH")
    ]
    feed_bytes = "\r".join(m if m.startswith("MSH") else "MSH" + m for m in messages).encode()
    one_by_one = ingester(engine, clock, batch_size=1)
    one_by_one.ingest_bytes(feed_bytes)
    rows, audits = final_rows(engine), audit_count(engine)
    from .rows import empty_tables

    empty_tables(engine)
    batched = ingester(engine, clock, batch_size=500)
    batched.ingest_bytes(feed_bytes)
    assert (final_rows(engine), audit_count(engine)) == (rows, audits)
    assert batched.summary.as_dict() == one_by_one.summary.as_dict()


def test_a_malformed_message_in_the_middle_is_reported_and_loses_nothing(engine, clock, tmp_path):
    good_before = adt(mrn="M1", encounter="V1", control="ok-1")
    malformed = adt(mrn="M2", encounter="V2", control="bad", dob="19801340")
    good_after = adt(mrn="M3", encounter="V3", control="ok-3")
    path = tmp_path / "mixed.hl7"
    path.write_bytes("\n".join([good_before, malformed, good_after]).encode())
    summary = ingest_files([path], engine, type_caches=caches(), clock=clock)
    assert (summary.messages, summary.ingested, summary.rejected) == (3, 2, 1)
    [problem] = summary.problems
    assert (problem.source, problem.index, problem.line) == (str(path), 2, 7)
    assert problem.reason.startswith("PID-7: not an HL7 date: '19801340'")
    assert f"{path}: message 2 (line 7)" in str(problem)
    with Session(engine) as session:
        assert sorted(session.scalars(select(Patient.mrn))) == ["M1", "M3"]


def test_an_unreadable_file_is_one_problem_and_the_others_are_ingested(engine, clock, tmp_path):
    summary = ingest_files(
        [tmp_path / "missing.hl7", example_files()[0]], engine, type_caches=caches(), clock=clock
    )
    assert summary.ingested == 4
    [problem] = summary.problems
    assert problem.index == 0 and "cannot read file" in problem.reason


def test_progress_reports_every_byte_once(engine, clock, tmp_path):
    path = tmp_path / "feed.hl7"
    path.write_bytes(feed(*[adt(control=f"C{i}", mrn=f"M{i}") for i in range(7)]))
    reported: list[int] = []
    loader = ingester(engine, clock, batch_size=2, progress=reported.append)
    loader.ingest_file(path)
    assert sum(reported) == path.stat().st_size
    assert all(size > 0 for size in reported)


@pytest.mark.parametrize("enabled", [True, False])
def test_the_type_cache_changes_queries_not_results(engine, clock, sql_log: SqlLog, enabled):
    type_caches = caches(enabled)
    summary = ingest_files(example_files(), engine, type_caches=type_caches, clock=clock)
    assert (summary.created, summary.updated, summary.audit_rows) == (33, 14, 14)
    # Lookups by code (the key allocator's max(id) reads are no lookups).
    location_type_reads = len(
        [s for s in sql_log.statements if s.startswith("SELECT location_type.id")]
    )
    stats = type_caches.stats()["location_type"]
    assert stats.queries == location_type_reads
    if enabled:
        assert location_type_reads == 3  # one miss per type code, then hits
    else:
        assert location_type_reads > 3


@pytest.mark.postgres
def test_a_message_refused_by_the_database_is_rejected_with_the_reason(request, tmp_path, clock):
    from ..conftest import make_engine

    engine = make_engine("postgresql", request, tmp_path)
    try:
        loader = ingester(engine, clock)
        # PostgreSQL text cannot hold NUL: the database, not the parser, refuses this one.
        loader.ingest_bytes(
            feed(adt(mrn="M1", name="DO\x00E^JANE"), adt(mrn="M2", encounter="V2")), "nul.hl7"
        )
        [problem] = loader.summary.problems
        assert (problem.source, problem.index) == ("nul.hl7", 1)
        assert "NUL" in problem.reason, problem.reason
        with Session(engine) as session:
            assert list(session.scalars(select(Patient.mrn))) == ["M2"]
    finally:
        engine.dispose()


def test_rejected_messages_are_logged_with_structured_fields(engine, clock, caplog):
    loader = ingester(engine, clock)
    with caplog.at_level(logging.WARNING, logger="tidemark.tracking"):
        loader.ingest_bytes(adt(dob="1980-01-01").encode(), "feed.hl7")
    [record] = [r for r in caplog.records if r.getMessage() == "message rejected"]
    assert record.component == "tracking"
    assert record.fields["source"] == "feed.hl7"
    assert (record.fields["index"], record.fields["line"]) == (1, 3)


def test_movements_are_kept_once_each(engine, clock):
    messages = [adt("A01", control="1"), adt("A03", when="20240306080000", control="2")]
    run(engine, clock, *messages)
    run(engine, clock, *messages)
    assert count(engine, VisitMovement) == 2
