"""Store.write_many's runs of plain model puts (multi-row statements on SQLite) leave exactly what
the same operations run one by one leave: documents, ids, stamps, change versions, journal,
references, natural keys, index entries, tombstones, history and key changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tidemark.core import ManualClock, UnresolvedReferenceError
from tidemark.store import DeleteDocument, PutDocument, Store, _store, _write_batch, open_store

from . import samples

Operation = PutDocument | DeleteDocument


def _pages() -> list[list[Operation]]:
    school, session, offering = samples.school, samples.session, samples.course_offering
    fall = samples.descriptor(samples.TERM_NS, "Fall")
    return [
        [  # new documents, one referring to documents inserted just before it
            PutDocument("ed-fi:termDescriptors", "d-fall", fall),
            *(PutDocument("ed-fi:schools", f"s{n}", school(n)) for n in range(1, 6)),
            PutDocument("ed-fi:sessions", "x1", session()),
            PutDocument("notes", "n1", {"text": "a generic document between model puts"}),
            PutDocument("ed-fi:courseOfferings", "c0", offering("C0")),
            PutDocument("ed-fi:schools", "s6", school(6)),
        ],
        [
            PutDocument("ed-fi:schools", "s1", school(1)),  # as stored: a no-op
            PutDocument("ed-fi:schools", "s2", school(2, name="Renamed")),  # an update
            PutDocument("ed-fi:courseOfferings", "c0", offering("C0")),  # a no-op
            PutDocument("ed-fi:courseOfferings", "c1", offering("C1", school_id=6)),
            # a key change of a referenced school (cascades to the session and offering)
            PutDocument("ed-fi:schools", "s1", school(10), displace=True),
            PutDocument("ed-fi:schools", "s7", school(7)),
            # another id takes school 3's key: s3 is deleted, its tombstone kept
            PutDocument("ed-fi:schools", "s8", school(3, name="Moved"), displace=True),
            PutDocument("ed-fi:schools", "s9", school(9)),
            PutDocument("ed-fi:schools", "s9", school(9, name="Twice")),  # the same id again
            DeleteDocument("ed-fi:schools", "s4"),
            PutDocument("ed-fi:schools", "s4", school(4, name="Back")),  # re-created
            PutDocument("ed-fi:schools", "s11", school(11), if_match=None),
        ],
        [  # a page whose reference does not resolve: nothing of it stays
            PutDocument("ed-fi:schools", "s12", school(12)),
            PutDocument("ed-fi:sessions", "x2", session(school_id=404)),
        ],
        [
            PutDocument("ed-fi:schools", "s5", school(5, name="Five")),
            PutDocument("ed-fi:courseOfferings", "c1", offering("C1", school_id=6, year=2025)),
            PutDocument("ed-fi:schools", "s12", school(12)),
        ],
    ]


async def _run(store: Store) -> list[Any]:
    """Every page of :func:`_pages` (the clock moving between pages); each page's outcomes,
    or the index of the failing operation and the error's type."""
    clock = store.clock
    assert isinstance(clock, ManualClock)
    seen: list[Any] = []
    for page in _pages():
        clock.advance(1.5)
        try:
            results = await store.write_many(page)
        except UnresolvedReferenceError as error:
            seen.append((error.data.get("operation"), type(error).__name__))
            continue
        seen.append([_outcome(r) for r in results])
    return seen


def _outcome(result: Any) -> tuple[Any, ...]:
    if hasattr(result, "document"):
        d = result.document
        return (result.created, result.changed, d.id, d.body, d.content_version, d.content_hash)
    return ("deleted", result.id, result.change_version, result.last_content_version)


async def _tables(store: Store, *, stamps: bool) -> dict[str, list[tuple[Any, ...]]]:
    """Every bookkeeping table, keyed by document ids (the same in both stores)."""
    at = ", d.content_modified_at, d.identity_modified_at, d.created_at" if stamps else ""
    queries = {
        "documents": "SELECT d.collection, d.id, d.body, d.content_hash, d.key_values, "
        f"d.content_version, d.identity_version, d.referential_id{at} FROM documents d",
        "journal": "SELECT j.collection, j.change_version, d.id FROM journal j "
        "LEFT JOIN documents d ON d.doc_pk = j.doc_pk",
        "references": "SELECT d.id, r.referential_id FROM document_references r "
        "JOIN documents d ON d.doc_pk = r.referrer_pk",
        "targets": "SELECT t.referential_id, d.id FROM reference_targets t "
        "JOIN documents d ON d.doc_pk = t.doc_pk",
        "index": "SELECT i.collection, i.name, i.key, d.id FROM index_keys i "
        "JOIN documents d ON d.doc_pk = i.doc_pk",
        "tombstones": "SELECT change_version, collection, id, referential_id, key_values, "
        "last_content_version FROM tombstones",
        "history": "SELECT collection, id, body, content_version, superseded_by FROM history",
        "key_changes": "SELECT change_version, collection, id, old_key_values, new_key_values "
        "FROM key_changes",
    }
    if stamps:  # one engine: the row keys too
        queries["pks"] = "SELECT doc_pk, collection, id FROM documents"

    def read(tx: Any) -> dict[str, list[tuple[Any, ...]]]:
        return {
            name: sorted((tuple(str(v) for v in row) for row in tx.query(sql)), key=repr)
            for name, sql in queries.items()
        }

    return await store.engine.read(read)


def _write_counters(store: Store) -> dict[str, int]:
    """The store's counters of writes (not those of background reindexing, which runs on its own)."""
    return {k: v for k, v in dict(store.counters).items() if k != "documents_reindexed"}


async def test_bulk_puts_leave_what_one_by_one_puts_leave(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    start = store.clock.now()
    reference = await open_store(str(tmp_path / "one-by-one.db"), clock=ManualClock(start))
    try:
        with monkeypatch.context() as patch:  # every operation through the one-by-one path
            patch.setattr(_store, "_plain_put", lambda _planned: False)
            expected = await _run(reference)
            expected_tables = await _tables(reference, stamps=store.engine.name == "sqlite")
            expected_counters = _write_counters(reference)
    finally:
        await reference.close()

    taken: list[int] = []
    upsert_many = _write_batch.upsert_many

    def spy(*args: Any) -> Any:  # counts the puts the planner took, changes nothing
        done = upsert_many(*args)
        taken.append(len(done))
        return done

    monkeypatch.setattr(_write_batch, "upsert_many", spy)
    assert await _run(store) == expected
    assert await _tables(store, stamps=store.engine.name == "sqlite") == expected_tables
    assert _write_counters(store) == expected_counters
    assert expected[2] == (1, "UnresolvedReferenceError")
    if store.engine.name == "sqlite":
        # most puts took the multi-row path; key changes, displacements and repeats did not
        assert sum(taken) >= 14
    else:
        assert taken == []
