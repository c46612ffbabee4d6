"""RowState: wrap a got-or-created entity, change it only where values differ, then save or audit."""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import inspect
from sqlalchemy.orm import QueryableAttribute, Session

from tidemark.core import SYSTEM_CLOCK, Clock, ConfigurationError, get_logger

from ._interchange import InterchangeValue
from ._lookup import find_by_key
from ._ordering import FIELD_ORDER, MESSAGE_ORDER
from ._temporal import (
    STORED_FROM,
    STORED_UNTIL,
    VALID_FROM,
    VALID_UNTIL,
    AuditRows,
    audit_class_of,
)

E = TypeVar("E")

_log = get_logger("tracking")
_TEMPORAL = frozenset((VALID_FROM, STORED_FROM))
_ORDERING = frozenset((MESSAGE_ORDER, FIELD_ORDER))
# Bookkeeping columns: set by save_or_audit, never assigned, not data (no audit row of their own).
_BOOKKEEPING = _TEMPORAL | _ORDERING


class RowOutcome(enum.StrEnum):
    """What :meth:`RowState.save_or_audit` (or :meth:`RowState.delete_or_audit`) did."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DELETED = "deleted"


class _Shape:
    """What RowState needs to know of a mapped class, computed once per class (hot path)."""

    __slots__ = ("data_keys", "keys", "ordered")

    def __init__(self, entity_class: type[Any]) -> None:
        self.keys = tuple(attr.key for attr in inspect(entity_class).column_attrs)
        missing = _TEMPORAL.difference(self.keys)
        if missing:
            raise TypeError(
                f"{entity_class.__name__} has no {', '.join(sorted(missing))} column: "
                "mix in TemporalMixin"
            )
        self.data_keys = tuple(key for key in self.keys if key not in _BOOKKEEPING)
        self.ordered = _ORDERING.issubset(self.keys)


_shapes: dict[type[Any], _Shape] = {}


def _shape_of(entity_class: type[Any]) -> _Shape:
    shape = _shapes.get(entity_class)
    if shape is None:
        shape = _shapes[entity_class] = _Shape(entity_class)
    return shape


class RowState(Generic[E]):
    """The state of one entity while a message is applied to it.

    ``created`` says whether the entity was just built (not yet in the database).
    ``message_datetime`` is when the message's data became valid; ``stored_from`` is when it is
    processed. Change attributes only through :meth:`assign_interchange` and
    :meth:`assign_if_different`, then call :meth:`save_or_audit` once. The original values are
    captured at construction, so :attr:`is_updated` compares the final state with them (a value
    changed and changed back is no update; a change made directly on the entity still counts).

    ``order_key`` (see :func:`~tidemark.tracking.order_key`) turns on message order for an
    :class:`~tidemark.tracking.OrderedMixin` entity: each assignment then happens only when this
    message is newer than the one the stored value came from. Without it, assignments are
    unconditional. Not thread-safe, like the session that holds the entity.
    """

    __slots__ = (
        "_original",
        "_saved",
        "_shape",
        "_stamps",
        "created",
        "entity",
        "message_datetime",
        "order_key",
        "stored_from",
    )

    def __init__(
        self,
        entity: E,
        created: bool,
        message_datetime: datetime,
        stored_from: datetime,
        order_key: str | None = None,
    ) -> None:
        for name, moment in (("message_datetime", message_datetime), ("stored_from", stored_from)):
            if moment.tzinfo is None or moment.utcoffset() is None:
                raise ValueError(f"RowState {name} must be an aware datetime, got {moment!r}")
        self.entity = entity
        self.created = created
        self.message_datetime = message_datetime
        self.stored_from = stored_from
        self._shape = shape = _shape_of(type(entity))
        if order_key is not None and not shape.ordered:
            raise TypeError(f"{type(entity).__name__} has no message order: mix in OrderedMixin")
        self.order_key = order_key
        self._original: dict[str, Any] = (
            {} if created else {key: getattr(entity, key) for key in shape.keys}
        )
        # The attribute stamps as this message leaves them (None: message order is off).
        self._stamps: dict[str, str] | None = None
        if order_key is not None:
            self._stamps = {} if created else dict(self._original[FIELD_ORDER] or {})
        self._saved = False

    @classmethod
    def get_or_create(
        cls,
        session: Session,
        model: type[E],
        key: Mapping[str, Any],
        *,
        message_datetime: datetime,
        defaults: Mapping[str, Any] | None = None,
        stored_from: datetime | None = None,
        clock: Clock = SYSTEM_CLOCK,
        order_key: str | None = None,
    ) -> RowState[E]:
        """Find the ``model`` row whose attributes equal ``key`` or build a new one (not yet added).

        A new entity gets ``key`` and ``defaults`` as attributes. ``stored_from`` (the processing
        time) defaults to ``clock.now()``; pass one value for every row of a message. Raises
        ``sqlalchemy.exc.MultipleResultsFound`` when ``key`` matches several rows.
        """
        entity = find_by_key(session, model, key)
        created = entity is None
        if entity is None:
            entity = model(**key, **(defaults or {}))
        return cls(entity, created, message_datetime, stored_from or clock.now(), order_key)

    # -- state -----------------------------------------------------------------------------
    @property
    def is_created(self) -> bool:
        """True when the entity is new (it will be inserted)."""
        return self.created

    @property
    def is_updated(self) -> bool:
        """True when an existing entity's values now differ from the original ones."""
        if self.created:
            return False
        entity, original = self.entity, self._original
        return any(getattr(entity, key) != original[key] for key in self._shape.data_keys)

    @property
    def is_stale_message(self) -> bool:
        """True when the entity already holds data from a newer message.

        With an ``order_key``: a newer message (by order key) was applied to the row. Without:
        the row's ``valid_from`` is after this message's time (callers that do not use message
        order skip such messages so that a late one never rolls back newer data).
        """
        if self.created:
            return False
        if self.order_key is not None:
            newest = self._original[MESSAGE_ORDER]
            return newest is not None and self.order_key < newest
        valid_from = self._original.get(VALID_FROM)
        return valid_from is not None and self.message_datetime < valid_from

    def changes(self) -> dict[str, tuple[Any, Any]]:
        """``{attribute: (original, current)}`` for every attribute that differs (empty when created)."""
        if self.created:
            return {}
        entity, original = self.entity, self._original
        return {
            key: (original[key], getattr(entity, key))
            for key in self._shape.data_keys
            if getattr(entity, key) != original[key]
        }

    # -- changing --------------------------------------------------------------------------
    def _key(self, attribute: str | QueryableAttribute[Any]) -> str:
        key = attribute if isinstance(attribute, str) else attribute.key
        if key not in self._shape.keys:
            raise AttributeError(f"{type(self.entity).__name__} has no column attribute {key!r}")
        if key in _BOOKKEEPING:
            raise AttributeError(f"{key!r} is set by save_or_audit, not assigned")
        if self._saved:
            raise RuntimeError("RowState already saved: build a new one for the next message")
        return key

    def assign_interchange(
        self, value: InterchangeValue[Any], attribute: str | QueryableAttribute[Any]
    ) -> bool:
        """Apply ``value`` to ``attribute``: unknown is skipped, delete writes None, a value is
        written if it differs. With an ``order_key``, delete and value apply only when no newer
        message set the attribute. Returns True when the attribute changed.
        """
        key = self._key(attribute)
        if value.is_unknown:
            return False
        return self._assign(key, None if value.is_delete else value.get())

    def assign_if_different(self, new_value: Any, attribute: str | QueryableAttribute[Any]) -> bool:
        """Write ``new_value`` (None included) to ``attribute`` if it differs (and, with an
        ``order_key``, if no newer message set it). True when changed."""
        return self._assign(self._key(attribute), new_value)

    def is_newer_for(self, attribute: str | QueryableAttribute[Any]) -> bool:
        """True when this message may set ``attribute``: no order key, or no newer message (nor
        this one) set it yet."""
        key = self._key(attribute)
        if self._stamps is None or self.order_key is None:
            return True
        stamp = self._stamps.get(key)
        return stamp is None or stamp < self.order_key

    def _assign(self, key: str, new_value: Any) -> bool:
        stamps = self._stamps
        if stamps is not None:
            stamp = stamps.get(key)
            order = self.order_key
            assert order is not None
            if stamp is not None and stamp >= order:
                return False  # a newer message (or this one, replayed) set it
            stamps[key] = order
        if getattr(self.entity, key) == new_value:
            return False
        setattr(self.entity, key, new_value)
        return True

    # -- saving ----------------------------------------------------------------------------
    def save_or_audit(self, session: Session, audit_rows: AuditRows | None = None) -> RowOutcome:
        """Write what the state calls for, and nothing else.

        * created: set ``valid_from`` (message time) and ``stored_from`` (processing time) and
          add the entity to ``session``; no audit row.
        * updated: add one audit row holding the original values, closed with ``valid_until``
          and ``stored_until`` (processing time), and set the new ``valid_from`` to that same
          ``valid_until``: the message time, or the stored ``valid_from`` when a late message
          changes the row (valid time never moves backwards; that audit row's interval is
          then empty: in hindsight those values never held).
        * unchanged: nothing, except the message-order columns of an ordered row when this
          message is newer than the ones before (no audit row: no value changed).

        Nothing is flushed. With ``audit_rows`` the audit row is queued there instead of added
        to the session (see :class:`AuditRows`). Raises :class:`ConfigurationError` when an
        update finds no audit class (see :func:`declare_audit`) and ``RuntimeError`` when
        called twice.
        """
        self._mark_saved()
        entity = self.entity
        if self.created:
            setattr(entity, VALID_FROM, self.message_datetime)
            setattr(entity, STORED_FROM, self.stored_from)
            if self._stamps is not None:
                setattr(entity, MESSAGE_ORDER, self.order_key)
                setattr(entity, FIELD_ORDER, self._stamps)
            session.add(entity)
            _log.debug("row created", entity=type(entity).__name__)
            return RowOutcome.CREATED
        if not self.is_updated:
            self._save_order()
            return RowOutcome.UNCHANGED
        until = self._valid_until()
        self._audit(session, until, audit_rows)
        setattr(entity, VALID_FROM, until)
        setattr(entity, STORED_FROM, self.stored_from)
        self._save_order()
        if entity not in session:
            session.add(entity)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("row updated", entity=type(entity).__name__, changed=sorted(self.changes()))
        return RowOutcome.UPDATED

    def delete_or_audit(self, session: Session, audit_rows: AuditRows | None = None) -> RowOutcome:
        """Delete the row and add one audit row holding its original values, closed like an
        update's. A row that was never stored (created) is not added: nothing is written.

        Use it when a message undoes what made the row (a cancelled event). Raises like
        :meth:`save_or_audit`.
        """
        self._mark_saved()
        if self.created:
            return RowOutcome.UNCHANGED
        self._audit(session, self._valid_until(), audit_rows)
        session.delete(self.entity)
        _log.debug("row deleted", entity=type(self.entity).__name__)
        return RowOutcome.DELETED

    def _mark_saved(self) -> None:
        if self._saved:
            raise RuntimeError("RowState already saved")
        self._saved = True

    def _valid_until(self) -> datetime:
        valid_from: datetime | None = self._original.get(VALID_FROM)
        if valid_from is not None and valid_from > self.message_datetime:
            return valid_from
        return self.message_datetime

    def _audit(self, session: Session, valid_until: datetime, rows: AuditRows | None) -> None:
        audit_class = audit_class_of(type(self.entity))
        if audit_class is None:
            raise ConfigurationError(
                f"{type(self.entity).__name__} changed but has no audit class: call declare_audit()"
            )
        values = {**self._original, VALID_UNTIL: valid_until, STORED_UNTIL: self.stored_from}
        if rows is not None:
            rows.add(audit_class, values)
        else:
            session.add(audit_class(**values))

    def _save_order(self) -> None:
        stamps, order = self._stamps, self.order_key
        if stamps is None or order is None:
            return
        entity, original = self.entity, self._original
        newest = original[MESSAGE_ORDER]
        if newest is None or order > newest:
            setattr(entity, MESSAGE_ORDER, order)
        if stamps != (original[FIELD_ORDER] or {}):
            setattr(entity, FIELD_ORDER, stamps)
