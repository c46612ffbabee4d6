"""SQLAlchemy 2 pieces for temporal entities: aware UTC datetimes, the mixin, audit declarations."""

from __future__ import annotations

import threading
import weakref
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Dialect, Integer, Table, insert, inspect
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.types import TypeDecorator

AUDIT_ID = "audit_id"
VALID_FROM, STORED_FROM = "valid_from", "stored_from"
VALID_UNTIL, STORED_UNTIL = "valid_until", "stored_until"


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp column that takes and returns aware UTC datetimes on every engine.

    PostgreSQL stores ``timestamptz``; SQLite, which has no time zones, stores the UTC wall time.
    Binding a naive datetime raises ``ValueError``: a naive time has no meaning across engines,
    and silently guessing its zone is how audit intervals end up an hour off.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"UtcDateTime needs an aware datetime, got naive {value!r}")
        moment = value.astimezone(UTC)
        return moment.replace(tzinfo=None) if dialect.name == "sqlite" else moment

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# BIGINT on PostgreSQL; SQLite only auto-increments a column declared exactly INTEGER.
AuditIdType = BigInteger().with_variant(Integer(), "sqlite")


class TemporalMixin:
    """Adds ``valid_from`` (the time of the message that last changed the row) and
    ``stored_from`` (when that change was processed). Both are set by
    :meth:`RowState.save_or_audit`, never by hand.
    """

    valid_from: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    stored_from: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)


_audit_lock = threading.Lock()
_audit_classes: weakref.WeakKeyDictionary[type[Any], type[Any]] = weakref.WeakKeyDictionary()


def _declarative_base_of(entity: type[Any]) -> type[DeclarativeBase]:
    for klass in entity.__mro__:
        if (
            "registry" in klass.__dict__
            and isinstance(klass, type)
            and issubclass(klass, DeclarativeBase)
            and klass is not DeclarativeBase
        ):
            return klass
    raise TypeError(f"{entity.__name__} is not a mapped class of a DeclarativeBase")


def declare_audit(
    entity: type[Any],
    *,
    base: type[DeclarativeBase] | None = None,
    tablename: str | None = None,
    classname: str | None = None,
) -> type[Any]:
    """Declare and register the audit class of ``entity`` (a mapped :class:`TemporalMixin` class).

    The audit table ``<table>_audit`` holds every column of the entity under the same attribute
    names (nullable, without keys, uniqueness or foreign keys, so history never blocks a change
    or a delete of the live row), an ``audit_id`` primary key, an index on the entity's primary
    key, and ``valid_until`` / ``stored_until``. Call it once per entity, at import time, before
    ``metadata.create_all``. Raises ``TypeError`` for an entity that is not temporal, has a
    column named like an audit column, or already has an audit class.
    """
    mapper = inspect(entity)
    attributes = {attr.key: attr for attr in mapper.column_attrs}
    for needed in (VALID_FROM, STORED_FROM):
        if needed not in attributes:
            raise TypeError(f"{entity.__name__} has no {needed!r} column: mix in TemporalMixin")
    for reserved in (AUDIT_ID, VALID_UNTIL, STORED_UNTIL):
        if reserved in attributes:
            raise TypeError(f"{entity.__name__} already has a column named {reserved!r}")
    base = base or _declarative_base_of(entity)
    table = mapper.local_table
    if not isinstance(table, Table):
        raise TypeError(f"{entity.__name__} is not mapped to a single table")
    primary = {id(column) for column in mapper.primary_key}
    columns: list[Column[Any]] = [
        Column(AUDIT_ID, AuditIdType, primary_key=True, autoincrement=True)
    ]
    for key, attr in attributes.items():
        source = attr.columns[0]
        columns.append(
            Column(
                source.name,
                source.type,
                key=key,
                nullable=True,
                index=id(source) in primary,
            )
        )
    columns += [
        Column(VALID_UNTIL, UtcDateTime(), nullable=False),
        Column(STORED_UNTIL, UtcDateTime(), nullable=False),
    ]
    audit_table = Table(
        tablename or f"{table.name}_audit", base.metadata, *columns, schema=table.schema
    )
    with _audit_lock:
        if entity in _audit_classes:
            raise TypeError(f"{entity.__name__} already has an audit class")
        audit = type(
            classname or f"{entity.__name__}Audit",
            (base,),
            {
                "__table__": audit_table,
                "__module__": entity.__module__,
                "__doc__": f"Audit rows of {entity.__name__}: its values before each real change.",
            },
        )
        _audit_classes[entity] = audit
    return audit


def audit_class_of(entity: type[Any]) -> type[Any] | None:
    """The audit class :func:`declare_audit` registered for ``entity`` (or a parent), or None."""
    for klass in entity.__mro__:
        audit = _audit_classes.get(klass)
        if audit is not None:
            return audit
    return None


class AuditRows:
    """Audit rows collected for one INSERT per audit table instead of one ORM object each.

    Pass it to :meth:`RowState.save_or_audit` (and ``delete_or_audit``) for a bulk ingest, then
    call :meth:`write` in the same transaction, after the flush that stores the rows they
    audit. Not thread-safe.
    """

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: dict[type[Any], list[dict[str, Any]]] = {}

    def add(self, audit_class: type[Any], values: dict[str, Any]) -> None:
        """Queue one audit row of ``audit_class`` (attribute name → value)."""
        self._rows.setdefault(audit_class, []).append(values)

    def __len__(self) -> int:
        return sum(len(rows) for rows in self._rows.values())

    def write(self, session: Session) -> int:
        """INSERT the queued rows (one statement per audit table) and forget them; returns
        how many were written."""
        written = 0
        for audit_class, rows in self._rows.items():
            if rows:
                session.execute(insert(audit_class.__table__), rows)
                written += len(rows)
        self._rows.clear()
        return written

    def clear(self) -> None:
        """Forget the queued rows (after a rollback)."""
        self._rows.clear()
