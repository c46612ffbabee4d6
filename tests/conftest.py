"""Fixtures for real services: a private PostgreSQL schema per test, a Redis key prefix per test."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.support import PG_ADMIN_DSN, REDIS_URL, unavailable
from tidemark.core import ManualClock


def _pg_reachable() -> str | None:
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN_DSN}: {exc}".strip()
    return None


@pytest.fixture(scope="session")
def pg_admin_dsn() -> str:
    """DSN of the PostgreSQL test database (skips, or fails in CI, when unreachable)."""
    problem = _pg_reachable()
    if problem:
        unavailable(problem)
    return PG_ADMIN_DSN


@pytest.fixture
def pg_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """A DSN whose ``search_path`` is a fresh, empty schema, dropped after the test."""
    import psycopg

    schema = f"tm_{secrets.token_hex(6)}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in pg_admin_dsn else "?"
    yield f"{pg_admin_dsn}{separator}options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    """URL of the Redis test server (skips, or fails in CI, when unreachable)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis not reachable at {REDIS_URL}: {exc}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_server_url: str) -> Iterator[str]:
    """A unique key prefix for one test; every key under it is deleted afterwards."""
    import redis

    prefix = f"tmtest:{secrets.token_hex(6)}:"
    yield prefix
    client = redis.Redis.from_url(redis_server_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database URL of a fresh store: a SQLite file, or a private PostgreSQL schema."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    return str(request.getfixturevalue("pg_dsn"))


@pytest.fixture
def clock() -> ManualClock:
    """A manual clock at 2025-03-01 12:00 UTC."""
    return ManualClock(datetime(2025, 3, 1, 12, 0, tzinfo=UTC))
