"""Writes committed together (SQLite's group commit) behave as if each ran alone, in queue order.

The writes of each test are queued while the engine is busy with a held write, so that on SQLite
they run as one group in one transaction; PostgreSQL runs them side by side, and the same rules
hold there.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from tidemark.core import ConflictError, PreconditionFailedError, UnresolvedReferenceError
from tidemark.store import Store, WriteOutcome

from . import samples
from .helpers import journal

Write = Callable[[], Coroutine[Any, Any, Any]]


async def _poll(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def in_one_group(store: Store, writes: list[Write]) -> list[Any]:
    """Run ``writes`` (each started in list order) while the writer is held, then release it:
    on SQLite they commit as one group. Returns each result or exception, in order."""
    holding, release = threading.Event(), threading.Event()

    def hold(tx: Any) -> None:
        holding.set()
        release.wait(5)

    held = asyncio.create_task(store.engine.write(hold))
    await _poll(holding.is_set, "the writer to be held")
    commits = getattr(store.engine, "commits", None)
    tasks: list[asyncio.Task[Any]] = []
    for write in writes:
        tasks.append(asyncio.create_task(write()))
        await asyncio.sleep(0)  # let the write reach the engine before the next one starts
    jobs = getattr(store.engine, "_jobs", None)
    if jobs is not None:  # SQLite: every write queued behind the held one
        await _poll(lambda: jobs.qsize() >= len(writes), "the writes to be queued")
    release.set()
    await held
    results = await asyncio.gather(*tasks, return_exceptions=True)
    if commits is not None:  # the held write's commit, then one for the whole group
        assert store.engine.commits == commits + 2  # type: ignore[attr-defined]
    return results


async def _setup(store: Store) -> None:
    await store.upsert("termDescriptors", samples.descriptor(samples.TERM_NS, "Fall"))
    await store.upsert("schools", samples.school(1))


async def test_a_failing_write_in_a_group_fails_only_itself(store: Store):
    await _setup(store)
    existing = (await store.upsert("schools", samples.school(2, name="Two"))).document
    before = await store.newest_change_version()
    results = await in_one_group(
        store,
        [
            lambda: store.upsert("schools", samples.school(10)),
            # If-None-Match: * on an existing natural key
            lambda: store.upsert("schools", samples.school(2, name="Dos"), if_none_match="*"),
            lambda: store.upsert("sessions", samples.session()),
            # a reference to a school that does not exist
            lambda: store.upsert("sessions", samples.session(school_id=99)),
            lambda: store.upsert("schools", samples.school(11)),
            # If-Match that no longer matches
            lambda: store.replace(
                "schools", existing.id, samples.school(2, name="Deux"), if_match='"999"'
            ),
            # another document's natural key under a new id
            lambda: store.put("ed-fi:schools", "b" * 32, samples.school(1)),
            lambda: store.upsert("schools", samples.school(2, name="Zwei")),
        ],
    )
    assert isinstance(results[1], PreconditionFailedError)
    assert isinstance(results[3], UnresolvedReferenceError)
    assert isinstance(results[5], PreconditionFailedError)
    assert isinstance(results[6], ConflictError)
    written = [results[i] for i in (0, 2, 4, 7)]
    assert all(isinstance(r, WriteOutcome) and r.changed for r in written)
    assert [r.created for r in written] == [True, True, True, False]
    versions = [r.document.content_version for r in written]
    assert len(set(versions)) == 4 and min(versions) > before
    if store.engine.name == "sqlite":  # in queue order, the failures' versions given back
        assert versions == list(range(before + 1, before + 5))
        assert await store.newest_change_version() == max(versions)
    school_two = await store.get("ed-fi:schools", existing.id)
    assert school_two is not None and school_two.body["nameOfInstitution"] == "Zwei"
    assert await store.get("ed-fi:schools", "b" * 32) is None
    page = await store.query("ed-fi:sessions", total_count=True)
    assert page.total == 1


async def test_writes_of_one_natural_key_in_a_group_apply_as_sequential_writes(store: Store):
    await _setup(store)
    before = await store.newest_change_version()
    names = ["First", "Second", "Second", "Third"]

    def upsert(name: str) -> Write:
        return lambda: store.upsert("schools", samples.school(5, name=name))

    results = await in_one_group(store, [upsert(n) for n in names])
    outcomes = [r for r in results if isinstance(r, WriteOutcome)]
    assert len(outcomes) == len(names)
    assert sum(r.created for r in outcomes) == 1
    assert len({r.document.id for r in outcomes}) == 1
    changed = sorted(r.document.content_version for r in outcomes if r.changed)
    # Whatever order the writes ran in, each change got its own version and the newest is stored.
    assert len(set(changed)) == len(changed) and min(changed) > before
    final = await store.get("ed-fi:schools", outcomes[0].document.id)
    newest = max(outcomes, key=lambda r: r.document.content_version)
    assert final is not None and final.body == newest.document.body
    assert final.content_version == max(changed)
    history = await store.history("ed-fi:schools", final.id)
    assert len(history) == len(changed) - 1
    journaled = [v for v, _c in await journal(store, "ed-fi:schools") if v > before]
    assert journaled == changed
    if store.engine.name == "sqlite":  # one group: exactly the queue order
        assert [r.created for r in outcomes] == [True, False, False, False]
        assert [r.changed for r in outcomes] == [True, True, False, True]  # a repeat: no-op
        assert changed == [before + 1, before + 2, before + 3]
        assert final.body["nameOfInstitution"] == "Third"
        assert [h.body["nameOfInstitution"] for h in history] == ["Second", "First"]
        assert await store.newest_change_version() == before + 3


async def test_a_referrer_in_the_same_group_as_its_target_sees_it_only_when_queued_after(
    store: Store,
):
    await _setup(store)
    results = await in_one_group(
        store,
        [
            lambda: store.upsert("sessions", samples.session(school_id=7)),  # before its school
            lambda: store.upsert("schools", samples.school(7)),
            lambda: store.upsert("sessions", samples.session(school_id=7, name="Spring")),
        ],
    )
    school = results[1]
    assert isinstance(school, WriteOutcome) and school.created
    for session in (results[0], results[2]):
        # Sequential in some order: a session exists only if its school was there before it.
        # (On PostgreSQL each write is its own transaction and change versions come from a
        # sequence, which need not follow commit order: a session may hold a lower version than
        # the school that committed before it, so there only the outcome is checked.)
        if isinstance(session, WriteOutcome):
            if store.engine.name == "sqlite":
                assert session.document.content_version > school.document.content_version
            assert await store.get("ed-fi:sessions", session.document.id) is not None
        else:
            assert isinstance(session, UnresolvedReferenceError)
    if store.engine.name == "sqlite":  # one group: exactly the queue order
        assert isinstance(results[0], UnresolvedReferenceError)
        assert isinstance(results[2], WriteOutcome) and results[2].created


@pytest.mark.parametrize("failing_at", [0, 3])
async def test_a_group_of_new_documents_with_one_failure_commits_the_rest(
    store: Store, failing_at: int
):
    await _setup(store)

    def school(number: int) -> Write:
        return lambda: store.upsert("schools", samples.school(number))

    writes = [school(100 + i) for i in range(6)]
    writes[failing_at] = lambda: store.upsert("sessions", samples.session(school_id=404))
    results = await in_one_group(store, writes)
    assert isinstance(results[failing_at], UnresolvedReferenceError)
    assert sum(isinstance(r, WriteOutcome) and r.created for r in results) == 5
    page = await store.query("ed-fi:schools", total_count=True)
    assert page.total == 6  # school 1 and the five new ones


async def _state(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the writes left, keyed by natural keys (ids differ between stores)."""
    queries = {
        "documents": "SELECT collection, referential_id, body, key_values, content_hash, "
        "content_version, identity_version FROM documents",
        "history": "SELECT h.collection, d.referential_id, h.body, h.content_version, "
        "h.superseded_by FROM history h JOIN documents d ON d.collection = h.collection "
        "AND d.id = h.id",
        "journal": "SELECT j.collection, d.referential_id, j.change_version FROM journal j "
        "JOIN documents d ON d.doc_pk = j.doc_pk",
        "references": "SELECT d.referential_id, r.referential_id FROM document_references r "
        "JOIN documents d ON d.doc_pk = r.referrer_pk",
        "targets": "SELECT t.referential_id, d.referential_id FROM reference_targets t "
        "JOIN documents d ON d.doc_pk = t.doc_pk",
        "index": "SELECT i.collection, i.name, i.key, d.referential_id FROM index_keys i "
        "JOIN documents d ON d.doc_pk = i.doc_pk",
    }

    def read(tx: Any) -> dict[str, list[tuple[Any, ...]]]:
        return {name: sorted(tuple(r) for r in tx.query(sql)) for name, sql in queries.items()}

    return await store.engine.read(read)


