"""``POST /fhir`` with a Bundle: a ``transaction`` (all or nothing, in one store transaction)
or a ``batch`` (independent entries, each answered on its own)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import http
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tidemark.core import (
    BadRequestError,
    NotFoundError,
    PreconditionFailedError,
    TidemarkError,
    get_logger,
    version_etag,
)
from tidemark.store import (
    DeleteDocument,
    PutDocument,
    StoredDocument,
    Tombstone,
    Unmatched,
    WriteOutcome,
)

from ._fhir import (
    _allow,
    _base,
    _media_type,
    _prefer,
    _read_resource,
    _respond,
    _validate,
    criteria_unmatched,
    fhir_errors,
    find_matches,
)
from ._fhir_criteria import parse_criteria
from ._fhir_model import (
    FHIR_JSON,
    ID_PATTERN,
    R4_RESOURCE_TYPES,
    check_resource,
    collection_of,
    error_outcome,
    instant,
    issue,
    operation_outcome,
    representation,
    stored_body,
)
from ._fhir_patch import apply_patch, patch_kind
from ._fhir_writes import element_repeats
from ._responses import app_store

log = get_logger("fhir")

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
#: The spec's processing order of a transaction: deletes, creates, updates and patches, reads.
ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
#: How often a transaction is planned again when a resource it read changed before it wrote.
ATTEMPTS = 5
_PLACEHOLDER = re.compile(r"^urn:(uuid|oid):\S+$")


@fhir_errors
async def system_level(request: Request) -> Response:
    """``POST /fhir``: process a ``transaction`` or ``batch`` Bundle."""
    _allow(request, "POST")
    _media_type(request)
    bundle = await _read_resource(request)
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BadRequestError("POST /fhir takes a Bundle of type transaction or batch.")
    kind = bundle.get("type")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise BadRequestError("Bundle.entry must be an array of objects.")
    if kind == "transaction":
        return await _transaction(request, entries)
    if kind == "batch":
        return await _batch(request, entries)
    raise BadRequestError(f"POST /fhir takes a Bundle of type transaction or batch, not {kind!r}.")


# -- entries -------------------------------------------------------------------------------------
@dataclass
class _Entry:
    """One request of a Bundle, parsed: what it addresses and, once planned, how it is written."""

    index: int
    method: str
    url: str
    resource_type: str
    id: str | None
    query: str
    headers: dict[str, str]
    resource: dict[str, Any] | None
    full_url: str | None
    raw: dict[str, Any]
    # planning
    target: str | None = None
    operation: PutDocument | DeleteDocument | None = None
    existing: StoredDocument | None = None
    guarded: bool = False
    #: A conditional create's precondition: nothing matches its criteria when it is written.
    unless: Unmatched | None = None
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"

    def describe(self) -> str:
        return f"{self.where} ({self.method} {self.url})"


def _relative(url: str, base: str) -> str:
    """An entry URL relative to the FHIR base (absolute URLs on this server are accepted)."""
    if url.startswith(base + "/"):
        return url[len(base) + 1 :]
    if "://" in url:
        parts = urlsplit(url)
        path = parts.path
        marker = path.find("/fhir/")
        if marker < 0:
            raise BadRequestError(f"{url!r} is not a URL of this FHIR server.")
        return path[marker + len("/fhir/") :] + (f"?{parts.query}" if parts.query else "")
    return url.lstrip("/")


def _parse_entry(index: int, raw: dict[str, Any], base: str) -> _Entry:
    where = f"Bundle.entry[{index}]"
    request = raw.get("request")
    if not isinstance(request, dict):
        raise BadRequestError(f"{where} has no request (method and url).")
    method, url = request.get("method"), request.get("url")
    if method not in METHODS or not isinstance(url, str) or not url:
        raise BadRequestError(f"{where}.request needs a method ({', '.join(METHODS)}) and a url.")
    relative = _relative(url, base)
    path, _, query = relative.partition("?")
    parts = path.split("/")
    resource_type = parts[0]
    if resource_type not in R4_RESOURCE_TYPES:
        raise BadRequestError(f"{where}.request.url {url!r} names no FHIR R4 resource type.")
    id = parts[1] if len(parts) > 1 and parts[1] else None
    if id is not None and not ID_PATTERN.match(id) and method != "GET":
        raise BadRequestError(f"{where}.request.url {url!r} has an invalid id.")
    headers = {
        header: request[member]
        for member, header in (
            ("ifMatch", "if-match"),
            ("ifNoneMatch", "if-none-match"),
            ("ifNoneExist", "if-none-exist"),
            ("ifModifiedSince", "if-modified-since"),
        )
        if isinstance(request.get(member), str)
    }
    resource = raw.get("resource")
    if resource is not None and not isinstance(resource, dict):
        raise BadRequestError(f"{where}.resource must be a resource (a JSON object).")
    if method in ("POST", "PUT", "PATCH") and resource is None:
        raise BadRequestError(f"{where} ({method} {url}) has no resource.")
    full_url = raw.get("fullUrl") if isinstance(raw.get("fullUrl"), str) else None
    return _Entry(index, method, url, resource_type, id, query, headers, resource, full_url, raw)


def _name_entry(error: TidemarkError, entry: _Entry) -> TidemarkError:
    """``error`` with the entry that caused it named in its message and issues."""
    error.detail = f"{entry.describe()}: {error.detail}"
    issues = error.data.get("issues")
    if isinstance(issues, list):
        error.data["issues"] = [
            {**item, "diagnostics": f"{entry.where}: {item.get('diagnostics', '')}"}
            for item in issues
            if isinstance(item, Mapping)
        ]
    error.data.setdefault("entry", entry.index)
    return error


def _status(code: int) -> str:
    return f"{code} {http.HTTPStatus(code).phrase}"


def _patch_of(entry: _Entry) -> tuple[str, Any]:
    """The patch an entry carries: a Parameters resource (FHIRPath Patch) or a Binary holding a
    JSON Patch or merge patch (base64 ``data``)."""
    resource = entry.resource or {}
    if resource.get("resourceType") == "Parameters":
        return "merge-patch", resource  # a Parameters document is applied as FHIRPath Patch
    if resource.get("resourceType") != "Binary":
        raise BadRequestError(
            "a PATCH entry carries a Parameters resource (FHIRPath Patch) or a Binary "
            "(contentType application/json-patch+json or application/merge-patch+json, "
            "base64 data)."
        )
    kind = patch_kind(str(resource.get("contentType", "")))
    try:
        return kind, orjson.loads(base64.b64decode(str(resource.get("data", "")), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise BadRequestError(f"the Binary's data is not base64-encoded JSON: {exc}") from exc


# -- transaction ---------------------------------------------------------------------------------
async def _transaction(request: Request, raw_entries: list[dict[str, Any]]) -> Response:
    base = _base(request)
    for attempt in range(ATTEMPTS):
        entries = [_parse_entry(i, raw, base) for i, raw in enumerate(raw_entries)]
        try:
            await _plan(request, entries)
            writes = sorted(
                (e for e in entries if e.operation is not None), key=lambda e: ORDER[e.method]
            )
            results = await app_store(request).write_many(
                [e.operation for e in writes if e.operation is not None]
            )
        except TidemarkError as error:
            failed = _failed_entry(error, entries)
            if (
                failed is not None
                and failed.guarded
                and isinstance(error, PreconditionFailedError | NotFoundError)
                and attempt + 1 < ATTEMPTS
            ):
                continue  # a resource changed under the plan: plan again on fresh data
            raise (_name_entry(error, failed) if failed is not None else error) from None
        break
    for entry, outcome in zip(writes, results, strict=True):
        entry.result = _write_result(request, entry, outcome)
    for entry in entries:
        if entry.method in ("GET", "HEAD"):
            entry.result = await _dispatch(request, entry)
    log.info(
        "transaction",
        entries=len(entries),
        writes=len(writes),
        attempts=attempt + 1,
    )
    return _respond(request, _response_bundle("transaction-response", entries))


def _failed_entry(error: TidemarkError, entries: Sequence[_Entry]) -> _Entry | None:
    index = error.data.get("entry")
    if isinstance(index, int):
        return entries[index]
    operation = error.data.get("operation")
    if isinstance(operation, int):
        writes = sorted(
            (e for e in entries if e.operation is not None), key=lambda e: ORDER[e.method]
        )
        if operation < len(writes):
            return writes[operation]
    return None


async def _plan(request: Request, entries: list[_Entry]) -> None:
    """Decide every entry's target and store operation: conditions resolved, ids assigned,
    references rewritten, patches applied, resources validated. Raises for the first entry
    that cannot be planned (with its index in ``data["entry"]``)."""
    placeholders: dict[str, str] = {}
    for entry in entries:
        try:
            await _resolve_target(request, entry)
        except TidemarkError as error:
            error.data["entry"] = entry.index
            raise
        if entry.full_url and entry.target and entry.method in ("POST", "PUT", "PATCH"):
            placeholders[entry.full_url] = entry.target
    seen: dict[str, _Entry] = {}
    for entry in entries:
        if entry.method in ("GET", "HEAD") or entry.target is None:
            continue
        other = seen.get(entry.target)
        if other is not None:
            raise BadRequestError(
                f"{other.where} and {entry.where} both change {entry.target}; a transaction "
                "changes each resource at most once.",
                data={"entry": entry.index},
            )
        seen[entry.target] = entry
    resolved: dict[str, str] = {}
    for entry in entries:
        try:
            if entry.method == "DELETE":
                _plan_delete(entry)
            elif entry.method == "PATCH":
                await _plan_patch(request, entry)
            elif entry.method in ("POST", "PUT") and entry.operation is None:
                if entry.existing is not None and entry.method == "POST":
                    continue  # a conditional create that matched: nothing to write
                assert entry.resource is not None and entry.target is not None
                resource = await _rewrite_references(
                    request, entry.resource, placeholders, resolved
                )
                await _plan_put(request, entry, resource)
        except TidemarkError as error:
            error.data["entry"] = entry.index
            raise


async def _resolve_target(request: Request, entry: _Entry) -> None:
    """Which resource the entry changes (``Type/id``), resolving conditional URLs by search."""
    if entry.method in ("GET", "HEAD"):
        return
    if entry.method == "POST":
        if entry.id is not None:
            raise BadRequestError("a POST entry's url is the resource type, without an id.")
        criteria_text = entry.headers.get("if-none-exist") or entry.query or None
        if criteria_text is not None:
            criteria = parse_criteria(criteria_text, "ifNoneExist")
            matches = await find_matches(request, entry.resource_type, criteria, "ifNoneExist")
            if matches:
                entry.existing = matches[0]
                entry.target = f"{entry.resource_type}/{matches[0].id}"
                return
            # Checked again where it is written: a concurrent create makes this plan again.
            entry.unless = await criteria_unmatched(request, entry.resource_type, criteria)
            entry.guarded = True
        entry.target = f"{entry.resource_type}/{uuid.uuid4()}"
        return
    if entry.id is None:
        what = f"conditional {entry.method}"
        if not entry.query:
            raise BadRequestError(f"a {entry.method} entry needs Type/id or Type?criteria.")
        criteria = parse_criteria(entry.query, what)
        matches = await find_matches(request, entry.resource_type, criteria, what)
        entry.guarded = "if-match" not in entry.headers
        if matches:
            entry.existing = matches[0]
            entry.target = f"{entry.resource_type}/{matches[0].id}"
        elif entry.method == "PUT":
            body_id = (entry.resource or {}).get("id")
            entry.target = f"{entry.resource_type}/{body_id or uuid.uuid4()}"
            if entry.guarded:
                entry.unless = await criteria_unmatched(request, entry.resource_type, criteria)
        elif entry.method == "PATCH":
            raise NotFoundError(f"no {entry.resource_type} matches the criteria of the PATCH.")
        return
    entry.target = f"{entry.resource_type}/{entry.id}"
    if entry.method in ("DELETE", "PATCH"):
        entry.existing = await app_store(request).get(collection_of(entry.resource_type), entry.id)
        entry.guarded = "if-match" not in entry.headers
        if entry.existing is None and entry.method == "PATCH":
            raise NotFoundError(f"{entry.target} does not exist.")


def _guard(entry: _Entry) -> str | None:
    client = entry.headers.get("if-match")
    if client is not None or entry.existing is None:
        return client
    return version_etag(entry.existing.content_version).header()


def _plan_delete(entry: _Entry) -> None:
    if entry.existing is None and entry.id is None:
        entry.result = _outcome_result(
            200, "warning", "not-found", "No resource matches; nothing was deleted."
        )
        return
    if entry.existing is None and "if-match" not in entry.headers:
        entry.result = {"response": {"status": _status(204)}}  # deleting nothing: idempotent
        return
    assert entry.target is not None
    entry.operation = DeleteDocument(
        collection_of(entry.resource_type), entry.target.split("/", 1)[1], _guard(entry)
    )


async def _plan_patch(request: Request, entry: _Entry) -> None:
    assert entry.existing is not None
    document = entry.existing
    current = representation(
        entry.resource_type,
        document.id,
        document.body,
        document.content_version,
        document.content_last_modified_at,
    )
    kind, patch = _patch_of(entry)
    applied = await asyncio.to_thread(apply_patch, current, kind, patch, element_repeats(request))
    patched = check_resource(applied, entry.resource_type, document.id, require_id_match=True)
    await _validate(request, patched)
    entry.operation = PutDocument(
        collection_of(entry.resource_type), document.id, stored_body(patched), _guard(entry)
    )


async def _plan_put(request: Request, entry: _Entry, resource: dict[str, Any]) -> None:
    assert entry.target is not None
    id = entry.target.split("/", 1)[1]
    if entry.method == "PUT" and entry.id is not None and "id" not in resource:
        raise BadRequestError(f"the resource has no id; a PUT to {entry.target} needs one.")
    resource = check_resource(
        resource, entry.resource_type, id, require_id_match=entry.method == "PUT"
    )
    full = {**resource, "id": id}
    await _validate(request, full)
    collection = collection_of(entry.resource_type)
    if entry.method == "POST":
        entry.operation = PutDocument(
            collection, id, stored_body(full), if_none_match="*", unless=entry.unless
        )
    else:
        entry.operation = PutDocument(
            collection,
            id,
            stored_body(full),
            if_match=_guard(entry),
            if_none_match=entry.headers.get("if-none-match"),
            unless=entry.unless,
        )


async def _rewrite_references(
    request: Request,
    resource: dict[str, Any],
    placeholders: Mapping[str, str],
    resolved: dict[str, str],
) -> dict[str, Any]:
    """A copy of ``resource`` whose references to entries (``urn:uuid:``, ``urn:oid:`` or other
    ``fullUrl``) and conditional references (``Type?criteria``) name the resources they resolve
    to; narrative links to placeholders follow."""

    async def resolve(value: str) -> str | None:
        if value in placeholders:
            return placeholders[value]
        if _PLACEHOLDER.match(value):
            raise BadRequestError(f"the reference {value!r} names no entry of the transaction.")
        head, sep, query = value.partition("?")
        if sep and head in R4_RESOURCE_TYPES:
            if value not in resolved:
                criteria = parse_criteria(query, f"the conditional reference {value!r}")
                matches = await find_matches(request, head, criteria, f"reference {value!r}")
                if not matches:
                    raise PreconditionFailedError(
                        f"the conditional reference {value!r} matches no {head}."
                    )
                resolved[value] = f"{head}/{matches[0].id}"
            return resolved[value]
        return None

    async def walk(node: Any, key: str | None) -> Any:
        if isinstance(node, dict):
            return {k: await walk(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [await walk(item, key) for item in node]
        if isinstance(node, str):
            if key == "reference" or node in placeholders or _PLACEHOLDER.match(node):
                target = await resolve(node)
                if target is not None:
                    return target
            if key == "div" and placeholders:
                for placeholder, target in placeholders.items():
                    if _PLACEHOLDER.match(placeholder):
                        node = node.replace(placeholder, target)
        return node

    rewritten: dict[str, Any] = await walk(resource, None)
    return rewritten


def _write_result(
    request: Request, entry: _Entry, outcome: WriteOutcome | Tombstone
) -> dict[str, Any]:
    if isinstance(outcome, Tombstone):
        return {
            "response": {
                "status": _status(204),
                "etag": version_etag(outcome.change_version, weak=True).header(),
            }
        }
    document = outcome.document
    status = 201 if outcome.created else 200
    response = {
        "status": _status(status),
        "location": f"{entry.resource_type}/{document.id}/_history/{document.content_version}",
        "etag": version_etag(document.content_version, weak=True).header(),
        "lastModified": instant(document.content_last_modified_at),
    }
    return _with_preferred(request, {"response": response}, entry.resource_type, document)


def _with_preferred(
    request: Request, result: dict[str, Any], resource_type: str, document: StoredDocument
) -> dict[str, Any]:
    # As HAPI FHIR: entries carry only their response unless the client prefers more.
    wanted = _prefer(request).get("return")
    if wanted == "representation":
        result["resource"] = representation(
            resource_type,
            document.id,
            document.body,
            document.content_version,
            document.content_last_modified_at,
        )
    elif wanted == "operationoutcome":
        text = f"{resource_type}/{document.id} version {document.content_version}"
        result["response"]["outcome"] = operation_outcome(
            [issue("information", "informational", text)]
        )
    return result


def _outcome_result(status: int, severity: str, code: str, text: str) -> dict[str, Any]:
    return {
        "response": {
            "status": _status(status),
            "outcome": operation_outcome([issue(severity, code, text)]),
        }
    }


def _response_bundle(kind: str, entries: Sequence[_Entry]) -> dict[str, Any]:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": kind}
    for entry in entries:
        if entry.existing is not None and not entry.result and entry.method == "POST":
            entry.result = {
                "response": {
                    "status": _status(200),
                    "location": f"{entry.target}/_history/{entry.existing.content_version}",
                    "etag": version_etag(entry.existing.content_version, weak=True).header(),
                    "lastModified": instant(entry.existing.content_last_modified_at),
                }
            }
    if entries:
        bundle["entry"] = [entry.result for entry in entries]
    return bundle


# -- batch and reads: entries run through the facade's own routes --------------------------------
async def _batch(request: Request, raw_entries: list[dict[str, Any]]) -> Response:
    base = _base(request)
    entries: list[_Entry] = []
    for index, raw in enumerate(raw_entries):
        try:
            entry = _parse_entry(index, raw, base)
        except TidemarkError as error:
            entry = _Entry(index, "?", "?", "", None, "", {}, None, None, raw)
            entry.result = _error_result(error)
            entries.append(entry)
            continue
        entry.result = await _dispatch(request, entry)
        entries.append(entry)
    failed = sum(1 for e in entries if not e.result["response"]["status"].startswith(("2", "3")))
    log.info("batch", entries=len(entries), failed=failed)
    return _respond(request, _response_bundle("batch-response", entries))


def _error_result(error: TidemarkError) -> dict[str, Any]:
    return {"response": {"status": _status(error.status), "outcome": error_outcome(error)}}


async def _dispatch(request: Request, entry: _Entry) -> dict[str, Any]:
    """Run one entry as a request through the facade's routes; its Bundle response entry."""
    body = b""
    headers = {"accept": FHIR_JSON, **entry.headers}
    prefer = request.headers.get("prefer")
    if prefer:
        headers["prefer"] = prefer
    if entry.method == "PATCH" and entry.resource is not None:
        try:
            kind, patch = _patch_of(entry)
        except TidemarkError as error:
            return _error_result(error)
        body = orjson.dumps(patch)
        headers["content-type"] = (
            "application/json-patch+json"
            if kind == "json-patch"
            else "application/merge-patch+json"
        )
    elif entry.resource is not None:
        body = orjson.dumps(entry.resource)
        headers["content-type"] = FHIR_JSON
    path, _, query = _relative(entry.url, _base(request)).partition("?")
    scope = {
        **{k: v for k, v in request.scope.items() if k not in ("headers", "path_params", "route")},
        "method": entry.method,
        "path": f"/fhir/{path}",
        "raw_path": f"/fhir/{path}".encode(),
        "query_string": query.encode(),
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    status = 500
    response_headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def send(message: Mapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
            response_headers.update(
                (k.decode().lower(), v.decode()) for k, v in message.get("headers", [])
            )
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await request.app.router(scope, receive, send)
    response: dict[str, Any] = {"status": _status(status)}
    location = response_headers.get("location")
    if location:
        response["location"] = _relative(location, _base(request))
    if "etag" in response_headers:
        response["etag"] = response_headers["etag"]
    payload = b"".join(chunks)
    parsed = orjson.loads(payload) if payload.strip() else None
    result: dict[str, Any] = {"response": response}
    if isinstance(parsed, dict):
        meta = parsed.get("meta")
        if (
            isinstance(meta, dict)
            and "lastUpdated" in meta
            and parsed.get("resourceType") != "Bundle"
        ):
            response["lastModified"] = meta["lastUpdated"]
        if parsed.get("resourceType") == "OperationOutcome" and (
            status >= 400 or entry.method not in ("GET", "HEAD")
        ):
            response["outcome"] = parsed
        else:
            result["resource"] = parsed
    return result


def routes() -> list[BaseRoute]:
    """``POST /fhir`` (and ``/fhir/``), placed before the facade's catch-all routes."""
    return [
        Route("/fhir", system_level, methods=["POST"], name="fhir_bundle"),
        Route("/fhir/", system_level, methods=["POST"], name="fhir_bundle_slash"),
    ]
