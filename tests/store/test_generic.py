"""Generic collections (FHIR facade, sync server): any JSON object, same stamps."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tidemark.core import BadRequestError, ManualClock, PreconditionFailedError
from tidemark.store import Store


async def test_put_creates_then_updates_and_noop_keeps_stamps(store: Store, clock: ManualClock):
    created = await store.put("fhir:Patient", "p1", {"resourceType": "Patient", "active": True})
    assert created.created and created.changed
    clock.advance(3)
    same = await store.put("fhir:Patient", "p1", {"active": True, "resourceType": "Patient"})
    assert not same.changed and same.document.content_version == created.document.content_version
    assert same.document.content_last_modified_at == created.document.content_last_modified_at
    changed = await store.put("fhir:Patient", "p1", {"resourceType": "Patient", "active": False})
    assert changed.changed and changed.document.content_version > created.document.content_version
    history = await store.history("fhir:Patient", "p1")
    assert [h.body["active"] for h in history] == [True]


async def test_generic_preconditions(store: Store):
    with pytest.raises(PreconditionFailedError):
        await store.put("sync:ns", "k", {"a": 1}, if_match='"1"')
    first = await store.put("sync:ns", "k", {"a": 1}, if_none_match="*")
    with pytest.raises(PreconditionFailedError):
        await store.put("sync:ns", "k", {"a": 2}, if_none_match="*")
    second = await store.put(
        "sync:ns", "k", {"a": 2}, if_match=f'W/"{first.document.content_version}"'
    )
    assert second.changed


async def test_generic_delete_and_tombstone(store: Store):
    doc = (await store.put("fhir:Observation", "o1", {"resourceType": "Observation"})).document
    tomb = await store.delete("fhir:Observation", "o1")
    assert tomb.last_content_version == doc.content_version and tomb.key_values is None
    assert await store.get_tombstone("fhir:Observation", "o1") is not None
    await store.put("fhir:Observation", "o1", {"resourceType": "Observation"})
    assert await store.get_tombstone("fhir:Observation", "o1") is None


async def test_bad_collection_and_id_are_refused(store: Store):
    with pytest.raises(BadRequestError):
        await store.put("fhir/Patient", "p1", {})
    with pytest.raises(BadRequestError):
        await store.put("fhir:Patient", "../etc", {})


async def test_timestamp_horizon_is_never_after_now_and_later_writes_are_stamped_after_it(
    store: Store, clock: ManualClock
):
    horizon = await store.timestamp_horizon()
    assert horizon <= clock.now()
    # A write within the same millisecond as a horizon handed out is stamped after it, so a
    # poller passing the horizon back with ``gt`` sees that write once, in its next poll.
    doc = (await store.put("fhir:Patient", "p", {"resourceType": "Patient"})).document
    assert doc.content_last_modified_at > horizon
    assert await store.timestamp_horizon() >= doc.content_last_modified_at
    later = (await store.put("fhir:Patient", "q", {"resourceType": "Patient"})).document
    assert later.content_last_modified_at > doc.content_last_modified_at
    clock.advance(1)
    assert await store.timestamp_horizon() >= later.content_last_modified_at


async def test_timestamp_horizon_stays_below_a_write_in_flight(store: Store, clock: ManualClock):
    entered, release = threading.Event(), threading.Event()
    original = store.engine.write

    async def held_write(fn, on_done=None, batch=None):
        def held(tx):
            result = fn(tx)
            entered.set()
            release.wait(5)
            return result

        return await original(held, on_done=on_done)

    store.engine.write = held_write  # type: ignore[method-assign]
    pending = asyncio.ensure_future(store.put("fhir:Patient", "p", {"resourceType": "Patient"}))
    assert await asyncio.to_thread(entered.wait, 5)
    clock.advance(5)
    in_flight_horizon = await store.timestamp_horizon()
    release.set()
    doc = (await pending).document
    assert in_flight_horizon < doc.content_last_modified_at
    assert await store.timestamp_horizon() >= doc.content_last_modified_at
