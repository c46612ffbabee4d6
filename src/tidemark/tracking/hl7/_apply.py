"""Applying ADT events to the example schema: the rules, for a batch of messages in one session."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Table, event, func, insert, inspect, select, text
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from tidemark.tracking import AuditRows, InterchangeValue, RowOutcome, RowState, TypeCache

from ._messages import AdtEvent, LocationRef
from ._stays import DISCHARGE, MOVEMENT_TRIGGERS, Movement, Stay, stays_of
from ._summary import RowTally
from ._tables import Location, LocationType, LocationVisit, Patient, Visit, VisitMovement

E = TypeVar("E")

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

# What each trigger says of the visit's status (absent: nothing).
_STATUS = {
    "A01": "active",
    "A04": "active",
    "A02": "active",
    "A13": "active",
    "A03": "discharged",
    "A11": "cancelled",
}
_MOVEMENTS = cast(Table, VisitMovement.__table__)
_IN_CHUNK = 500  # values per IN (...) list: far below every engine's parameter limit
_MERGE_DEPTH = 32  # a merge chain longer than this is a loop


class KeyAllocator:
    """Primary keys handed out before the INSERT, so one flush writes each table's new rows in
    one statement (SQLite cannot batch INSERTs whose keys the database generates) and rows can
    refer to each other before they are written.

    SQLite: the values after the table's largest key, read once per transaction (a concurrent
    writer makes the transaction fail rather than reuse a key). PostgreSQL: blocks of values
    from the column's sequence, which never hands a value out twice. :meth:`watch` gives keys
    to every new row of a session (audit rows included) just before it is flushed.
    """

    _BLOCK = 256

    def __init__(self) -> None:
        self._next: dict[str, int] = {}  # SQLite: the next free key per table
        self._free: dict[str, list[int]] = {}  # PostgreSQL: fetched, unused sequence values
        self._sequences: dict[str, str] = {}
        self._columns: dict[type[Any], str | None] = {}

    def next_id(self, session: Session, model: type[Any], reserve: int = 0) -> int:
        """A primary key for a new ``model`` row (one integer key column); ``reserve`` says how
        many more are about to be asked for (PostgreSQL then fetches them in one query)."""
        column = self._column(model)
        if column is None:
            raise TypeError(f"{model.__name__} has no single integer primary key")
        table = model.__table__
        if session.get_bind().dialect.name == "sqlite":
            key = self._next.get(table.name)
            if key is None:
                key = (session.scalar(select(func.max(table.c[column]))) or 0) + 1
            self._next[table.name] = key + 1
            return key
        free = self._free.get(table.name)
        if not free:
            count = max(self._BLOCK, reserve + 1)
            free = self._free[table.name] = self._fetch(session, table.name, column, count)
        return free.pop()

    def watch(self, session: Session) -> None:
        """Give a key to every new row of ``session`` that has none, at each flush."""
        event.listen(session, "before_flush", self._before_flush)

    def end_transaction(self) -> None:
        """Call when a transaction ends: SQLite keys are only good within one."""
        self._next.clear()

    def _before_flush(self, session: Session, _context: Any, _instances: Any) -> None:
        keyless: dict[type[Any], list[tuple[Any, str]]] = {}
        for entity in session.new:
            model = type(entity)
            column = self._column(model)
            if column is not None:
                attribute = inspect(model).get_property_by_column(model.__table__.c[column]).key
                if getattr(entity, attribute) is None:
                    keyless.setdefault(model, []).append((entity, attribute))
        for model, entities in keyless.items():
            for index, (entity, attribute) in enumerate(entities):
                reserve = len(entities) - 1 - index
                setattr(entity, attribute, self.next_id(session, model, reserve=reserve))

    def _column(self, model: type[Any]) -> str | None:
        if model not in self._columns:
            keys = inspect(model).primary_key
            integer = len(keys) == 1 and keys[0].type.python_type is int
            self._columns[model] = keys[0].name if integer else None
        return self._columns[model]

    def _fetch(self, session: Session, table: str, column: str, count: int) -> list[int]:
        sequence = self._sequences.get(table)
        if sequence is None:
            sequence = session.scalar(
                text("SELECT pg_get_serial_sequence(:table, :column)"),
                {"table": table, "column": column},
            )
            self._sequences[table] = sequence
        values = session.scalars(
            text("SELECT nextval(:sequence) FROM generate_series(1, :count)"),
            {"sequence": sequence, "count": count},
        ).all()
        return sorted(values, reverse=True)


_UPDATED_TOGETHER: dict[type[Any], tuple[str, ...]] = {}


def update_whole_rows(session: Session) -> None:
    """Make every UPDATE of a patient, visit or stay set all its columns, at each flush.

    SQLAlchemy batches UPDATEs into one statement only while consecutive rows change the same
    columns; rows of a batch change different ones. Writing whole rows costs a few bytes more
    and turns hundreds of statements per batch into one per table.
    """
    event.listen(session, "before_flush", _flag_whole_rows)


def _flag_whole_rows(session: Session, _context: Any, _instances: Any) -> None:
    for entity in session.dirty:
        model = type(entity)
        keys = _UPDATED_TOGETHER.get(model)
        if keys is None:
            if model not in (Patient, Visit, LocationVisit):
                continue
            mapper = inspect(model)
            primary = set(mapper.primary_key)
            keys = _UPDATED_TOGETHER[model] = tuple(
                attr.key for attr in mapper.column_attrs if attr.columns[0] not in primary
            )
        loaded = inspect(entity).dict
        # A row written earlier in the batch without some columns has them unloaded: skip it.
        # (The rules assign a column only when its value changes: dirty means modified.)
        if all(key in loaded for key in keys):
            for key in keys:
                flag_modified(entity, key)


class AdtBatch:
    """The rows a batch of messages works on, in one session, and the rules that change them.

    The rules make the final rows a function of the set of messages: patient and visit
    attributes are last-writer-wins per attribute in message order (a late message fills what
    no newer message said and changes nothing else); a visit's stays are derived from all its
    movements in message order (a late admission never opens a stay after the discharge, a
    cancellation undoes its event whichever arrived first); a merged patient's visits belong to
    the surviving patient, whether they arrive before or after the merge. Rows are loaded with
    one query per table, given primary keys up front and written by one flush.

    Call :meth:`preload` with the batch's events first, then :meth:`apply` for each event in
    arrival order, then :meth:`write`. Rows created by one message are seen by the next. Not
    thread-safe.
    """

    def __init__(
        self,
        session: Session,
        *,
        keys: KeyAllocator,
        location_types: TypeCache[LocationType],
        locations: TypeCache[Location],
    ) -> None:
        self.session = session
        self.keys = keys
        self.location_types = location_types
        self.location_cache = locations
        self.patients: dict[str, Patient] = {}
        self.visits: dict[str, Visit] = {}
        # Movements are only ever inserted: kept as plain values, written with one INSERT.
        self.movements: dict[int, list[Movement]] = {}
        self.new_movements: list[dict[str, Any]] = []
        self.audit_rows = AuditRows()
        self.stays: dict[int, list[LocationVisit]] = {}
        self.locations: dict[str, Location] = {}
        self.location_type_ids: dict[str, int] = {}

    # -- loading ---------------------------------------------------------------------------
    def preload(self, events: Iterable[AdtEvent]) -> None:
        """Load the patients, visits, movements and stays the events refer to (one query per
        table and 500 keys)."""
        mrns: set[str] = set()
        encounters: set[str] = set()
        places: set[str] = set()
        for adt_event in events:
            mrns.add(adt_event.mrn)
            for ref in (adt_event.location, adt_event.prior_location):
                if ref is not None:
                    places.add(ref.location_string)
            for merge in adt_event.merges:
                mrns.update((merge.surviving_mrn, merge.merged_mrn))
            if adt_event.encounter is not None:
                encounters.add(adt_event.encounter)
        mrns.difference_update(self.patients)
        encounters.difference_update(self.visits)
        places.difference_update(self.locations)
        for key, location in self.location_cache.get_many(self.session, places).items():
            self.locations[str(key)] = location
        for patient in self._load(Patient, Patient.mrn, mrns):
            self.patients[patient.mrn] = patient
        visits = list(self._load(Visit, Visit.encounter, encounters))
        for visit in visits:
            self.visits[visit.encounter] = visit
            self.movements[visit.id] = []
            self.stays[visit.id] = []
        visit_ids = [visit.id for visit in visits]
        table = _MOVEMENTS
        columns = select(
            table.c.visit_id,
            table.c.message_order,
            table.c.trigger,
            table.c.moved_at,
            table.c.location_id,
        )
        for start in range(0, len(visit_ids), _IN_CHUNK):
            chunk = sorted(visit_ids)[start : start + _IN_CHUNK]
            for visit_id, order, trigger, at, location in self.session.execute(
                columns.where(table.c.visit_id.in_(chunk))
            ):
                self.movements[visit_id].append(Movement(order, trigger, at, location))
        for stay in self._load(LocationVisit, LocationVisit.visit_id, visit_ids):
            self.stays[stay.visit_id].append(stay)

    def write(self) -> None:
        """Store what the messages applied so far changed: the flush of the changed rows, then
        the audit rows and movements, one INSERT per table."""
        self.session.flush()
        self.audit_rows.write(self.session)
        if self.new_movements:
            self.session.execute(insert(_MOVEMENTS), self.new_movements)
            self.new_movements = []

    def _load(self, model: type[E], column: Any, values: Iterable[Any]) -> Iterable[E]:
        ordered = sorted(values)
        for start in range(0, len(ordered), _IN_CHUNK):
            chunk = ordered[start : start + _IN_CHUNK]
            yield from self.session.scalars(select(model).where(column.in_(chunk)))

    # -- one message -----------------------------------------------------------------------
    def apply(self, event: AdtEvent, stored_from: datetime) -> tuple[RowTally, bool]:
        """Apply ``event``; returns its row outcomes and whether it was stale (a newer message
        had been applied to its patient or visit before)."""
        message = _Message(self, event, stored_from)
        patient, stale = self._patient(message)
        for merge in event.merges:
            self._merge(message, merge.surviving_mrn, merge.merged_mrn)
        if event.encounter is not None:
            stale = self._visit(message, patient) or stale
        return message.tally, stale

    def _patient(self, message: _Message) -> tuple[Patient, bool]:
        event = message.event
        state = self._patient_state(message, event.mrn)
        stale = state.is_stale_message
        state.assign_interchange(event.nhs_number, "nhs_number")
        state.assign_interchange(event.surname, "surname")
        state.assign_interchange(event.given_name, "given_name")
        state.assign_interchange(event.date_of_birth, "date_of_birth")
        state.assign_interchange(event.sex, "sex")
        state.assign_interchange(event.death_datetime, "death_datetime")
        message.save(state)
        return state.entity, stale

    def _patient_state(self, message: _Message, mrn: str) -> RowState[Patient]:
        patient = self.patients.get(mrn)
        created = patient is None
        if patient is None:
            patient = Patient(id=self.keys.next_id(self.session, Patient), mrn=mrn)
            self.patients[mrn] = patient
        return message.row_state(patient, created)

    def _resolve(self, patient: Patient) -> Patient:
        """The patient whose record holds ``patient``'s visits: itself, or the end of its
        merge chain."""
        seen = {patient.id}
        for _ in range(_MERGE_DEPTH):
            target_id = patient.merged_into_id
            if target_id is None or target_id in seen:
                return patient
            seen.add(target_id)
            patient = self.session.get_one(Patient, target_id)
        return patient

    def _merge(self, message: _Message, surviving_mrn: str, merged_mrn: str) -> None:
        survivor = self.patients.get(surviving_mrn)
        if survivor is None:
            state = self._patient_state(message, surviving_mrn)
            message.save(state)
            survivor = state.entity
        if inspect(survivor).pending:
            # A patient row is about to refer to another: store the one it refers to first.
            self.session.flush()
        merged_state = self._patient_state(message, merged_mrn)
        merged_state.assign_if_different(survivor.id, "merged_into_id")
        message.save(merged_state)
        merged = merged_state.entity
        target = self._resolve(merged)
        if target.id == merged.id:
            return
        self.session.flush()  # visits of this batch too
        visits = self.session.scalars(select(Visit).where(Visit.patient_id == merged.id))
        for visit in visits:
            moved = RowState(visit, False, message.event.message_datetime, message.stored_from)
            moved.assign_if_different(target.id, "patient_id")
            message.save(moved)

    def _visit(self, message: _Message, patient: Patient) -> bool:
        event = message.event
        encounter = event.encounter
        assert encounter is not None
        target = self._resolve(patient)
        visit = self.visits.get(encounter)
        created = visit is None
        if visit is None:
            visit = Visit(
                id=self.keys.next_id(self.session, Visit),
                encounter=encounter,
                patient_id=target.id,
            )
            self.visits[encounter] = visit
            self.movements[visit.id] = []
            self.stays[visit.id] = []
        state = message.row_state(visit, created)
        stale = state.is_stale_message
        admission, discharge = event.admission_datetime, event.discharge_datetime
        disposition = event.discharge_disposition
        trigger = event.trigger
        if trigger in ("A01", "A04") and admission.is_unknown:
            admission = InterchangeValue.of(event.event_datetime)
        elif trigger == "A11":
            admission = InterchangeValue.delete()
        if trigger == DISCHARGE and discharge.is_unknown:
            discharge = InterchangeValue.of(event.event_datetime)
        elif trigger == "A13":
            discharge = disposition = InterchangeValue.delete()
        status = _STATUS.get(trigger)
        state.assign_if_different(target.id, "patient_id")
        if status is not None:
            state.assign_if_different(status, "status")
        state.assign_interchange(event.patient_class, "patient_class")
        state.assign_interchange(event.hospital_service, "hospital_service")
        state.assign_interchange(admission, "admission_datetime")
        state.assign_interchange(discharge, "discharge_datetime")
        state.assign_interchange(disposition, "discharge_disposition")
        message.save(state)
        if trigger in MOVEMENT_TRIGGERS:
            self._movement(message, visit, admission, discharge)
        return stale

    # -- movements and stays ---------------------------------------------------------------
    def _movement(
        self,
        message: _Message,
        visit: Visit,
        admission: InterchangeValue[datetime],
        discharge: InterchangeValue[datetime],
    ) -> None:
        event = message.event
        movements = self.movements[visit.id]
        if any(movement.order == event.order_key for movement in movements):
            return  # a replay: the stays already account for it
        at = event.event_datetime
        if event.trigger in ("A01", "A04"):
            at = admission.get_or(at)
        elif event.trigger == DISCHARGE:
            at = discharge.get_or(at)
        location = self._location(message, event.location) if event.location else None
        location_id = location.id if location is not None else None
        movements.append(Movement(event.order_key, event.trigger, at, location_id))
        self.new_movements.append(
            {
                "visit_id": visit.id,
                "message_order": event.order_key,
                "trigger": event.trigger,
                "moved_at": at,
                "location_id": location_id,
            }
        )
        message.tally.add(VisitMovement.__tablename__, "created")
        self._reconcile_stays(message, visit)

    def _reconcile_stays(self, message: _Message, visit: Visit) -> None:
        """Make the visit's stays those its movements describe: create, close or reopen, and
        delete (with an audit row) the stays an undone event had made."""
        desired: dict[tuple[int, datetime | None], Stay] = {
            (stay.location, stay.start): stay for stay in stays_of(self.movements[visit.id])
        }
        rows = self.stays[visit.id]
        kept: list[LocationVisit] = []
        for row in rows:
            key = (row.location_id, row.admission_datetime)
            stay = desired.pop(key, None)
            if stay is not None and stay.end == row.discharge_datetime:
                message.tally.add(LocationVisit.__tablename__, "unchanged")
                kept.append(row)
                continue
            if stay is None and inspect(row).pending:
                self.session.flush()  # created earlier in this batch: store it to delete it
            state = message.row_state(row, False)
            if stay is None:
                message.save(state, delete=True)
                continue
            state.assign_if_different(stay.end, "discharge_datetime")
            message.save(state)
            kept.append(row)
        for stay in desired.values():
            row = LocationVisit(
                id=self.keys.next_id(self.session, LocationVisit),
                visit_id=visit.id,
                location_id=stay.location,
                admission_datetime=stay.start,
                discharge_datetime=stay.end,
            )
            message.save(message.row_state(row, True))
            kept.append(row)
        self.stays[visit.id] = kept

    # -- locations (type entities) ---------------------------------------------------------
    def _location(self, message: _Message, ref: LocationRef) -> Location:
        location = self.locations.get(ref.location_string)
        if location is None:
            location = self._find_or_create_location(message, ref)
            self.locations[ref.location_string] = location
            return location
        self._refresh_location(message, location, ref)
        return location

    def _find_or_create_location(self, message: _Message, ref: LocationRef) -> Location:
        def new_location() -> Location:
            return Location(
                id=self.keys.next_id(self.session, Location),
                location_string=ref.location_string,
                facility=ref.facility.get_or(None),
                description=ref.description.get_or(None),
                location_type_id=self._location_type_id(message, ref.type_code),
                message_order=message.event.order_key,
            )

        location, created = self.location_cache.get_or_create(
            self.session, ref.location_string, factory=new_location, flush=False
        )
        if created:
            message.tally.add(Location.__tablename__, "created")
        else:
            self._refresh_location(message, location, ref)
        return location

    def _location_type_id(self, message: _Message, code: InterchangeValue[str]) -> int | None:
        if not code.is_save:
            return None
        known = self.location_type_ids.get(code.get())
        if known is not None:
            return known
        location_type, created = self.location_types.get_or_create(
            self.session,
            code.get(),
            factory=lambda: LocationType(
                id=self.keys.next_id(self.session, LocationType),
                code=code.get(),
                description=LOCATION_TYPE_NAMES.get(code.get()),
            ),
            flush=False,
        )
        if created:
            message.tally.add(LocationType.__tablename__, "created")
        self.location_type_ids[code.get()] = location_type.id
        return location_type.id

    def _refresh_location(self, message: _Message, location: Location, ref: LocationRef) -> None:
        """Take the message's description of the location if it is newer than the one stored,
        or where the stored one is unknown."""
        order = message.event.order_key
        newer = location.message_order is None or order > location.message_order
        changes: dict[str, Any] = {}
        for name, value in (("facility", ref.facility), ("description", ref.description)):
            current = getattr(location, name)
            if value.is_save and current is None:
                changes[name] = value.get()
            elif newer and not value.is_unknown and value.applied_to(current) != current:
                changes[name] = value.applied_to(current)
        if not ref.type_code.is_unknown and (newer or location.location_type_id is None):
            type_id = self._location_type_id(message, ref.type_code)
            if type_id != location.location_type_id and (newer or type_id is not None):
                changes["location_type_id"] = type_id
        if not changes:
            return
        if newer:
            changes["message_order"] = order
        if self.location_cache.update(self.session, location, changes):
            message.tally.add(Location.__tablename__, "updated")


class _Message:
    """One message being applied: its batch, its event, when it is processed, its row outcomes."""

    __slots__ = ("batch", "event", "stored_from", "tally")

    def __init__(self, batch: AdtBatch, event: AdtEvent, stored_from: datetime) -> None:
        self.batch = batch
        self.event = event
        self.stored_from = stored_from
        self.tally = RowTally()

    def row_state(self, entity: E, created: bool) -> RowState[E]:
        event = self.event
        ordered = isinstance(entity, (Patient, Visit))
        return RowState(
            entity,
            created,
            event.message_datetime,
            self.stored_from,
            event.order_key if ordered else None,
        )

    def save(self, state: RowState[Any], *, delete: bool = False) -> RowOutcome:
        session, rows = self.batch.session, self.batch.audit_rows
        if delete:
            outcome = state.delete_or_audit(session, rows)
        else:
            outcome = state.save_or_audit(session, rows)
        table = type(state.entity).__tablename__
        self.tally.add(table, outcome.value)
        if outcome in (RowOutcome.UPDATED, RowOutcome.DELETED):
            self.tally.add(table, "audit_rows")
        return outcome
