"""The HL7 v2 ADT ingest: each message in its own transaction, through RowState and type caches."""

from __future__ import annotations

import codecs
import dataclasses
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.orm import Session

from tidemark.core import (
    SYSTEM_CLOCK,
    Clock,
    ConfigurationError,
    DataValidationError,
    SourceUnavailableError,
    get_logger,
)
from tidemark.tracking import InterchangeValue, RowOutcome, RowState, TypeCache, TypeCaches

from ._messages import AdtEvent, LocationRef, parse_adt, split_messages
from ._tables import Location, LocationType, LocationVisit, Patient, Visit, create_adt_schema

E = TypeVar("E")

_log = get_logger("tracking")

# HL7 table 0305 (person location type), used to describe location types on creation.
LOCATION_TYPE_NAMES = {
    "C": "Clinic",
    "D": "Department",
    "H": "Home",
    "N": "Nursing Unit",
    "O": "Provider's Office",
    "P": "Phone",
    "S": "SNF",
}


@dataclass(frozen=True, slots=True)
class MessageProblem:
    """A message that was skipped: where it is and why."""

    source: str
    index: int
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: message {self.index} (line {self.line}): {self.reason}"


@dataclass(slots=True)
class IngestSummary:
    """What an ingest did. Row counts cover committed messages only; ``skipped`` counts skipped
    messages and unreadable files (each one entry of ``problems``).

    ``created``/``updated``/``unchanged`` count rows (type entities count when created);
    ``audit_rows`` is the number of audit rows written; ``by_table`` breaks the row counts down.
    """

    messages: int = 0
    ingested: int = 0
    skipped: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    audit_rows: int = 0
    by_table: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[MessageProblem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        values = dataclasses.asdict(self)
        values["problems"] = [dataclasses.asdict(p) for p in self.problems]
        return values


class _Tally:
    """Row outcomes of one message, merged into the summary only once it commits."""

    __slots__ = ("rows",)

    def __init__(self) -> None:
        self.rows: Counter[tuple[str, str]] = Counter()

    def add(self, table: str, outcome: str) -> None:
        self.rows[(table, outcome)] += 1


def example_files() -> list[Path]:
    """The synthetic ADT fixture files shipped with tidemark, in the order to ingest them."""
    folder = resources.files("tidemark.tracking.hl7") / "examples"
    return sorted(Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".hl7"))


