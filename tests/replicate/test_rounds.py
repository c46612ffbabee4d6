"""Replication rounds against a live DS 5.1 source: the first extract, later rounds, both URL
layouts, an unchanged source, retention forcing a resynchronisation."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.replicate.support import (
    KEY,
    SECRET,
    SourceWriter,
    compare,
    ds51_schema,
    load_dataset,
)
from tests.support import ServerProcess
from tidemark.replicate import replicate
from tidemark.store import open_store


async def test_first_round_copies_every_document_with_the_source_ids(
    source_server: ServerProcess, replica_url: str
):
    load_dataset(source_server.base_url)
    writer = SourceWriter(source_server.base_url)
    store = await open_store(replica_url, model=ds51_schema())
    try:
        [summary] = await replicate(
            source_server.base_url, store, client_id=KEY, client_secret=SECRET
        )
        assert summary.kind == "extract"
        sizes = await compare(writer, store)
        assert sizes["students"] > 20
        assert summary.counters["written"] == sum(sizes.values())
        assert summary.watermark is not None
    finally:
        await store.close()
        writer.close()
