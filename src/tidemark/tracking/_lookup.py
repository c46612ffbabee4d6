"""Find one row by its natural key with a statement built once per (model, key attributes)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

E = TypeVar("E")

_lock = threading.Lock()
_statements: dict[tuple[type[Any], tuple[str, ...]], Select[Any]] = {}


def _statement(model: type[Any], names: tuple[str, ...]) -> Select[Any]:
    # Building a select costs more than running it on SQLite; the shape never changes.
    statement = _statements.get((model, names))
    if statement is None:
        statement = select(model).where(
            *(getattr(model, name) == bindparam(f"key_{name}") for name in names)
        )
        with _lock:
            _statements[(model, names)] = statement
    return statement


def find_by_key(session: Session, model: type[E], key: Mapping[str, Any]) -> E | None:
    """The ``model`` row whose attributes equal ``key``, or None.

    A None in ``key`` matches NULL. Raises ``sqlalchemy.exc.MultipleResultsFound`` when several
    rows match.
    """
    if any(value is None for value in key.values()):
        # "= NULL" matches nothing: let filter_by write IS NULL.
        return session.scalars(select(model).filter_by(**key)).one_or_none()
    names = tuple(key)
    params = {f"key_{name}": value for name, value in key.items()}
    return session.scalars(_statement(model, names), params).one_or_none()
