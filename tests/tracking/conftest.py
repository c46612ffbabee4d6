"""Fixtures of the tracking tests: the same test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, event

from tidemark.core import ManualClock
from tidemark.tracking import create_tracking_engine

from .models import ModelBase

ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def make_engine(kind: str, request: pytest.FixtureRequest, tmp_path) -> Engine:
    if kind == "sqlite":
        return create_tracking_engine(f"sqlite:///{tmp_path / 'tracking.db'}")
    return create_tracking_engine(request.getfixturevalue("pg_dsn"))


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    """An empty database: a SQLite file, then a fresh PostgreSQL schema."""
    engine = make_engine(request.param, request, tmp_path)
    yield engine
    engine.dispose()


@pytest.fixture
def model_engine(engine: Engine) -> Engine:
    """``engine`` with the test models' tables."""
    ModelBase.metadata.create_all(engine)
    return engine


class SqlLog:
    """Every statement an engine sends, to prove what was (not) written."""

    def __init__(self, engine: Engine) -> None:
        self.statements: list[str] = []
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, _conn, _cursor, statement, _params, _context, _many) -> None:
        self.statements.append(" ".join(statement.split()))

    def clear(self) -> None:
        self.statements.clear()

    def writes(self) -> list[str]:
        """INSERT, UPDATE and DELETE statements seen since the last :meth:`clear`."""
        verbs = ("INSERT", "UPDATE", "DELETE")
        return [s for s in self.statements if s.upper().startswith(verbs)]

    def selects_from(self, table: str) -> int:
        """How many SELECTs read ``table``."""
        return sum(
            1
            for s in self.statements
            if s.upper().startswith("SELECT") and f"FROM {table.upper()}" in s.upper()
        )


@pytest.fixture
def sql_log(engine: Engine) -> SqlLog:
    return SqlLog(engine)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2024, 6, 1, 12, 0, tzinfo=UTC))
