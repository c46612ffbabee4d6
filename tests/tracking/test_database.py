"""Database URLs: one way to reach SQLite and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tidemark.core import ConfigurationError
from tidemark.tracking import create_tracking_engine, database_url


@pytest.mark.parametrize(
    ("target", "url"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        (
            "postgres://u@h/db?options=-csearch_path%3Ds",
            "postgresql+psycopg://u@h/db?options=-csearch_path%3Ds",
        ),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
        ("data/adt.db", "sqlite:///data/adt.db"),
    ],
)
def test_database_url_accepts_urls_libpq_dsns_and_paths(target, url):
    assert database_url(target) == url


def test_key_value_dsns_are_refused_with_a_hint():
    with pytest.raises(ConfigurationError, match="postgresql://"):
        database_url("host=localhost dbname=test")


def test_unknown_drivers_are_a_configuration_error():
    with pytest.raises(ConfigurationError, match="cannot open database"):
        create_tracking_engine("nosuchdb://x")


def test_sqlite_engines_enforce_foreign_keys(tmp_path):
    engine = create_tracking_engine(tmp_path / "fk.db")
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_the_pg_dsn_fixture_reaches_its_private_schema(pg_dsn):
    engine = create_tracking_engine(pg_dsn)
    try:
        with engine.connect() as connection:
            schema = connection.execute(text("SELECT current_schema()")).scalar_one()
        assert schema.startswith("tm_")
        assert engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()
