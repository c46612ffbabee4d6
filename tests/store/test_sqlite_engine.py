"""The SQLite engine's own behaviour: group commit and background checkpoints."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from tests.support import async_wait_until
from tidemark.store import SqliteEngine, Transaction


def _insert(pk: int, body: str) -> Callable[[Transaction], int]:
    return lambda tx: tx.execute("INSERT INTO plain (pk, body) VALUES (?, ?)", (pk, body))


async def _create(engine: SqliteEngine) -> None:
    await engine.write(
        lambda tx: tx.execute("CREATE TABLE plain (pk INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    )


async def test_background_checkpoints_keep_the_wal_bounded(tmp_path: Path) -> None:
    threshold = 256 * 1024
    engine = SqliteEngine(tmp_path / "c.db", synchronous="NORMAL", checkpoint_bytes=threshold)
    try:
        await _create(engine)
        body = "x" * 3000  # about one page per row
        largest = 0
        for start in range(0, 1200, 40):  # ~4.7 MB of pages: far beyond the threshold
            await asyncio.gather(
                *(engine.write(_insert(i, body)) for i in range(start, start + 40))
            )
            largest = max(largest, os.path.getsize(f"{tmp_path}/c.db-wal"))
        await async_wait_until(lambda: engine.checkpoints >= 2, timeout=10)
        # The WAL starts over after each pass instead of growing with every write.
        assert largest < 8 * threshold
        count = await engine.read(lambda tx: tx.query_one("SELECT count(*) FROM plain"))
        assert count == (1200,)
    finally:
        await engine.close()
    # Everything reached the database file (checkpointed) or the WAL: a new engine sees it all.
    reopened = SqliteEngine(tmp_path / "c.db")
    try:
        count = await reopened.read(lambda tx: tx.query_one("SELECT count(*) FROM plain"))
        assert count == (1200,)
    finally:
        await reopened.close()


async def test_no_checkpoint_below_the_threshold(tmp_path: Path) -> None:
    engine = SqliteEngine(tmp_path / "q.db", checkpoint_bytes=64 * 1024 * 1024)
    try:
        await _create(engine)
        for i in range(20):
            await engine.write(_insert(i, "x"))
        assert engine.commits == 21
        assert engine.checkpoints == 0
    finally:
        await engine.close()
