"""Sync server routes: the cloud tier of ``tidemark.sync`` on the change-tracked store.

::

    GET    /sync/v1/{namespace}/metadata      every key's hash, newest stamp, counts and ETag
    GET    /sync/v1/{namespace}/blobs/{key}   the blob, with its ETag (304 on If-None-Match)
    PUT    /sync/v1/{namespace}/blobs/{key}   If-Match / If-None-Match (428 without either); 201
                                              or 200 with the key's metadata, 412 when the blob
                                              changed meanwhile, 400 for a malformed blob or a
                                              stamp that is not a date-time or lies beyond the
                                              allowed clock skew
    DELETE /sync/v1/{namespace}/blobs/{key}   If-Match (428 without it); 204, 404, 412

Each key is one document of the generic collection ``sync:<namespace>`` (id: the hash of the
key; body: the key, the blob and its metadata), so blobs get the store's stamps, ETags, history
and access control. The metadata of a namespace is kept in memory per server process and brought
up to date from the store's change feed (only documents changed since the last request are
read), so answering a sync client's metadata request does not read every blob.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tidemark.core import (
    CorruptDataError,
    DataValidationError,
    GoneError,
    NotFoundError,
    ParameterValidationError,
    PreconditionFailedError,
    PreconditionRequiredError,
    canonical_bytes,
    content_hash,
    etag_matches,
    get_logger,
)
from tidemark.store import Store, StoredDocument
from tidemark.sync import (
    KeyMetadata,
    TierMetadata,
    skew_horizon,
    stamp_problems,
    validate_blob,
    validate_key,
)

from ._responses import FastJSONResponse, app_store, read_json_body
from ._settings import ServerSettings

log = get_logger("sync")

COLLECTION_PREFIX = "sync:"
MAX_NAMESPACE_LENGTH = 100
#: Namespaces whose metadata index one server process keeps (least recently used dropped).
MAX_INDEXED_NAMESPACES = 1024
#: Rows read in one change-feed call: a whole window in one snapshot (pages could skip rows
#: that move out of the window while they are read).
_WINDOW_LIMIT = 10**9


def collection_of(namespace: str) -> str:
    """The store collection holding a namespace's blobs (400 for an invalid namespace)."""
    try:
        validate_key(namespace)
    except ParameterValidationError:
        raise ParameterValidationError(
            "invalid namespace",
            errors=[f"{namespace!r} is not dot-separated [A-Za-z0-9_-] segments"],
        ) from None
    if len(namespace) > MAX_NAMESPACE_LENGTH:
        raise ParameterValidationError(
            "invalid namespace", errors=[f"at most {MAX_NAMESPACE_LENGTH} characters"]
        )
    return COLLECTION_PREFIX + namespace


def document_id(key: str) -> str:
    """The document id of an entity key: its hash (store ids are shorter and stricter)."""
    return content_hash(key)


@dataclass
class _Entry:
    key: str
    meta: KeyMetadata
    etag: str


@dataclass
class NamespaceIndex:
    """One namespace's key metadata as of change version ``watermark``."""

    watermark: int = -1
    by_key: dict[str, _Entry] = field(default_factory=dict)
    key_of_id: dict[str, str] = field(default_factory=dict)
    snapshot: dict[str, Any] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def apply(self, document: StoredDocument) -> None:
        key = document.body.get("key")
        try:
            if not isinstance(key, str):
                raise CorruptDataError("no key")
            meta = KeyMetadata.from_json(document.body.get("meta"))
        except CorruptDataError as error:
            log.warning("malformed sync document ignored", id=document.id, reason=str(error))
            self.remove(document.id)
            return
        self.by_key[key] = _Entry(key, meta, document.etag.header())
        self.key_of_id[document.id] = key
        self.snapshot = None

    def remove(self, doc_id: str) -> None:
        key = self.key_of_id.pop(doc_id, None)
        if key is not None:
            self.by_key.pop(key, None)
            self.snapshot = None

    def document(self) -> dict[str, Any]:
        """The metadata response body."""
        if self.snapshot is None:
            tier = TierMetadata({key: entry.meta for key, entry in self.by_key.items()})
            keys = {}
            for key in sorted(self.by_key):
                entry = self.by_key[key]
                keys[key] = {**entry.meta.to_json(), "etag": entry.etag}
            self.snapshot = {
                "updated_at": tier.updated_at,
                "root_hash": tier.root_hash,
                "keys": keys,
            }
        return self.snapshot


async def _refresh(store: Store, collection: str, index: NamespaceIndex) -> None:
    newest = await store.newest_change_version()
    if index.watermark >= 0 and newest >= index.watermark:
        if newest == index.watermark:
            return
        try:
            changed = await store.changes(
                collection,
                min_version=index.watermark + 1,
                max_version=newest,
                limit=_WINDOW_LIMIT,
            )
            deleted = await store.deletes(
                collection,
                min_version=index.watermark + 1,
                max_version=newest,
                limit=_WINDOW_LIMIT,
            )
        except GoneError:
            log.info("change feed window purged; reloading namespace", collection=collection)
        else:
            for tombstone in deleted.items:
                index.remove(tombstone.id)
            for document in changed.items:
                index.apply(document)
            index.watermark = newest
            return
    # A full read, in one snapshot; changes after ``newest`` are read again next time.
    page = await store.query(collection, limit=_WINDOW_LIMIT)
    index.by_key.clear()
    index.key_of_id.clear()
    index.snapshot = None
    for document in page.items:
        index.apply(document)
    index.watermark = newest


