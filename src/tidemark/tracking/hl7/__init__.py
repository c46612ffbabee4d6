"""tidemark.tracking.hl7: the HL7 v2 ADT example of tracked entity updates.

* :func:`ingest_files` / :class:`AdtIngester` — apply ADT A01/A02/A03/A04/A08/A11/A12/A13/A40
  messages to the schema of :class:`AdtBase` (patients, visits, movements, locations, stays
  and their audit tables), many messages per transaction, so that the final rows are a
  function of the set of messages whatever their arrival order and replays.
* :class:`MessageSplitter` / :func:`split_messages` / :func:`parse_adt` — byte streams (MLLP
  frames or plain lines) → messages → :class:`AdtEvent`.
* :func:`hl7_value`, :func:`parse_hl7_datetime`, :func:`parse_hl7_date` — HL7 field texts as
  :class:`~tidemark.tracking.InterchangeValue` (``""`` is :data:`HL7_NULL`: delete), datetimes
  and :class:`PartialDate` values that keep their precision.
* :class:`MllpListener` — ADT messages over MLLP, each acknowledged once committed.
* :func:`example_files` — the synthetic ADT files shipped with tidemark.
"""

from ._framing import MessageSplitter, RawMessage, split_messages
from ._ingest import AdtIngester, MessageResult, example_files, ingest_files
from ._listener import MllpListener
from ._messages import AdtEvent, FieldWarning, LocationRef, PatientMerge, parse_adt
from ._summary import IngestSummary, MessageProblem
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
    VisitMovement,
    create_adt_schema,
)
from ._values import HL7_NULL, PartialDate, hl7_value, parse_hl7_date, parse_hl7_datetime

__all__ = [
    "HL7_NULL",
    "AdtBase",
    "AdtEvent",
    "AdtIngester",
    "FieldWarning",
    "IngestSummary",
    "Location",
    "LocationRef",
    "LocationType",
    "LocationVisit",
    "LocationVisitAudit",
    "MessageProblem",
    "MessageResult",
    "MessageSplitter",
    "MllpListener",
    "PartialDate",
    "Patient",
    "PatientAudit",
    "PatientMerge",
    "RawMessage",
    "Visit",
    "VisitAudit",
    "VisitMovement",
    "create_adt_schema",
    "example_files",
    "hl7_value",
    "ingest_files",
    "parse_adt",
    "parse_hl7_date",
    "parse_hl7_datetime",
    "split_messages",
]
