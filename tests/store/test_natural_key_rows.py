"""Natural-key rows without an index by document (migration 5): deletes and key changes find a
document's rows by the keys its identity gives, and stores from before the migration upgrade."""

from __future__ import annotations

from typing import Any

import pytest

from tidemark.core import DependentItemExistsError
from tidemark.store import Store, open_store
from tidemark.store._engine import Transaction

from . import samples


async def _orphans(store: Store) -> int:
    """Natural-key rows whose document is gone."""
    rows = await store.engine.read(
        lambda tx: tx.query(
            "SELECT count(*) FROM reference_targets r WHERE NOT EXISTS "
            "(SELECT 1 FROM documents d WHERE d.doc_pk = r.doc_pk)"
        )
    )
    return int(rows[0][0])


async def _rows_of(store: Store, collection: str, id: str) -> int:
    rows = await store.engine.read(
        lambda tx: tx.query(
            "SELECT count(*) FROM reference_targets r JOIN documents d ON d.doc_pk = r.doc_pk "
            "WHERE d.collection = ? AND d.id = ?",
            (collection, id),
        )
    )
    return int(rows[0][0])


def _has_index(tx: Transaction, name: str) -> bool:
    if tx.engine_name == "sqlite":
        sql = "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?"
    else:
        sql = (
            "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexname = ?"
        )
    row = tx.query_one(sql, (name,))
    return bool(row and row[0])


async def test_a_store_from_before_migration_5_upgrades_and_frees_natural_keys(store_url: str):
    store = await open_store(store_url)
    chain = await samples.seed_chain(store)
    lone = (await store.upsert("schools", samples.school(2))).document
    assert (
        await _rows_of(store, "ed-fi:schools", lone.id) == 2
    )  # its own key, EducationOrganization

    def as_version_3(tx: Transaction) -> None:
        # The schema as the versions before 5 left it: the index by document is back.
        tx.execute("CREATE INDEX reference_targets_doc ON reference_targets (doc_pk)")
        tx.execute("DELETE FROM schema_migrations WHERE version = 5")

    await store.engine.write(as_version_3)
    await store.close()

    store = await open_store(store_url)
    try:
        versions = await store.engine.read(
            lambda tx: tx.query("SELECT version FROM schema_migrations ORDER BY version")
        )
        assert 5 in [int(v[0]) for v in versions]
        assert not await store.engine.read(lambda tx: _has_index(tx, "reference_targets_doc"))
        # Reads and writes of the upgraded store: the referenced school keeps its keys.
        with pytest.raises(DependentItemExistsError):
            await store.delete("ed-fi:schools", chain["school"].id)
        assert await _rows_of(store, "ed-fi:schools", chain["school"].id) == 2
        # A key change frees the old key: the old name makes a new session.
        await store.replace("sessions", chain["session"].id, samples.session(name="Autumn"))
        assert await _rows_of(store, "ed-fi:sessions", chain["session"].id) == 1
        fresh = await store.upsert("sessions", samples.session(name="Fall"))
        assert fresh.created and fresh.document.id != chain["session"].id
        again = await store.upsert("sessions", samples.session(name="Autumn"))
        assert again.document.id == chain["session"].id and not again.changed
        # A delete frees both keys of a school.
        await store.delete("ed-fi:schools", lone.id)
        assert await _orphans(store) == 0
        back = await store.upsert("schools", samples.school(2))
        assert back.created and back.document.id != lone.id
        assert await _rows_of(store, "ed-fi:schools", back.document.id) == 2
    finally:
        await store.close()


async def test_a_delete_finds_rows_its_identity_no_longer_names(store: Store):
    """Rows claimed under other naming rules (here: rewritten by hand) are found by a scan."""
    school = (await store.upsert("schools", samples.school(3))).document
    renamed = "0" * 32

    def rename(tx: Transaction) -> Any:
        row = tx.query_one(
            "SELECT doc_pk, referential_id FROM documents WHERE collection = ? AND id = ?",
            ("ed-fi:schools", school.id),
        )
        assert row is not None
        tx.execute(
            "UPDATE reference_targets SET referential_id = ? WHERE referential_id = ?",
            (renamed, row[1]),
        )
        tx.execute("UPDATE documents SET referential_id = ? WHERE doc_pk = ?", (renamed, row[0]))

    await store.engine.write(rename)
    await store.delete("ed-fi:schools", school.id)
    assert await _orphans(store) == 0
    assert (await store.upsert("schools", samples.school(3))).created
