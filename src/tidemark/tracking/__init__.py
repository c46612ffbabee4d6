"""tidemark.tracking: write a row only when a message really changes it, audit only real changes.

* :class:`InterchangeValue` — an incoming value that is unknown (ignore), delete (null) or a value.
* :class:`RowState` — wraps a got-or-created SQLAlchemy entity, assigns only differing values and
  :meth:`~RowState.save_or_audit` sets temporal columns and writes one audit row per real change.
* :class:`TemporalMixin`, :class:`UtcDateTime`, :func:`declare_audit` — the SQLAlchemy 2 pieces.
* :class:`TypeCache` / :class:`TypeCaches` — bounded, expiring caches of "type" entities
  configured by ``[type_cache]`` settings.
* The HL7 v2 ADT example: :func:`ingest_files` into the schema of :class:`AdtBase`.
"""

from ._adt_ingest import AdtIngester, IngestSummary, MessageProblem, example_files, ingest_files
from ._adt_model import (
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
from ._adt_parse import AdtEvent, LocationRef, RawMessage, parse_adt, split_messages
from ._database import create_tracking_engine, database_url
from ._interchange import HL7_NULL, InterchangeValue, parse_hl7_date, parse_hl7_datetime
from ._row_state import RowOutcome, RowState
from ._temporal import TemporalMixin, UtcDateTime, audit_class_of, declare_audit
from ._type_cache import TypeCache, TypeCaches, TypeCacheSettings, TypeCacheStats

__all__ = [
    "HL7_NULL",
    "AdtBase",
    "AdtEvent",
    "AdtIngester",
    "IngestSummary",
    "InterchangeValue",
    "Location",
    "LocationRef",
    "LocationType",
    "LocationVisit",
    "LocationVisitAudit",
    "MessageProblem",
    "Patient",
    "PatientAudit",
    "RawMessage",
    "RowOutcome",
    "RowState",
    "TemporalMixin",
    "TypeCache",
    "TypeCacheSettings",
    "TypeCacheStats",
    "TypeCaches",
    "UtcDateTime",
    "Visit",
    "VisitAudit",
    "audit_class_of",
    "create_adt_schema",
    "create_tracking_engine",
    "database_url",
    "declare_audit",
    "example_files",
    "ingest_files",
    "parse_adt",
    "parse_hl7_date",
    "parse_hl7_datetime",
    "split_messages",
]
