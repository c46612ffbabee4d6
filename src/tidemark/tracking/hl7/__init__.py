"""tidemark.tracking.hl7: the HL7 v2 ADT example of tracked entity updates.

* :func:`ingest_files` / :class:`AdtIngester` — apply ADT A01/A02/A03/A08 messages to the
  schema of :class:`AdtBase` (patients, visits, locations and their audit tables), each message
  in its own transaction, through :class:`~tidemark.tracking.RowState` and type caches.
* :func:`split_messages` / :func:`parse_adt` — HL7 v2 files → messages → :class:`AdtEvent`.
* :func:`hl7_value`, :func:`parse_hl7_datetime`, :func:`parse_hl7_date` — HL7 field texts as
  :class:`~tidemark.tracking.InterchangeValue` (``""`` is :data:`HL7_NULL`: delete), datetimes
  and dates.
* :func:`example_files` — the synthetic ADT files shipped with tidemark.
"""

from ._ingest import AdtIngester, IngestSummary, MessageProblem, example_files, ingest_files
from ._messages import AdtEvent, LocationRef, RawMessage, parse_adt, split_messages
from ._tables import (
    AdtBase,
    Location,
    LocationType,
    LocationVisit,
    LocationVisitAudit,
    Patient,
    PatientAudit,
    Visit,
    VisitAudit,
    create_adt_schema,
)
from ._values import HL7_NULL, hl7_value, parse_hl7_date, parse_hl7_datetime

__all__ = [
    "HL7_NULL",
    "AdtBase",
    "AdtEvent",
    "AdtIngester",
    "IngestSummary",
    "Location",
    "LocationRef",
    "LocationType",
    "LocationVisit",
    "LocationVisitAudit",
    "MessageProblem",
    "Patient",
    "PatientAudit",
    "RawMessage",
    "Visit",
    "VisitAudit",
    "create_adt_schema",
    "example_files",
    "hl7_value",
    "ingest_files",
    "parse_adt",
    "parse_hl7_date",
    "parse_hl7_datetime",
    "split_messages",
]
