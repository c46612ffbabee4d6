"""The _lastUpdated horizon on PostgreSQL: one database clock, safe across store instances.

Two stores opened on one database stand for two server processes: each has its own pool and
knows nothing of the other's writers except through the database.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from tests.support import async_wait_until
from tidemark.store import Store, open_store

pytestmark = pytest.mark.postgres


@pytest.fixture
async def two_stores(pg_dsn: str) -> AsyncIterator[tuple[Store, Store]]:
    first = await open_store(pg_dsn)
    second = await open_store(pg_dsn)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def _database_now(store: Store) -> Any:
    def now(tx: Any) -> Any:
        row = tx.query_one("SELECT clock_timestamp()")
        return row[0]

    return await store.engine.read(now)


async def test_stamps_come_from_the_database_clock(two_stores: tuple[Store, Store]):
    store, _ = two_stores
    before = await _database_now(store)
    doc = (await store.put("fhir:Patient", "p", {"resourceType": "Patient"})).document
    after = await _database_now(store)
    assert before - timedelta(milliseconds=1) < doc.content_last_modified_at <= after


async def test_horizon_stays_below_a_write_in_flight_in_another_store(
    two_stores: tuple[Store, Store],
):
    writer, reader = two_stores
    entered, release = threading.Event(), threading.Event()
    original = writer.engine.write

    async def held_write(fn: Any, on_done: Any = None, batch: Any = None) -> Any:
        def held(tx: Any) -> Any:
            result = fn(tx)
            entered.set()
            release.wait(10)
            return result

        return await original(held, on_done=on_done)

    writer.engine.write = held_write  # type: ignore[method-assign]
    pending = asyncio.ensure_future(writer.put("fhir:Patient", "p", {"resourceType": "Patient"}))
    assert await asyncio.to_thread(entered.wait, 10)
    # the clock moves on while the write is in flight; the other store's horizon does not pass it
    now = await _database_now(reader)

    async def clock_moved() -> bool:
        return bool(await _database_now(reader) >= now + timedelta(milliseconds=5))

    await async_wait_until(clock_moved, timeout=5, message="the database clock moves on")
    in_flight_horizon = await reader.timestamp_horizon()
    release.set()
    doc = (await pending).document
    assert in_flight_horizon < doc.content_last_modified_at

    async def covered() -> bool:
        return await reader.timestamp_horizon() >= doc.content_last_modified_at

    await async_wait_until(covered, timeout=5, message="the horizon covers the committed write")


async def test_a_write_after_a_horizon_is_stamped_after_it(two_stores: tuple[Store, Store]):
    first, second = two_stores
    for i in range(20):
        horizon = await first.timestamp_horizon()
        doc = (await second.put("fhir:Patient", f"p{i}", {"resourceType": "Patient"})).document
        assert doc.content_last_modified_at > horizon


async def test_a_caller_clock_keeps_stamps_and_horizon_in_the_process(pg_dsn: str):
    from datetime import UTC, datetime

    from tidemark.core import ManualClock

    clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
    store = await open_store(pg_dsn, clock=clock)
    try:
        doc = (await store.put("fhir:Patient", "p", {"resourceType": "Patient"})).document
        assert doc.content_last_modified_at == clock.now()
        assert await store.timestamp_horizon() >= clock.now()
    finally:
        await store.close()
