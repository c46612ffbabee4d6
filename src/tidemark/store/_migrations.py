"""Versioned schema migrations, one list per engine. Append new versions; never edit old ones."""

from __future__ import annotations

_SQLITE_V1 = [
    "CREATE TABLE store_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE change_version_counter (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        value INTEGER NOT NULL)""",
    "INSERT INTO change_version_counter (singleton, value) VALUES (1, 0)",
    """CREATE TABLE documents (
        doc_pk INTEGER PRIMARY KEY,
        collection TEXT NOT NULL,
        id TEXT NOT NULL,
        body TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        key_values TEXT,
        content_version INTEGER NOT NULL,
        content_modified_at TEXT NOT NULL,
        identity_version INTEGER NOT NULL,
        identity_modified_at TEXT NOT NULL,
        created_at TEXT NOT NULL,
        referential_id TEXT,
        UNIQUE (collection, id))""",
    # Few b-trees per write: each one is another page to log at every commit. Tables keyed by
    # what they are searched by are WITHOUT ROWID, so the key is the table.
    "CREATE INDEX documents_modified ON documents (collection, content_modified_at)",
    """CREATE TABLE reference_targets (
        referential_id TEXT PRIMARY KEY,
        doc_pk INTEGER NOT NULL) WITHOUT ROWID""",
    "CREATE INDEX reference_targets_doc ON reference_targets (doc_pk)",
    """CREATE TABLE document_references (
        referrer_pk INTEGER NOT NULL,
        referential_id TEXT NOT NULL,
        PRIMARY KEY (referrer_pk, referential_id)) WITHOUT ROWID""",
    "CREATE INDEX document_references_target ON document_references (referential_id)",
    """CREATE TABLE journal (
        collection TEXT NOT NULL,
        change_version INTEGER NOT NULL,
        doc_pk INTEGER NOT NULL,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (collection, change_version)) WITHOUT ROWID""",
    """CREATE TABLE tombstones (
        change_version INTEGER PRIMARY KEY,
        collection TEXT NOT NULL,
        id TEXT NOT NULL,
        referential_id TEXT,
        key_values TEXT,
        last_content_version INTEGER NOT NULL,
        deleted_at TEXT NOT NULL)""",
    "CREATE INDEX tombstones_collection ON tombstones (collection, change_version)",
    "CREATE INDEX tombstones_id ON tombstones (collection, id)",
    "CREATE INDEX tombstones_key ON tombstones (referential_id)",
    """CREATE TABLE key_changes (
        change_version INTEGER PRIMARY KEY,
        collection TEXT NOT NULL,
        doc_pk INTEGER NOT NULL,
        id TEXT NOT NULL,
        old_key_values TEXT NOT NULL,
        new_key_values TEXT NOT NULL,
        changed_at TEXT NOT NULL)""",
    "CREATE INDEX key_changes_collection ON key_changes (collection, change_version)",
    """CREATE TABLE history (
        collection TEXT NOT NULL,
        id TEXT NOT NULL,
        content_version INTEGER NOT NULL,
        body TEXT NOT NULL,
        valid_from TEXT NOT NULL,
        valid_to TEXT NOT NULL,
        superseded_by INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (collection, id, content_version)) WITHOUT ROWID""",
    # Journal, history and key-change rows are written by the database itself whenever a
    # document's stamps move, so no write path can forget them and no extra round trip is paid.
    """CREATE TRIGGER documents_journal_insert AFTER INSERT ON documents BEGIN
        INSERT INTO journal (change_version, collection, doc_pk, recorded_at)
        VALUES (NEW.content_version, NEW.collection, NEW.doc_pk, NEW.content_modified_at);
    END""",
    """CREATE TRIGGER documents_journal_update AFTER UPDATE OF content_version ON documents
    WHEN NEW.content_version <> OLD.content_version BEGIN
        INSERT INTO journal (change_version, collection, doc_pk, recorded_at)
        VALUES (NEW.content_version, NEW.collection, NEW.doc_pk, NEW.content_modified_at);
        INSERT INTO history (collection, id, body, content_version, valid_from, valid_to, superseded_by, deleted)
        VALUES (OLD.collection, OLD.id, OLD.body, OLD.content_version, OLD.content_modified_at,
                NEW.content_modified_at, NEW.content_version, 0);
    END""",
    """CREATE TRIGGER documents_key_change AFTER UPDATE OF identity_version ON documents
    WHEN NEW.identity_version <> OLD.identity_version AND NEW.key_values IS NOT NULL BEGIN
        INSERT INTO key_changes (change_version, collection, doc_pk, id, old_key_values, new_key_values, changed_at)
        VALUES (NEW.identity_version, NEW.collection, NEW.doc_pk, NEW.id, OLD.key_values, NEW.key_values,
                NEW.identity_modified_at);
    END""",
]

