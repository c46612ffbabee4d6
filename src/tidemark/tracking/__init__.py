"""tidemark.tracking: write a row only when a message really changes it, audit only real changes.

* :class:`InterchangeValue` — an incoming value that is unknown (ignore), delete (null) or a value.
* :class:`RowState` — wraps a got-or-created SQLAlchemy entity, assigns only differing values and
  :meth:`~RowState.save_or_audit` sets temporal columns and writes one audit row per real change.
* :class:`TemporalMixin`, :class:`UtcDateTime`, :func:`declare_audit` — the SQLAlchemy 2 pieces;
  :class:`AuditRows` writes a bulk ingest's audit rows with one INSERT per table.
* :class:`OrderedMixin`, :func:`order_key` — message order: with them a row's final values are a
  function of the set of messages applied, whatever their arrival order and replays.
* :class:`TypeCache` / :class:`TypeCaches` — bounded, expiring caches of "type" entities
  configured by ``[type_cache]`` settings.
* :func:`create_tracking_engine` — one way to open SQLite or PostgreSQL for tracked entities.

The HL7 v2 ADT example built on these lives in :mod:`tidemark.tracking.hl7`.
"""

from ._database import create_tracking_engine, database_url
from ._interchange import InterchangeValue
from ._ordering import OrderedMixin, order_key
from ._row_state import RowOutcome, RowState
from ._temporal import AuditRows, TemporalMixin, UtcDateTime, audit_class_of, declare_audit
from ._type_cache import TypeCache, TypeCaches, TypeCacheSettings, TypeCacheStats

__all__ = [
    "AuditRows",
    "InterchangeValue",
    "OrderedMixin",
    "RowOutcome",
    "RowState",
    "TemporalMixin",
    "TypeCache",
    "TypeCacheSettings",
    "TypeCacheStats",
    "TypeCaches",
    "UtcDateTime",
    "audit_class_of",
    "create_tracking_engine",
    "database_url",
    "declare_audit",
    "order_key",
]