async def test_a_group_of_upserts_leaves_what_the_same_upserts_one_by_one_leave(
    store: Store, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
):
    from tidemark.store import _write_batch, open_store

    batched: list[int] = []
    upsert_many = _write_batch.upsert_many

    def spy(*args: Any) -> Any:  # counts the writes the batched path took, changes nothing
        done = upsert_many(*args)
        batched.append(len(done))
        return done

    monkeypatch.setattr(_write_batch, "upsert_many", spy)
    offering = samples.course_offering
    spring = {
        **samples.session(name="Spring", school_id=20),
        "termDescriptor": "uri://ed-fi.org/TermDescriptor#Spring",
    }
    writes: list[tuple[str, dict[str, Any]]] = [
        ("schools", samples.school(1)),  # as stored: a no-op
        ("termDescriptors", samples.descriptor(samples.TERM_NS, "Spring")),
        ("schools", samples.school(20)),
        ("sessions", spring),  # references two documents inserted just before
        ("courseOfferings", {**offering("C0"), "localCourseTitle": "Renamed"}),
        # a reference replaced by one to a document inserted in the same group
        ("sessions", {**samples.session(), "termDescriptor": spring["termDescriptor"]}),
        ("courseOfferings", offering("C2", school_id=20, session_name="Spring")),
        ("schools", samples.school(1, name="Renamed High")),  # a natural key seen before
        ("courseOfferings", {**offering("C0"), "localCourseTitle": "Renamed again"}),
        ("schools", samples.school(21)),
        ("courseOfferings", offering("C3")),
    ]
    setup: list[tuple[str, dict[str, Any]]] = [
        ("termDescriptors", samples.descriptor(samples.TERM_NS, "Fall")),
        ("schools", samples.school(1)),
        ("sessions", samples.session()),
        ("courseOfferings", offering("C0")),
    ]
    reference = await open_store(str(tmp_path / "one-by-one.db"))
    try:
        for resource, body in setup + writes:
            await reference.upsert(resource, body)
        expected = await _state(reference)
    finally:
        await reference.close()

    for resource, body in setup:
        await store.upsert(resource, body)

    def upsert(resource: str, body: dict[str, Any]) -> Write:
        return lambda: store.upsert(resource, body)

    if store.engine.name == "sqlite":
        results = await in_one_group(store, [upsert(r, b) for r, b in writes])
    else:  # side by side, later writes could run before the earlier ones they depend on
        results = [await upsert(r, b)() for r, b in writes]
    assert [r for r in results if not isinstance(r, WriteOutcome)] == []
    assert await _state(store) == expected
    if store.engine.name == "sqlite":  # the group took the batched path: all but the repeats
        assert sum(batched) >= len(writes) - 2
