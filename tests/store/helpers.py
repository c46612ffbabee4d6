"""Read-only views of the store's bookkeeping tables, for assertions."""

from __future__ import annotations

from typing import Any

from tidemark.store import Store


async def journal(store: Store, collection: str | None = None) -> list[tuple[int, str]]:
    """(change_version, collection) journal rows in order."""

    def work(tx: Any) -> list[tuple[int, str]]:
        if collection is None:
            rows = tx.query(
                "SELECT change_version, collection FROM journal ORDER BY change_version"
            )
        else:
            rows = tx.query(
                "SELECT change_version, collection FROM journal WHERE collection = ? ORDER BY change_version",
                (collection,),
            )
        return [(int(v), c) for v, c in rows]

    return await store.engine.read(work)


async def count(store: Store, table: str) -> int:
    assert table in {
        "journal",
        "history",
        "tombstones",
        "key_changes",
        "documents",
        "document_references",
    }

    def work(tx: Any) -> int:
        row = tx.query_one(f"SELECT count(*) FROM {table}")
        return int(row[0])

    return await store.engine.read(work)


async def key_changes(store: Store) -> list[tuple[int, str, str, str]]:
    def work(tx: Any) -> list[tuple[int, str, str, str]]:
        rows = tx.query(
            "SELECT change_version, collection, old_key_values, new_key_values FROM key_changes ORDER BY change_version"
        )
        return [(int(v), c, o, n) for v, c, o, n in rows]

    return await store.engine.read(work)


async def tombstones(store: Store) -> list[tuple[int, str, str, str | None]]:
    def work(tx: Any) -> list[tuple[int, str, str, str | None]]:
        rows = tx.query(
            "SELECT change_version, collection, id, key_values FROM tombstones ORDER BY change_version"
        )
        return [(int(v), c, i, k) for v, c, i, k in rows]

    return await store.engine.read(work)
