"""The store's indexers by collection prefix, and the background reindex when one changes."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Mapping
from typing import Any

from tidemark.core import BadRequestError, Counters, canonical_hash, get_logger, parse_json

from . import _index_sql
from ._engine import Engine, Transaction
from ._index import IndexEntry, Indexer, IndexStatus, normalise_entries

log = get_logger("store")

#: Documents read, indexed and written per reindex transaction.
REINDEX_BATCH = 500
_SETTING = "index_fingerprint:"
#: Seconds between two progress log lines of a reindex.
_LOG_EVERY = 5.0


class Indexes:
    """The indexers of one store by collection prefix (``ed-fi:``, ``fhir:``); a collection is
    indexed by the indexer of the longest prefix it starts with. Thread-safe for reads."""

    def __init__(self) -> None:
        self._by_prefix: dict[str, Indexer] = {}
        self._prefixes: tuple[str, ...] = ()

    def register(self, prefix: str, indexer: Indexer) -> None:
        """Index the collections starting with ``prefix`` with ``indexer`` from now on."""
        if not prefix or not isinstance(getattr(indexer, "fingerprint", None), str):
            raise BadRequestError("an indexer needs a non-empty prefix and a fingerprint string")
        by_prefix = {**self._by_prefix, prefix: indexer}
        self._prefixes = tuple(sorted(by_prefix, key=len, reverse=True))
        self._by_prefix = by_prefix

    def get(self, prefix: str) -> Indexer | None:
        """The indexer registered for exactly ``prefix``."""
        return self._by_prefix.get(prefix)

    def prefixes(self) -> list[str]:
        """Every registered prefix."""
        return list(self._prefixes)

    def prefix_of(self, collection: str) -> str | None:
        """The prefix whose indexer indexes ``collection``."""
        for prefix in self._prefixes:
            if collection.startswith(prefix):
                return prefix
        return None

    def entries_for(self, collection: str, body: Mapping[str, Any]) -> frozenset[IndexEntry] | None:
        """The normalised entries of ``body`` in ``collection``, or ``None`` when no indexer
        covers the collection. Pure; call it outside the writer."""
        prefix = self.prefix_of(collection)
        if prefix is None:
            return None
        return normalise_entries(self._by_prefix[prefix].entries(collection, body))


async def ensure_indexed(
    engine: Engine,
    indexes: Indexes,
    prefix: str,
    counters: Counters,
    status: IndexStatus,
    batch: int = REINDEX_BATCH,
) -> None:
    """Bring ``prefix``'s entries in line with its indexer, then record its fingerprint.

    Nothing to do when the recorded fingerprint is the indexer's. Otherwise every document of
    the prefix that exists when it starts (documents written later index themselves with the
    registered indexer) is indexed again in batches of ``batch`` documents: read in one transaction,
    its entries computed outside any transaction, and written (differences only) in another
    that skips documents changed in between (their write indexed them already). Concurrent
    writes keep indexing themselves throughout. Progress goes to ``status``, the counter
    ``documents_reindexed`` and the log.
    """
    key = _SETTING + prefix
    fingerprint = status.fingerprint

    def recorded(tx: Transaction) -> str | None:
        row = tx.query_one("SELECT value FROM store_settings WHERE key = ?", (key,))
        return str(row[0]) if row else None

    try:
        if await engine.read(recorded) == fingerprint:
            status.finish()
            return
        status.total, last = await engine.read(lambda tx: _count(tx, prefix))
        if status.total:
            log.info(
                "reindex started",
                prefix=prefix,
                documents=status.total,
                fingerprint=fingerprint,
            )
        started = last_log = time.monotonic()
        cursor = 0
        while True:
            read = await engine.read(
                functools.partial(_batch, prefix=prefix, after=cursor, last=last, size=batch)
            )
            if not read:
                break
            computed = await asyncio.to_thread(_compute, indexes, read)
            await engine.write(functools.partial(_apply, computed=computed))
            cursor = read[-1][0]
            status.done += len(read)
            counters.increment("documents_reindexed", len(read))
            if time.monotonic() - last_log >= _LOG_EVERY:
                last_log = time.monotonic()
                log.info("reindex progress", prefix=prefix, done=status.done, total=status.total)

        def record(tx: Transaction) -> None:
            tx.execute(
                "INSERT INTO store_settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, fingerprint),
            )

        await engine.write(record)
        if status.total:
            log.info(
                "reindex finished",
                prefix=prefix,
                documents=status.done,
                seconds=round(time.monotonic() - started, 3),
            )
        status.finish()
    except asyncio.CancelledError as exc:
        status.finish(exc)
        raise
    except Exception as exc:
        log.error("reindex failed", prefix=prefix, exc_info=exc)
        status.finish(exc)


def _prefix_test(prefix: str) -> tuple[str, tuple[Any, ...]]:
    return "substr(collection, 1, ?) = ?", (len(prefix), prefix)


def _count(tx: Transaction, prefix: str) -> tuple[int, int]:
    """How many documents the prefix has, and the largest ``doc_pk`` of any document now."""
    row = tx.query_one("SELECT coalesce(max(doc_pk), 0) FROM documents")
    last = int(row[0]) if row else 0
    test, params = _prefix_test(prefix)
    row = tx.query_one(
        f"SELECT count(*) FROM documents WHERE {test} AND doc_pk <= ?", [*params, last]
    )
    return (int(row[0]) if row else 0), last


_Read = tuple[int, str, str, int]


def _batch(tx: Transaction, prefix: str, after: int, last: int, size: int) -> list[_Read]:
    test, params = _prefix_test(prefix)
    rows = tx.query(
        f"SELECT doc_pk, collection, body, content_version FROM documents WHERE doc_pk > ? "
        f"AND doc_pk <= ? AND {test} ORDER BY doc_pk LIMIT ?",
        [after, last, *params, size],
    )
    return [(int(pk), c, b, int(v)) for pk, c, b, v in rows]


def _compute(
    indexes: Indexes, batch: list[_Read]
) -> list[tuple[int, str, int, frozenset[IndexEntry]]]:
    computed = []
    for pk, collection, body, version in batch:
        entries = indexes.entries_for(collection, parse_json(body)) or frozenset()
        computed.append((pk, collection, version, entries))
    return computed


def _apply(tx: Transaction, computed: list[tuple[int, str, int, frozenset[IndexEntry]]]) -> None:
    pks = [pk for pk, _c, _v, _e in computed]
    marks = ", ".join("?" * len(pks))
    current = {
        int(pk): int(version)
        for pk, version in tx.query(
            f"SELECT doc_pk, content_version FROM documents WHERE doc_pk IN ({marks}) "
            "ORDER BY doc_pk" + tx.for_update,
            pks,
        )
    }
    unchanged = [item for item in computed if current.get(item[0]) == item[2]]
    stored = _index_sql.stored_entries(tx, [pk for pk, _c, _v, _e in unchanged])
    for pk, collection, _version, entries in unchanged:
        _index_sql.replace_entries(tx, collection, pk, entries, stored[pk])


def fingerprint_of(*parts: Any) -> str:
    """A fingerprint for an indexer defined by ``parts`` (any canonical-JSON values)."""
    return canonical_hash(list(parts))