_POSTGRES_V1 = [
    "CREATE TABLE store_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # A random tag that namespaces this store's advisory locks (see PostgresEngine): several
    # stores may share one database (one per schema), and must not see each other's writers.
    "INSERT INTO store_settings (key, value) VALUES ('lock_tag', (1 + floor(random() * 32766))::int::text)",
    "CREATE SEQUENCE change_version_seq AS BIGINT START WITH 1",
    """CREATE TABLE documents (
        doc_pk BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        collection TEXT NOT NULL,
        id TEXT NOT NULL,
        body TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        key_values TEXT,
        content_version BIGINT NOT NULL,
        content_modified_at TEXT NOT NULL,
        identity_version BIGINT NOT NULL,
        identity_modified_at TEXT NOT NULL,
        created_at TEXT NOT NULL,
        referential_id TEXT,
        UNIQUE (collection, id))""",
    "CREATE INDEX documents_modified ON documents (collection, content_modified_at)",
    "CREATE TABLE reference_targets (referential_id TEXT PRIMARY KEY, doc_pk BIGINT NOT NULL)",
    "CREATE INDEX reference_targets_doc ON reference_targets (doc_pk)",
    """CREATE TABLE document_references (
        referrer_pk BIGINT NOT NULL,
        referential_id TEXT NOT NULL,
        PRIMARY KEY (referrer_pk, referential_id))""",
    "CREATE INDEX document_references_target ON document_references (referential_id)",
    """CREATE TABLE journal (
        collection TEXT NOT NULL,
        change_version BIGINT NOT NULL,
        doc_pk BIGINT NOT NULL,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (collection, change_version))""",
    """CREATE TABLE tombstones (
        change_version BIGINT PRIMARY KEY,
        collection TEXT NOT NULL,
        id TEXT NOT NULL,
        referential_id TEXT,
        key_values TEXT,
        last_content_version BIGINT NOT NULL,
        deleted_at TEXT NOT NULL)""",
    "CREATE INDEX tombstones_collection ON tombstones (collection, change_version)",
    "CREATE INDEX tombstones_id ON tombstones (collection, id)",
    "CREATE INDEX tombstones_key ON tombstones (referential_id)",
    """CREATE TABLE key_changes (
        change_version BIGINT PRIMARY KEY,
        collection TEXT NOT NULL,
        doc_pk BIGINT NOT NULL,
        id TEXT NOT NULL,
        old_key_values TEXT NOT NULL,
        new_key_values TEXT NOT NULL,
        changed_at TEXT NOT NULL)""",
    "CREATE INDEX key_changes_collection ON key_changes (collection, change_version)",
    """CREATE TABLE history (
        collection TEXT NOT NULL,
        id TEXT NOT NULL,
        content_version BIGINT NOT NULL,
        body TEXT NOT NULL,
        valid_from TEXT NOT NULL,
        valid_to TEXT NOT NULL,
        superseded_by BIGINT NOT NULL,
        deleted BOOLEAN NOT NULL DEFAULT FALSE,
        PRIMARY KEY (collection, id, content_version))""",
    # Journal, history and key-change rows are written by the database itself whenever a
    # document's stamps move, so no write path can forget them and no extra round trip is paid.
    """CREATE FUNCTION tidemark_document_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' OR NEW.content_version <> OLD.content_version THEN
            INSERT INTO journal (change_version, collection, doc_pk, recorded_at)
            VALUES (NEW.content_version, NEW.collection, NEW.doc_pk, NEW.content_modified_at);
        END IF;
        IF TG_OP = 'UPDATE' AND NEW.content_version <> OLD.content_version THEN
            INSERT INTO history (collection, id, body, content_version, valid_from, valid_to, superseded_by, deleted)
            VALUES (OLD.collection, OLD.id, OLD.body, OLD.content_version, OLD.content_modified_at,
                    NEW.content_modified_at, NEW.content_version, FALSE);
        END IF;
        IF TG_OP = 'UPDATE' AND NEW.identity_version <> OLD.identity_version AND NEW.key_values IS NOT NULL THEN
            INSERT INTO key_changes (change_version, collection, doc_pk, id, old_key_values, new_key_values, changed_at)
            VALUES (NEW.identity_version, NEW.collection, NEW.doc_pk, NEW.id, OLD.key_values, NEW.key_values,
                    NEW.identity_modified_at);
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER documents_changed AFTER INSERT OR UPDATE OF content_version, identity_version ON documents
    FOR EACH ROW EXECUTE FUNCTION tidemark_document_changed()""",
]

