"""Store.write_many: several puts and deletes in one transaction, all of them or none."""

from __future__ import annotations

import pytest

from tidemark.core import NotFoundError, PreconditionFailedError
from tidemark.store import DeleteDocument, PutDocument, Store, Tombstone, WriteOutcome

from . import samples


async def test_write_many_commits_puts_and_deletes_with_one_stamp(store: Store):
    await store.put("fhir:Patient", "old", {"resourceType": "Patient"})
    results = await store.write_many(
        [
            DeleteDocument("fhir:Patient", "old"),
            PutDocument("fhir:Patient", "a", {"resourceType": "Patient", "active": True}),
            PutDocument("fhir:Observation", "o", {"subject": {"reference": "Patient/a"}}),
        ]
    )
    assert isinstance(results[0], Tombstone)
    assert isinstance(results[1], WriteOutcome) and results[1].created
    assert isinstance(results[2], WriteOutcome) and results[2].created
    versions = [results[0].change_version, *(r.document.content_version for r in results[1:])]
    assert versions == sorted(versions) and len(set(versions)) == 3
    assert (
        results[1].document.content_last_modified_at == results[2].document.content_last_modified_at
    )
    assert await store.get("fhir:Patient", "old") is None
    assert (await store.get("fhir:Observation", "o")).body["subject"] == {"reference": "Patient/a"}
    assert store.counters["change_versions_allocated"] == 4


async def test_a_failing_operation_rolls_back_every_operation_and_is_named(store: Store):
    kept = (await store.put("fhir:Patient", "kept", {"resourceType": "Patient"})).document
    with pytest.raises(PreconditionFailedError) as raised:
        await store.write_many(
            [
                PutDocument("fhir:Patient", "new", {"resourceType": "Patient"}),
                DeleteDocument("fhir:Patient", "kept"),
                PutDocument("fhir:Patient", "x", {"resourceType": "Patient"}, if_match='"999"'),
            ]
        )
    assert raised.value.data["operation"] == 2
    assert await store.get("fhir:Patient", "new") is None
    still = await store.get("fhir:Patient", "kept")
    assert still is not None and still.content_version == kept.content_version
    with pytest.raises(NotFoundError) as missing:
        await store.write_many([DeleteDocument("fhir:Patient", "nobody")])
    assert missing.value.data["operation"] == 0
    assert store.counters["journal_rows"] == 1  # only the first put was ever recorded


async def test_later_operations_see_earlier_ones_and_noops_allocate_nothing(store: Store):
    first = (await store.put("fhir:Patient", "p", {"resourceType": "Patient"})).document
    results = await store.write_many(
        [
            PutDocument("fhir:Patient", "p", {"resourceType": "Patient"}),
            PutDocument("fhir:Patient", "q", {"resourceType": "Patient", "n": 1}),
            PutDocument("fhir:Patient", "q", {"resourceType": "Patient", "n": 2}),
        ]
    )
    assert isinstance(results[0], WriteOutcome) and not results[0].changed
    assert results[0].document.content_version == first.content_version
    assert isinstance(results[2], WriteOutcome) and not results[2].created
    assert (await store.get("fhir:Patient", "q")).body["n"] == 2
    assert store.counters["noop_writes"] == 1


async def test_write_many_applies_the_model_rules_on_model_collections(store: Store):
    school = samples.school(1)
    results = await store.write_many([PutDocument("ed-fi:schools", "s1", school)])
    assert isinstance(results[0], WriteOutcome) and results[0].created
    with pytest.raises(Exception) as raised:
        await store.write_many(
            [
                PutDocument("fhir:Patient", "z", {"resourceType": "Patient"}),
                PutDocument("ed-fi:schools", "s2", {"schoolId": "not a number"}),
            ]
        )
    assert getattr(raised.value, "data", {}).get("operation") == 1
    assert await store.get("fhir:Patient", "z") is None
