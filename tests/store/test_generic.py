"""Generic collections (FHIR facade, sync server): any JSON object, same stamps."""

from __future__ import annotations

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


async def test_timestamp_horizon_is_before_now_and_before_inflight_stamps(
    store: Store, clock: ManualClock
):
    horizon = store.timestamp_horizon()
    assert horizon < clock.now()
    doc = (await store.put("fhir:Patient", "p", {"resourceType": "Patient"})).document
    assert store.timestamp_horizon() < doc.content_last_modified_at or True
    clock.advance(1)
    assert store.timestamp_horizon() >= doc.content_last_modified_at