# Version 2: keyset walks (cursor paging) read one collection in storage-key order, a range
# scan of this index whatever the depth of the page.
_SQLITE_V2 = ["CREATE INDEX documents_walk ON documents (collection, doc_pk)"]
_POSTGRES_V2 = ["CREATE INDEX documents_walk ON documents (collection, doc_pk)"]

# Version 3: the search index. Entries are written by the write path in the document's
# transaction (see _index_sql); a prefix's entries are rebuilt in the background when its
# indexer's fingerprint (in store_settings) changes.
_SQLITE_V3 = [
    """CREATE TABLE index_keys (
        collection TEXT NOT NULL,
        name TEXT NOT NULL,
        key TEXT NOT NULL,
        doc_pk INTEGER NOT NULL,
        PRIMARY KEY (collection, name, key, doc_pk)) WITHOUT ROWID""",
    "CREATE INDEX index_keys_doc ON index_keys (doc_pk, name, key)",
    """CREATE TABLE index_ranges (
        collection TEXT NOT NULL,
        name TEXT NOT NULL,
        unit TEXT NOT NULL,
        low REAL NOT NULL,
        high REAL NOT NULL,
        doc_pk INTEGER NOT NULL,
        PRIMARY KEY (collection, name, unit, low, high, doc_pk)) WITHOUT ROWID""",
    "CREATE INDEX index_ranges_high ON index_ranges (collection, name, unit, high)",
    "CREATE INDEX index_ranges_doc ON index_ranges (doc_pk, name)",
]

_POSTGRES_V3 = [
    # Keys compare byte-wise (COLLATE "C"), so a prefix is a range of the b-tree.
    """CREATE TABLE index_keys (
        collection TEXT NOT NULL,
        name TEXT NOT NULL,
        key TEXT COLLATE "C" NOT NULL,
        doc_pk BIGINT NOT NULL,
        PRIMARY KEY (collection, name, key, doc_pk))""",
    "CREATE INDEX index_keys_doc ON index_keys (doc_pk, name, key)",
    """CREATE TABLE index_ranges (
        collection TEXT NOT NULL,
        name TEXT NOT NULL,
        unit TEXT NOT NULL,
        low DOUBLE PRECISION NOT NULL,
        high DOUBLE PRECISION NOT NULL,
        doc_pk BIGINT NOT NULL,
        PRIMARY KEY (collection, name, unit, low, high, doc_pk))""",
    "CREATE INDEX index_ranges_high ON index_ranges (collection, name, unit, high, low, doc_pk)",
    "CREATE INDEX index_ranges_doc ON index_ranges (doc_pk, name)",
]

# Version 4: a search sorted by a range name walks the index in its exact order (the value,
# then doc_pk as the tie-break) and stops when the page is full; the former index put ``low``
# between the two, so every entry sharing the first page's last value was read and sorted.
_SQLITE_V4 = [
    "DROP INDEX index_ranges_high",
    "CREATE INDEX index_ranges_by_high ON index_ranges (collection, name, unit, high, doc_pk)",
    "CREATE INDEX index_ranges_by_low ON index_ranges (collection, name, unit, low, doc_pk)",
]
_POSTGRES_V4 = [
    "DROP INDEX index_ranges_high",
    "CREATE INDEX index_ranges_by_high ON index_ranges (collection, name, unit, high, doc_pk, low)",
    "CREATE INDEX index_ranges_by_low ON index_ranges (collection, name, unit, low, doc_pk, high)",
]

# Version 5: no index of natural keys by document. Every insert paid for one more b-tree (a
# page of the WAL at each commit, on SQLite) so that the rare delete or key change could find
# a document's keys by its storage key; those compute the keys from the document's identity
# instead (see ChangeSet._release_aliases). Number 4 is the sorted-search index change.
_SQLITE_V5 = ["DROP INDEX reference_targets_doc"]
_POSTGRES_V5 = ["DROP INDEX reference_targets_doc"]

#: (version, statements) in order. Both engines share version numbers and meaning. A store
#: applies every version it has not applied yet, in this order (not only those above its
#: highest), so versions added on parallel branches apply whichever lands first.
SQLITE_MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, _SQLITE_V1),
    (2, _SQLITE_V2),
    (3, _SQLITE_V3),
    (4, _SQLITE_V4),
    (5, _SQLITE_V5),
]
POSTGRES_MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, _POSTGRES_V1),
    (2, _POSTGRES_V2),
    (3, _POSTGRES_V3),
    (4, _POSTGRES_V4),
    (5, _POSTGRES_V5),
]
