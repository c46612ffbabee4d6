"""Document ids: UUIDv7 hex, unique, and in creation order (new keys append to the b-trees)."""

from __future__ import annotations

import re
import time
import uuid

import pytest

from tidemark.store import Store, _ids

from . import samples

HEX32 = re.compile(r"^[0-9a-f]{32}$")


async def test_new_documents_get_uuid7_ids_in_creation_order(store: Store):
    ids = [(await store.upsert("schools", samples.school(i))).document.id for i in range(1, 41)]
    assert all(HEX32.match(i) for i in ids)
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    assert sorted(ids) == ids
    assert len(set(ids)) == len(ids)


def test_ids_made_in_one_millisecond_stay_unique_and_ordered():
    ids = [_ids.new_document_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids


def test_a_clock_stepping_back_does_not_reorder_ids(monkeypatch: pytest.MonkeyPatch):
    # The system clock cannot be stepped back from a test: stand in for it.
    first = _ids.new_document_id()
    monkeypatch.setattr(time, "time_ns", lambda: 1_000_000_000)  # 1970
    later = [_ids.new_document_id() for _ in range(5_000)]  # crosses a counter overflow too
    assert all(first < i for i in later)
    assert sorted(later) == later
    assert len(set(later)) == len(later)
