"""Helpers shared by the test suite: service availability and polling with a deadline."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

#: True in CI (``CI=true``) or with ``TIDEMARK_REQUIRE_SERVICES=1``: a missing PostgreSQL, Redis or
#: shared data set fails the test instead of skipping it.
SERVICES_REQUIRED = (
    os.environ.get("TIDEMARK_REQUIRE_SERVICES") == "1" or os.environ.get("CI", "").lower() == "true"
)

PG_ADMIN_DSN = os.environ.get("TIDEMARK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TIDEMARK_TEST_REDIS", "redis://127.0.0.1:6379/0")


def unavailable(reason: str) -> None:
    """Skip with ``reason`` locally; fail in CI, where every service must be present."""
    if SERVICES_REQUIRED:
        pytest.fail(f"{reason} (required: CI / TIDEMARK_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)


def test_data_dir() -> Path:
    """The shared real data folder (``$TIDEMARK_TEST_DATA``, default ``../shared/data``)."""
    configured = os.environ.get("TIDEMARK_TEST_DATA")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"


def require_data(relative: str) -> Path:
    """Path of a file of the shared data set, skipping (failing in CI) when it is absent."""
    path = test_data_dir() / relative
    if not path.exists():
        unavailable(f"shared test data not found: {path} (set TIDEMARK_TEST_DATA)")
    return path


def wait_until(
    predicate: Callable[[], object],
    *,
    timeout: float = 5.0,
    interval: float = 0.01,
    message: str = "",
) -> None:
    """Poll ``predicate`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"condition not met within {timeout}s: {message or predicate}")
        time.sleep(interval)


async def async_wait_until(
    predicate: Callable[[], object | Awaitable[object]],
    *,
    timeout: float = 5.0,
    interval: float = 0.01,
    message: str = "",
) -> None:
    """Async :func:`wait_until`; ``predicate`` may be sync or async."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"condition not met within {timeout}s: {message or predicate}")
        await asyncio.sleep(interval)
