"""One way to open a database for tracked entities: SQLite or PostgreSQL (psycopg 3)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from tidemark.core import ConfigurationError

_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
_KEY_VALUE_DSN = re.compile(r"\s*(host|hostaddr|dbname|user|port|password|service)\s*=")


def database_url(target: str | Path) -> str:
    """A SQLAlchemy URL for ``target``: a URL, a libpq ``postgresql://`` DSN, or a file path.

    ``postgresql://`` and ``postgres://`` become ``postgresql+psycopg://`` (psycopg 3); libpq
    query options such as ``options=-csearch_path=...`` are kept. A bare path is a SQLite file.
    """
    text = str(target)
    if "://" not in text:
        if _KEY_VALUE_DSN.match(text):
            raise ConfigurationError(
                f"not a database URL: {text!r} (write postgresql://user@host/db?..., "
                "not a key=value DSN)"
            )
        return f"sqlite:///{Path(text).expanduser()}"
    scheme, rest = text.split("://", 1)
    if scheme in _POSTGRES_SCHEMES:
        return f"postgresql+psycopg://{rest}"
    return text


def create_tracking_engine(target: str | Path, **engine_options: Any) -> Engine:
    """Create an engine for ``target`` (see :func:`database_url`) with safe settings.

    SQLite gets enforced foreign keys, real transactions (``BEGIN`` at the start of each, so a
    SELECT-then-INSERT sees one snapshot) and, for a file, the WAL journal (still fully
    synchronous: a commit that returned survives a crash). Raises :class:`ConfigurationError` for an
    unusable URL.
    """
    url = database_url(target)
    try:
        parsed = make_url(url)
        engine = create_engine(parsed, **engine_options)
    except (ArgumentError, ValueError) as exc:
        raise ConfigurationError(f"cannot open database {target!r}: {exc}") from exc
    except ImportError as exc:
        raise ConfigurationError(f"no driver for database {target!r}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        _sqlite_transactions(engine, wal=parsed.database not in (None, "", ":memory:"))
    return engine


def _sqlite_transactions(engine: Engine, *, wal: bool) -> None:
    # pysqlite opens transactions lazily, before the first write only; taking control of BEGIN
    # (the SQLAlchemy-documented recipe) makes SELECTs transactional and SAVEPOINTs correct.
    # WAL keeps synchronous=FULL durability with one fsync per commit instead of several, and
    # lets readers run while a writer commits.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys = ON")
            if wal:
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")
