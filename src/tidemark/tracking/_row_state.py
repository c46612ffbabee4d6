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
from ._temporal import STORED_FROM, STORED_UNTIL, VALID_FROM, VALID_UNTIL, audit_class_of

E = TypeVar("E")

_log = get_logger("tracking")
_TEMPORAL = frozenset((VALID_FROM, STORED_FROM))
# Column attribute keys per mapped class, computed once: RowState is on every message's hot path.
_column_keys: dict[type[Any], tuple[str, ...]] = {}


class RowOutcome(enum.StrEnum):
    """What :meth:`RowState.save_or_audit` did."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


def _keys_of(entity_class: type[Any]) -> tuple[str, ...]:
    keys = _column_keys.get(entity_class)
    if keys is None:
        keys = tuple(attr.key for attr in inspect(entity_class).column_attrs)
        missing = _TEMPORAL.difference(keys)
        if missing:
            raise TypeError(
                f"{entity_class.__name__} has no {', '.join(sorted(missing))} column: "
                "mix in TemporalMixin"
            )
        _column_keys[entity_class] = keys
    return keys


class RowState(Generic[E]):
    """The state of one entity while a message is applied to it.

    ``created`` says whether the entity was just built (not yet in the database).
    ``message_datetime`` is when the message's data became valid; ``stored_from`` is when it is
    processed. Change attributes only through :meth:`assign_interchange` and
    :meth:`assign_if_different`, then call :meth:`save_or_audit` once. The original values are
    captured at construction, so :attr:`is_updated` compares the final state with them (a value
    changed and changed back is no update; a change made directly on the entity still counts).
    Not thread-safe, like the session that holds the entity.
    """

    __slots__ = (
        "_keys",
        "_original",
        "_saved",
        "created",
        "entity",
        "message_datetime",
        "stored_from",
    )

    def __init__(
        self, entity: E, created: bool, message_datetime: datetime, stored_from: datetime
    ) -> None:
        for name, moment in (("message_datetime", message_datetime), ("stored_from", stored_from)):
            if moment.tzinfo is None or moment.utcoffset() is None:
                raise ValueError(f"RowState {name} must be an aware datetime, got {moment!r}")
        self.entity = entity
        self.created = created
        self.message_datetime = message_datetime
        self.stored_from = stored_from
        self._keys = _keys_of(type(entity))
        self._original: dict[str, Any] = (
            {} if created else {key: getattr(entity, key) for key in self._keys}
        )
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
        return cls(entity, created, message_datetime, stored_from or clock.now())

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
        return any(
            getattr(entity, key) != original[key] for key in self._keys if key not in _TEMPORAL
        )

    @property
    def is_stale_message(self) -> bool:
        """True when the entity already holds data valid from after this message's time.

        Callers skip stale messages so that a replayed or late message never rolls back newer data.
        """
        if self.created:
            return False
        valid_from = self._original.get(VALID_FROM)
        return valid_from is not None and self.message_datetime < valid_from

    def changes(self) -> dict[str, tuple[Any, Any]]:
        """``{attribute: (original, current)}`` for every attribute that differs (empty when created)."""
        if self.created:
            return {}
        entity, original = self.entity, self._original
        return {
            key: (original[key], getattr(entity, key))
            for key in self._keys
            if key not in _TEMPORAL and getattr(entity, key) != original[key]
        }

    # -- changing --------------------------------------------------------------------------
    def _key(self, attribute: str | QueryableAttribute[Any]) -> str:
        key = attribute if isinstance(attribute, str) else attribute.key
        if key not in self._keys:
            raise AttributeError(f"{type(self.entity).__name__} has no column attribute {key!r}")
        if key in _TEMPORAL:
            raise AttributeError(f"{key!r} is set by save_or_audit, not assigned")
        if self._saved:
            raise RuntimeError("RowState already saved: build a new one for the next message")
        return key

    def assign_interchange(
        self, value: InterchangeValue[Any], attribute: str | QueryableAttribute[Any]
    ) -> bool:
        """Apply ``value`` to ``attribute``: unknown is skipped, delete writes None, a value is
        written if it differs. Returns True when the attribute changed.
        """
        key = self._key(attribute)
        if value.is_unknown:
            return False
        return self._assign(key, None if value.is_delete else value.get())

    def assign_if_different(self, new_value: Any, attribute: str | QueryableAttribute[Any]) -> bool:
        """Write ``new_value`` (None included) to ``attribute`` if it differs. True when changed."""
        return self._assign(self._key(attribute), new_value)

    def _assign(self, key: str, new_value: Any) -> bool:
        if getattr(self.entity, key) == new_value:
            return False
        setattr(self.entity, key, new_value)
        return True

    # -- saving ----------------------------------------------------------------------------
    def save_or_audit(self, session: Session) -> RowOutcome:
        """Write what the state calls for, and nothing else.

        * created: set ``valid_from`` (message time) and ``stored_from`` (processing time) and
          add the entity to ``session``; no audit row.
        * updated: set the new temporal values and add one audit row holding the original
          values, closed with ``valid_until`` (message time) and ``stored_until`` (processing time).
        * unchanged: nothing.

        Nothing is flushed. Raises :class:`ConfigurationError` when an update finds no audit class
        (see :func:`declare_audit`) and ``RuntimeError`` when called twice.
        """
        if self._saved:
            raise RuntimeError("RowState already saved")
        self._saved = True
        entity = self.entity
        if self.created:
            setattr(entity, VALID_FROM, self.message_datetime)
            setattr(entity, STORED_FROM, self.stored_from)
            session.add(entity)
            _log.debug("row created", entity=type(entity).__name__)
            return RowOutcome.CREATED
        if not self.is_updated:
            return RowOutcome.UNCHANGED
        audit_class = audit_class_of(type(entity))
        if audit_class is None:
            raise ConfigurationError(
                f"{type(entity).__name__} changed but has no audit class: call declare_audit()"
            )
        audit = audit_class(
            **self._original,
            **{VALID_UNTIL: self.message_datetime, STORED_UNTIL: self.stored_from},
        )
        setattr(entity, VALID_FROM, self.message_datetime)
        setattr(entity, STORED_FROM, self.stored_from)
        session.add(entity)
        session.add(audit)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("row updated", entity=type(entity).__name__, changed=sorted(self.changes()))
        return RowOutcome.UPDATED
