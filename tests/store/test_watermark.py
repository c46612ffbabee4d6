"""Watermark safety on PostgreSQL: newestChangeVersion never passes an uncommitted version.

A client that reads newestChangeVersion = M, fetches every change up to M and stores M must
never miss a change, even though concurrent transactions commit out of allocation order.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tidemark.store import Store, open_store

from . import samples

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_store(pg_dsn: str) -> AsyncIterator[Store]:
    store = await open_store(pg_dsn)
    try:
        yield store
    finally:
        await store.close()


async def test_newest_change_version_stops_below_a_stalled_writer(pg_store: Store):
    await pg_store.upsert("schools", samples.school(1))
    allocated: list[int] = []
    proceed = threading.Event()

    def stalled(tx: Any) -> None:
        allocated.append(tx.allocate_version())
        proceed.wait(10)

    stalled_write = asyncio.ensure_future(pg_store.engine.write(stalled))
    while not allocated:
        await asyncio.sleep(0.005)
    later = (await pg_store.upsert("schools", samples.school(2))).document
    assert later.content_version > allocated[0]
    newest = (await pg_store.available_change_versions()).newest
    assert newest < allocated[0], "newest must not pass the version of an uncommitted writer"
    proceed.set()
    await stalled_write
    assert (await pg_store.available_change_versions()).newest >= later.content_version


def _jitter(store: Store) -> None:
    """Make commits land out of allocation order: pause a random 0-3 ms after each write's work."""
    original: Callable[..., Any] = store.engine.write

    async def write(fn: Callable[[Any], Any], on_done: Any = None, batch: Any = None) -> Any:
        # ``batch`` is dropped: the write runs through ``slow``, one by one.
        def slow(tx: Any) -> Any:
            result = fn(tx)
            time.sleep(random.random() * 0.003)
            return result

        return await original(slow, on_done=on_done)

    store.engine.write = write  # type: ignore[method-assign]


async def test_watermark_client_misses_nothing_with_concurrent_writers(pg_store: Store):
    await pg_store.upsert("schools", samples.school(1))
    await pg_store.upsert("termDescriptors", samples.descriptor(samples.TERM_NS, "Fall"))
    _jitter(pg_store)
    writes_per_writer, writers = 1250, 4
    committed: list[tuple[str, int]] = []
    seen: dict[str, int] = {}
    done = asyncio.Event()
    watermark = 0
    polls = 0

    async def writer(n: int) -> None:
        rng = random.Random(n)
        mine: list[str] = []
        for i in range(writes_per_writer):
            if mine and rng.random() < 0.3:  # update one of my sessions
                name = rng.choice(mine)
                body = samples.session(name=name)
                body["endDate"] = f"2024-12-{rng.randint(10, 28)}"
            else:
                name = f"w{n}-{i}"
                mine.append(name)
                body = samples.session(name=name)
            outcome = await pg_store.upsert("sessions", body)
            if outcome.changed:
                committed.append((outcome.document.id, outcome.document.content_version))

    async def reader() -> None:
        nonlocal watermark, polls
        while True:
            finished = done.is_set()
            newest = (await pg_store.available_change_versions()).newest
            if newest > watermark:
                offset = 0
                while True:
                    page = await pg_store.changes(
                        "ed-fi:sessions",
                        min_version=watermark + 1,
                        max_version=newest,
                        limit=500,
                        offset=offset,
                    )
                    for doc in page.items:
                        seen[doc.id] = max(seen.get(doc.id, 0), doc.content_version)
                    if len(page.items) < 500:
                        break
                    offset += 500
                watermark = newest
            polls += 1
            if finished:
                return
            await asyncio.sleep(0.002)

    read_task = asyncio.ensure_future(reader())
    await asyncio.gather(*(writer(n) for n in range(writers)))
    done.set()
    await read_task
    missed = [(doc_id, v) for doc_id, v in committed if seen.get(doc_id, 0) < v]
    versions = [v for _, v in committed]
    print(
        f"\nwatermark proof (one process, {writers} writers): writes={writers * writes_per_writer} "
        f"committed changes={len(committed)} documents seen={len(seen)} reader polls={polls} missed={len(missed)}"
    )
    assert writers * writes_per_writer >= 5000
    assert len(set(versions)) == len(versions)
    assert missed == []
