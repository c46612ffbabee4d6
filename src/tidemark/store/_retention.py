"""Retention: forgetting the journal, tombstone and key-change rows older than a moment."""

from __future__ import annotations

from datetime import datetime

from tidemark.core import get_logger

from ._engine import Engine, Transaction
from ._types import stamp_text

log = get_logger("store")


async def purge_changes(engine: Engine, older_than: datetime, *, batch: int = 1000) -> int:
    """Forget journal, tombstone and key-change rows recorded before ``older_than``.

    First records the new oldest retained version (so readers get 410 for older windows
    instead of partial answers), then deletes in batches of ``batch`` rows, one short
    transaction each. Returns the number of rows deleted. Documents and history are kept.
    """
    horizon = stamp_text(older_than)
    # Never declare unanswerable a version that a writer still in flight may commit: the
    # oldest retained version stays at or below the newest safe one + 1.
    safe = await engine.newest_safe_version()

    def mark(tx: Transaction) -> int | None:
        row = tx.query_one(
            "SELECT max(v) FROM ("
            "SELECT max(change_version) AS v FROM journal WHERE recorded_at < ? UNION ALL "
            "SELECT max(change_version) FROM tombstones WHERE deleted_at < ? UNION ALL "
            "SELECT max(change_version) FROM key_changes WHERE changed_at < ?) m",
            (horizon, horizon, horizon),
        )
        through = min(int(row[0]), safe) if row and row[0] is not None else None
        if through is None or through <= 0:
            return None
        current = tx.query_one("SELECT value FROM store_settings WHERE key = 'purged_through'")
        if current is not None and int(current[0]) >= through:
            return int(current[0])
        tx.execute(
            "INSERT INTO store_settings (key, value) VALUES ('purged_through', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(through),),
        )
        return through

    through = await engine.write(mark)
    if through is None:
        return 0
    deleted = 0

    def journal_collections(tx: Transaction) -> list[str]:
        # A skip scan over the journal's (collection, change_version) key: one probe per
        # collection instead of a pass over every row.
        rows = tx.query(
            "WITH RECURSIVE c(name) AS (SELECT min(collection) FROM journal UNION ALL "
            "SELECT (SELECT min(collection) FROM journal WHERE collection > c.name) FROM c "
            "WHERE c.name IS NOT NULL) SELECT name FROM c WHERE name IS NOT NULL"
        )
        return [str(r[0]) for r in rows]

    targets: list[tuple[str, str | None]] = [
        ("journal", name) for name in await engine.read(journal_collections)
    ]
    targets += [("tombstones", None), ("key_changes", None)]
    for table, collection in targets:
        while True:

            def chunk(
                tx: Transaction, table: str = table, collection: str | None = collection
            ) -> int:
                if collection is None:
                    return tx.execute(
                        f"DELETE FROM {table} WHERE change_version IN (SELECT change_version FROM {table} "
                        "WHERE change_version <= ? ORDER BY change_version LIMIT ?)",
                        (through, batch),
                    )
                return tx.execute(
                    "DELETE FROM journal WHERE collection = ? AND change_version IN (SELECT change_version "
                    "FROM journal WHERE collection = ? AND change_version <= ? ORDER BY change_version LIMIT ?)",
                    (collection, collection, through, batch),
                )

            removed = await engine.write(chunk)
            deleted += removed
            if removed < batch:
                break
    log.info("changes purged", through_version=through, rows=deleted)
    return deleted