class AdtIngester:
    """Applies HL7 v2 ADT A01/A02/A03/A08 messages to the ADT example schema on ``engine``.

    Each message runs in its own transaction: a message that cannot be parsed or is refused by
    the database is rolled back, recorded in :attr:`summary` with its position, and skipped;
    what was committed before stays. A lost database connection raises
    :class:`SourceUnavailableError` (its ``data["summary"]`` says how far the ingest got).
    Replaying messages is safe: a message older than a row's ``valid_from`` does not change it.
    An unknown ``encoding`` raises :class:`ConfigurationError`. Not thread-safe; use one ingester per thread (the type caches may be shared).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        type_caches: TypeCaches | None = None,
        clock: Clock = SYSTEM_CLOCK,
        default_tz: tzinfo = UTC,
        encoding: str = "utf-8",
        create_schema: bool = True,
    ) -> None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ConfigurationError(f"unknown text encoding {encoding!r}") from None
        self.engine = engine
        self.clock = clock
        self.default_tz = default_tz
        self.encoding = encoding
        self.type_caches = type_caches if type_caches is not None else TypeCaches()
        self.location_types: TypeCache[LocationType] = self._cache(LocationType, "code")
        self.locations: TypeCache[Location] = self._cache(Location, "location_string")
        self.summary = IngestSummary()
        if create_schema:
            try:
                create_adt_schema(engine)
            except DBAPIError as exc:
                raise SourceUnavailableError(f"cannot create the ADT tables: {exc.orig}") from exc

    def _cache(self, model: type[Any], key: str) -> TypeCache[Any]:
        name = model.__tablename__
        if name in self.type_caches:
            return self.type_caches[name]
        return self.type_caches.register(model, key)

    # -- sources ---------------------------------------------------------------------------
    def ingest_file(self, path: str | Path) -> None:
        """Ingest every message of the file at ``path``; an unreadable file is one problem."""
        source = str(path)
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            self._problem(MessageProblem(source, 0, 0, f"cannot read file: {exc.strerror or exc}"))
            return
        before = self.summary.messages
        self.ingest_bytes(data, source)
        _log.info("file ingested", source=source, messages=self.summary.messages - before)

    def ingest_bytes(self, data: bytes, source: str = "<bytes>") -> None:
        """Ingest every message in ``data`` (segments separated by CR, LF or CRLF)."""
        for raw in split_messages(data, source):
            self.summary.messages += 1
            try:
                event = parse_adt(raw, default_tz=self.default_tz, encoding=self.encoding)
            except DataValidationError as exc:
                reason = str(exc.data.get("reason", exc.detail))
                self._problem(MessageProblem(source, raw.index, _line(exc, raw.line), reason))
                continue
            self._apply_in_transaction(event, source, raw.index, raw.line)

    def _apply_in_transaction(self, event: AdtEvent, source: str, index: int, line: int) -> None:
        tally = _Tally()
        try:
            with Session(self.engine) as session, session.begin():
                self._apply(session, event, tally)
        except DataValidationError as exc:
            self._problem(MessageProblem(source, index, line, exc.detail))
            return
        except (IntegrityError, DataError) as exc:
            # The data broke a constraint or a column type: this message's fault, not the server's.
            reason = f"refused by the database: {str(exc.orig).strip().splitlines()[0]}"
            self._problem(MessageProblem(source, index, line, reason))
            return
        except DBAPIError as exc:
            raise self._unavailable(exc, source, index) from exc
        except StatementError as exc:
            # Raised before reaching the database, e.g. a value a column type refused to bind.
            self._problem(MessageProblem(source, index, line, f"cannot store: {exc.orig}"))
            return
        self._commit_tally(tally)

    def _unavailable(self, exc: Exception, source: str, index: int) -> SourceUnavailableError:
        _log.error("database unavailable", source=source, index=index, error=str(exc))
        return SourceUnavailableError(
            f"database error at {source} message {index}: {exc}",
            data={"summary": self.summary},
        )

    def _problem(self, problem: MessageProblem) -> None:
        self.summary.skipped += 1
        self.summary.problems.append(problem)
        _log.warning(
            "message skipped",
            source=problem.source,
            index=problem.index,
            line=problem.line,
            reason=problem.reason,
        )

    def _commit_tally(self, tally: _Tally) -> None:
        summary = self.summary
        summary.ingested += 1
        for (table, outcome), count in tally.rows.items():
            per_table = summary.by_table.setdefault(table, {})
            per_table[outcome] = per_table.get(outcome, 0) + count
            if outcome == "created":
                summary.created += count
            elif outcome == "updated":
                summary.updated += count
            elif outcome == "audit_rows":
                summary.audit_rows += count
            elif outcome == "unchanged":
                summary.unchanged += count

    # -- applying one message --------------------------------------------------------------
    def apply(self, session: Session, event: AdtEvent) -> None:
        """Apply one parsed message inside the caller's transaction (nothing is committed and
        :attr:`summary` is not touched)."""
        self._apply(session, event, _Tally())

    def _apply(self, session: Session, event: AdtEvent, tally: _Tally) -> None:
        message = _Message(session, event, self.clock.now(), tally)
        patient = self._patient(message)
        visit = self._visit(message, patient)
        if event.trigger == "A01":
            self._admit(message, visit)
        elif event.trigger == "A02":
            self._transfer(message, visit)
        elif event.trigger == "A03":
            self._discharge(message, visit)

    def _patient(self, message: _Message) -> Patient:
        event = message.event
        state = message.row_state(Patient, {"mrn": event.mrn})
        if not state.is_stale_message:
            state.assign_interchange(event.nhs_number, "nhs_number")
            state.assign_interchange(event.surname, "surname")
            state.assign_interchange(event.given_name, "given_name")
            state.assign_interchange(event.date_of_birth, "date_of_birth")
            state.assign_interchange(event.sex, "sex")
            state.assign_interchange(event.death_datetime, "death_datetime")
        message.save(state)
        return state.entity

    def _visit(self, message: _Message, patient: Patient) -> Visit:
        event = message.event
        state = message.row_state(Visit, {"encounter": event.encounter}, {"patient_id": patient.id})
        if not state.is_stale_message:
            admission = event.admission_datetime
            if admission.is_unknown and event.trigger == "A01":
                admission = InterchangeValue.of(event.event_datetime)
            discharge = event.discharge_datetime
            if discharge.is_unknown and event.trigger == "A03":
                discharge = InterchangeValue.of(event.event_datetime)
            state.assign_if_different(patient.id, "patient_id")
            state.assign_interchange(event.patient_class, "patient_class")
            state.assign_interchange(event.hospital_service, "hospital_service")
            state.assign_interchange(admission, "admission_datetime")
            state.assign_interchange(discharge, "discharge_datetime")
            state.assign_interchange(event.discharge_disposition, "discharge_disposition")
        message.save(state)
        return state.entity

    def _location(self, message: _Message, ref: LocationRef) -> Location:
        session, tally = message.session, message.tally
        type_id = None
        if ref.type_code.is_save:
            code = ref.type_code.get()
            location_type, created = self.location_types.get_or_create(
                session, code, {"description": LOCATION_TYPE_NAMES.get(code)}
            )
            if created:
                tally.add(LocationType.__tablename__, "created")
            type_id = location_type.id
        location, created = self.locations.get_or_create(
            session,
            ref.location_string,
            {
                "facility": ref.facility.get_or(None),
                "description": ref.description.get_or(None),
                "location_type_id": type_id,
            },
        )
        if created:
            tally.add(Location.__tablename__, "created")
            return location
        changes = {
            name: value.applied_to(getattr(location, name))
            for name, value in (("facility", ref.facility), ("description", ref.description))
        }
        if not ref.type_code.is_unknown:
            changes["location_type_id"] = type_id
        if self.locations.update(session, location, changes):
            tally.add(Location.__tablename__, "updated")
        return location

    def _stay(
        self, message: _Message, visit: Visit, location: Location, admitted: datetime
    ) -> None:
        """Record that ``visit`` is at ``location`` since ``admitted`` (once, however often told)."""
        key = {"visit_id": visit.id, "location_id": location.id, "admission_datetime": admitted}
        message.save(message.row_state(LocationVisit, key))

    def _close_stays(
        self,
        message: _Message,
        visit: Visit,
        left: datetime,
        *,
        at: int | None = None,
        except_at: int | None = None,
    ) -> None:
        """Close the stays of ``visit`` still open when it ``left`` (at one location, or at any
        but ``except_at``). A replayed message finds them closed and changes nothing."""
        query = select(LocationVisit).where(
            LocationVisit.visit_id == visit.id,
            LocationVisit.discharge_datetime.is_(None),
        )
        if at is not None:
            query = query.where(LocationVisit.location_id == at)
        elif except_at is not None:
            query = query.where(LocationVisit.location_id != except_at)
        for stay in message.session.scalars(query):
            if stay.admission_datetime is not None and stay.admission_datetime > left:
                continue
            state = RowState(stay, False, message.event.message_datetime, message.stored_from)
            state.assign_if_different(left, "discharge_datetime")
            message.save(state)

    def _admit(self, message: _Message, visit: Visit) -> None:
        event = message.event
        if event.location is None:
            return
        location = self._location(message, event.location)
        admitted = event.admission_datetime.get_or(event.event_datetime)
        self._stay(message, visit, location, admitted)

    def _transfer(self, message: _Message, visit: Visit) -> None:
        event = message.event
        if event.location is None:
            raise DataValidationError(
                f"A02 message {event.control_id!r} has no new location (PV1-3)",
                data={"field": "PV1-3"},
            )
        location = self._location(message, event.location)
        moved = event.event_datetime
        if event.prior_location is not None:
            prior = self._location(message, event.prior_location)
            self._close_stays(message, visit, moved, at=prior.id)
        else:
            self._close_stays(message, visit, moved, except_at=location.id)
        self._stay(message, visit, location, moved)

    def _discharge(self, message: _Message, visit: Visit) -> None:
        event = message.event
        left = event.discharge_datetime.get_or(event.event_datetime)
        if event.location is not None:
            location = self._location(message, event.location)
            self._close_stays(message, visit, left, at=location.id)
        else:
            self._close_stays(message, visit, left)


@dataclass(slots=True)
class _Message:
    """One message being applied: its session, when it is processed, and its row outcomes."""

    session: Session
    event: AdtEvent
    stored_from: datetime
    tally: _Tally

    def row_state(
        self, model: type[E], key: dict[str, Any], defaults: dict[str, Any] | None = None
    ) -> RowState[E]:
        return RowState.get_or_create(
            self.session,
            model,
            key,
            message_datetime=self.event.message_datetime,
            defaults=defaults,
            stored_from=self.stored_from,
        )

    def save(self, state: RowState[Any]) -> RowOutcome:
        outcome = state.save_or_audit(self.session)
        table = type(state.entity).__tablename__
        self.tally.add(table, outcome.value)
        if outcome is RowOutcome.UPDATED:
            self.tally.add(table, "audit_rows")
        elif outcome is RowOutcome.CREATED:
            self.session.flush()  # children need the new primary key
        return outcome


def _line(exc: DataValidationError, default: int) -> int:
    line = exc.data.get("line")
    return line if isinstance(line, int) else default


def ingest_files(
    paths: Iterable[str | Path],
    engine: Engine,
    *,
    type_caches: TypeCaches | None = None,
    clock: Clock = SYSTEM_CLOCK,
    default_tz: tzinfo = UTC,
    encoding: str = "utf-8",
) -> IngestSummary:
    """Ingest the HL7 v2 ADT files ``paths`` into ``engine`` (tables created if missing).

    Returns the :class:`IngestSummary`; skipped messages are in ``summary.problems``. See
    :class:`AdtIngester` for the transaction and error rules.
    """
    ingester = AdtIngester(
        engine, type_caches=type_caches, clock=clock, default_tz=default_tz, encoding=encoding
    )
    for path in paths:
        ingester.ingest_file(path)
    return ingester.summary
