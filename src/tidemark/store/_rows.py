"""The shape of one ``documents`` row, as the write path and the reads select it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tidemark.core import parse_iso_utc, parse_json

from ._types import StoredDocument

#: The columns of :class:`DocRow`, in its field order.
DOC_COLUMNS = (
    "doc_pk, collection, id, body, content_hash, key_values, content_version, "
    "content_modified_at, identity_version, identity_modified_at, created_at, referential_id"
)


@dataclass(slots=True)
class DocRow:
    """One ``documents`` row (selected as :data:`DOC_COLUMNS`)."""

    pk: int
    collection: str
    id: str
    body_text: str
    content_hash: str
    key_values_text: str | None
    content_version: int
    content_modified_at: str
    identity_version: int
    identity_modified_at: str
    created_at: str
    referential_id: str | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> DocRow:
        return cls(*row)

    def document(self) -> StoredDocument:
        """The stored document (its body parsed from the stored text)."""
        return StoredDocument(
            collection=self.collection,
            id=self.id,
            body=parse_json(self.body_text),
            content_version=int(self.content_version),
            content_last_modified_at=parse_iso_utc(self.content_modified_at),
            identity_version=int(self.identity_version),
            identity_last_modified_at=parse_iso_utc(self.identity_modified_at),
            content_hash=self.content_hash,
            created_at=parse_iso_utc(self.created_at),
        )
