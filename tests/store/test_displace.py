"""A displacing put (what a replica writes): a natural key another document holds moves to the
written document, the former holder is deleted with a tombstone, and references to the key
follow it; without ``displace`` the same write is a 409."""

from __future__ import annotations

import pytest

from tests.store.samples import class_period, school
from tidemark.core import ConflictError, DependentItemExistsError
from tidemark.store import PutDocument, Store


async def test_a_displacing_put_takes_the_key_and_keeps_the_references_to_it(store: Store):
    await store.write_many([PutDocument("ed-fi:schools", "old", school(1, "Old"))])
    await store.write_many([PutDocument("ed-fi:classPeriods", "p1", class_period("P1", 1))])
    with pytest.raises(ConflictError):
        await store.write_many([PutDocument("ed-fi:schools", "new", school(1, "New"))])

    [outcome] = await store.write_many(
        [PutDocument("ed-fi:schools", "new", school(1, "New"), displace=True)]
    )
    assert outcome.created
    assert await store.get("ed-fi:schools", "old") is None
    tombstone = await store.get_tombstone("ed-fi:schools", "old")
    assert tombstone is not None
    assert (await store.get("ed-fi:classPeriods", "p1")) is not None
    with pytest.raises(DependentItemExistsError):  # the class period now references "new"
        await store.delete("ed-fi:schools", "new")


async def test_a_displacing_put_may_change_a_key_the_resource_does_not_let_clients_change(
    store: Store,
):
    await store.write_many([PutDocument("ed-fi:schools", "a", school(1))])
    await store.write_many([PutDocument("ed-fi:schools", "b", school(2))])
    # schools do not allow identity updates: a client's change is refused, a replica's follows
    # its source (here: the two schools swapped their ids' keys)
    [moved] = await store.write_many(
        [PutDocument("ed-fi:schools", "a", school(2, "Moved"), displace=True)]
    )
    assert moved.changed
    assert await store.get("ed-fi:schools", "b") is None
    [back] = await store.write_many(
        [PutDocument("ed-fi:schools", "b", school(1, "Back"), displace=True)]
    )
    assert back.created
    found = await store.query("ed-fi:schools", where={"schoolId": 1})
    assert [d.id for d in found.items] == ["b"]