def _indexes(request: Request) -> OrderedDict[str, NamespaceIndex]:
    indexes: OrderedDict[str, NamespaceIndex] | None = getattr(
        request.app.state, "sync_indexes", None
    )
    if indexes is None:
        indexes = OrderedDict()
        request.app.state.sync_indexes = indexes
    return indexes


def _index(request: Request, collection: str) -> NamespaceIndex:
    indexes = _indexes(request)
    index = indexes.get(collection)
    if index is None:
        index = indexes[collection] = NamespaceIndex()
        while len(indexes) > MAX_INDEXED_NAMESPACES:
            indexes.popitem(last=False)
    indexes.move_to_end(collection)
    return index


def _key(request: Request) -> str:
    key: str = request.path_params["key"]
    return validate_key(key)


async def metadata(request: Request) -> Response:
    """``GET /sync/v1/{namespace}/metadata``."""
    collection = collection_of(request.path_params["namespace"])
    index = _index(request, collection)
    async with index.lock:
        await _refresh(app_store(request), collection, index)
        body = index.document()
    return FastJSONResponse(body)


async def blob(request: Request) -> Response:
    """``/sync/v1/{namespace}/blobs/{key}``: GET, PUT or DELETE."""
    if request.method == "PUT":
        return await put_blob(request)
    if request.method == "DELETE":
        return await delete_blob(request)
    return await get_blob(request)


async def get_blob(request: Request) -> Response:
    """``GET /sync/v1/{namespace}/blobs/{key}``."""
    collection = collection_of(request.path_params["namespace"])
    key = _key(request)
    document = await app_store(request).get(collection, document_id(key))
    if document is None:
        raise NotFoundError(f"The key {key!r} does not exist in this namespace.")
    etag = document.etag.header()
    if etag_matches(request.headers.get("if-none-match"), document.etag):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(
        canonical_bytes(document.body["blob"]),
        media_type="application/json",
        headers={"ETag": etag},
    )


def _condition(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    return value if value is not None and value.strip() else None


def _require_condition(request: Request, *names: str) -> None:
    # An unconditional write would overwrite whatever another device stored meanwhile.
    if all(_condition(request, name) is None for name in names):
        raise PreconditionRequiredError(
            "Sync writes must be conditional: send If-None-Match: * to create a key, or "
            "If-Match with the key's ETag (from the metadata or a GET) to replace or delete it."
        )


async def put_blob(request: Request) -> Response:
    """``PUT /sync/v1/{namespace}/blobs/{key}`` (``If-Match`` / ``If-None-Match``)."""
    collection = collection_of(request.path_params["namespace"])
    key = _key(request)
    _require_condition(request, "if-match", "if-none-match")
    settings: ServerSettings = request.app.state.settings
    blob = validate_blob(await read_json_body(request, settings.max_body_bytes))
    if not blob:  # normalized: no entities and no tombstones
        raise DataValidationError(
            "an empty blob is not stored; DELETE the key instead",
            validation_errors={"$": ["no entities and no tombstones"]},
        )
    store = app_store(request)
    problems = stamp_problems(blob, skew_horizon(store.clock, settings.sync_max_clock_skew))
    if problems:
        raise DataValidationError(
            "The blob carries stamps this server does not accept: every updated_at and "
            f"deleted_at must be a date-time at most {settings.sync_max_clock_skew:g} s ahead of "
            "the server clock. Fix the writing device's clock, then save the entities again.",
            validation_errors=problems,
        )
    meta = KeyMetadata.of(blob)
    try:
        outcome = await store.put(
            collection,
            document_id(key),
            {"key": key, "blob": blob, "meta": meta.to_json()},
            if_match=_condition(request, "if-match"),
            if_none_match=_condition(request, "if-none-match"),
        )
    except DataValidationError as error:
        # The store names paths in the document that wraps the blob; the client sent the blob.
        raise DataValidationError(
            error.detail,
            validation_errors={
                path.replace("$.blob", "$", 1): messages
                for path, messages in error.validation_errors.items()
            },
        ) from None
    etag = outcome.document.etag.header()
    log.info(
        "sync blob stored",
        collection=collection,
        key=key,
        created=outcome.created,
        changed=outcome.changed,
        client=getattr(request.state, "client_key", None),
    )
    return FastJSONResponse(
        {**meta.to_json(), "etag": etag},
        status_code=201 if outcome.created else 200,
        headers={"ETag": etag},
    )


async def delete_blob(request: Request) -> Response:
    """``DELETE /sync/v1/{namespace}/blobs/{key}`` (``If-Match``)."""
    collection = collection_of(request.path_params["namespace"])
    key = _key(request)
    _require_condition(request, "if-match")
    store = app_store(request)
    try:
        await store.delete(collection, document_id(key), if_match=_condition(request, "if-match"))
    except NotFoundError:
        raise NotFoundError(f"The key {key!r} does not exist in this namespace.") from None
    except PreconditionFailedError:
        # No representation fails any If-Match; the client needs to know the key is gone.
        if await store.get(collection, document_id(key)) is None:
            raise NotFoundError(f"The key {key!r} does not exist in this namespace.") from None
        raise
    log.info("sync blob deleted", collection=collection, key=key)
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    """The sync route group, mounted by ``create_app`` (behind its bearer-token middleware)."""
    return [
        Route("/sync/v1/{namespace}/metadata", metadata, methods=["GET"], name="sync_metadata"),
        Route(
            "/sync/v1/{namespace}/blobs/{key}",
            blob,
            methods=["GET", "PUT", "DELETE"],
            name="sync_blob",
        ),
    ]
