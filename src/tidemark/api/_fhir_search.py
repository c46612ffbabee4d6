"""FHIR search on the store: matching resources, their order and page, includes, and shaping.

The conditions of a :class:`~tidemark.fhir.search.SearchQuery` are looked up in the store's
search index, which holds the entries :func:`~tidemark.fhir.search.extract` gives each resource
when it is written; ``_id`` and ``_lastUpdated`` narrow the documents in the store itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tidemark.core import BadRequestError, get_logger
from tidemark.fhir.packages import FhirPackage
from tidemark.fhir.search import (
    Has,
    Include,
    KeyIn,
    SearchParameter,
    SearchParameterSet,
    SearchQuery,
    date_interval,
    extract,
    instant_of,
    reference_keys,
    summary_elements,
)
from tidemark.store import Condition as StoreCondition
from tidemark.store import (
    IndexOrder,
    SearchAfter,
    Store,
    StoredDocument,
    Unmatched,
    WriteOutcome,
)
from tidemark.store import KeyIn as StoreKeyIn

from ._fhir_index import store_condition
from ._fhir_model import collection_of

log = get_logger("fhir.search")

#: The most resources ``_include``/``_revinclude`` add to one page.
MAX_INCLUDED = 1000
#: The most resources a ``_has`` may select.
MAX_HAS = 10_000
#: The package whose parameters tidemark bundles (its SearchParameters are not read again).
CORE_PACKAGE = "hl7.fhir.r4.core"
SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "Resource encoded in summary mode",
}


@dataclass(frozen=True, slots=True)
class DateRange:
    """The half-open interval ``[start, end)`` that a FHIR date value of some precision denotes."""

    start: datetime
    end: datetime


def parse_date_range(text: str) -> DateRange:
    """Parse a FHIR date/dateTime/instant into the interval it denotes (UTC datetimes).

    ``2024`` is the whole year, ``2024-03-01T10:00`` the whole minute. Raises ``ValueError``
    with a message for the client when malformed or out of range.
    """
    interval = date_interval(text)
    return DateRange(instant_of(interval.low), instant_of(interval.high + 1e-6))


def search_parameters(packages: Iterable[FhirPackage] = ()) -> SearchParameterSet:
    """R4 core's parameters plus the SearchParameters of ``packages`` (first one wins)."""
    resources: list[dict[str, Any]] = []
    for package in reversed(list(packages)):
        if package.name == CORE_PACKAGE:
            continue
        resources.extend(package.iter_resources("SearchParameter"))
    parameters = SearchParameterSet.r4_core(resources)
    for item in parameters.unsupported:
        log.info(
            "search parameter not supported",
            base=item.base,
            code=item.code,
            url=item.url,
            reason=item.reason,
        )
    return parameters


@dataclass
class SearchResult:
    """One page of matches, the total (when asked for), and the included resources;
    ``cursor``: the page token of the next page when the search continues by position (a
    search sorted by one parameter, see :func:`encode_cursor`), else the next page is at the
    next offset."""

    documents: list[StoredDocument]
    total: int | None
    has_next: bool
    included: list[tuple[str, StoredDocument]] = field(default_factory=list)
    cursor: str | None = None


async def find(store: Store, parameters: SearchParameterSet, query: SearchQuery) -> SearchResult:
    """The page ``query`` asks for (ordered by ``_sort``, else by id), from the store's index.

    A search sorted by one parameter continues from the position its ``_cursor`` carries,
    so that a page costs the same however deep it is and a write between pages neither
    repeats nor skips a resource. Raises a 400 (``too-costly``) when a ``_has`` selects more
    than :data:`MAX_HAS` resources, and a 400 for a ``_cursor`` that is not this search's.
    """
    collection = collection_of(query.resource_type)
    after = None if query.cursor is None else decode_cursor(query, query.cursor)
    wanted = await _wanted_ids(store, parameters, query)
    want_total = query.total != "none" or query.counts_only
    conditions = await _conditions(store, parameters, query)
    ids = sorted(wanted) if wanted is not None else None
    total: int | None = None
    if want_total and after is not None and not query.counts_only:
        # The total counts every match, not only those after the position.
        counted = await store.search(
            collection, conditions, limit=0, total_count=True, ids=ids, modified=query.modified
        )
        total, want_total = counted.total, False
    page = await store.search(
        collection,
        conditions,
        order=_orders(query),
        limit=0 if query.counts_only else query.count + 1,
        offset=query.offset,
        total_count=want_total,
        ids=ids,
        modified=query.modified,
        after=None if query.counts_only else after,
    )
    documents = page.items[: query.count]
    has_next = len(page.items) > query.count
    cursor = None
    if has_next and documents and len(page.positions) == len(page.items):
        cursor = encode_cursor(query, page.positions[len(documents) - 1])
    return SearchResult(documents, page.total if total is None else total, has_next, cursor=cursor)


# -- page tokens of sorted searches -------------------------------------------------------------
def _search_digest(query: SearchQuery, position: list[Any]) -> str:
    """What a page token is checked by: the search it belongs to and the position."""
    applied = [[name, value] for name, value in query.applied]
    text = json.dumps([query.resource_type, applied, position], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def encode_cursor(query: SearchQuery, after: SearchAfter) -> str:
    """The ``_cursor`` of the page after ``after`` in ``query``: opaque to clients, bound to
    the search's parameters (a token of another search, or an edited one, is a 400). Not a
    secret: a forged one only moves where the search continues."""
    position = [after.value, after.pk]
    text = json.dumps([*position, _search_digest(query, position)], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(query: SearchQuery, token: str) -> SearchAfter:
    """The position ``token`` (from :func:`encode_cursor` for this search) carries; a 400
    when it is malformed, edited, or another search's."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value, pk, digest = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise BadRequestError(
            "_cursor is not a page token of this server; follow the next link as given."
        ) from exc
    fits = (value is None or isinstance(value, str | float)) and type(pk) is int
    if not fits or digest != _search_digest(query, [value, pk]):
        raise BadRequestError(
            "_cursor does not belong to this search (its parameters changed, or the token "
            "was edited); start again from the first page."
        )
    return SearchAfter(value, pk)


async def put_unless_found(
    store: Store,
    parameters: SearchParameterSet,
    query: SearchQuery,
    id: str,
    body: dict[str, Any],
    *,
    if_none_match: str | None,
) -> tuple[WriteOutcome | None, list[StoredDocument]]:
    """Store ``body`` as ``id`` unless something matches ``query`` (a conditional create, see
    :meth:`Store.put_unless_matched`: concurrent ones with the same criteria create once);
    the write's outcome (``None`` when something matched) and up to two matches."""
    wanted = await _wanted_ids(store, parameters, query)
    return await store.put_unless_matched(
        collection_of(query.resource_type),
        id,
        body,
        await _conditions(store, parameters, query),
        ids=sorted(wanted) if wanted is not None else None,
        modified=query.modified,
        if_none_match=if_none_match,
    )


async def unmatched(store: Store, parameters: SearchParameterSet, query: SearchQuery) -> Unmatched:
    """The precondition of a conditional create in a transaction: nothing matches ``query``."""
    wanted = await _wanted_ids(store, parameters, query)
    return Unmatched(
        tuple(await _conditions(store, parameters, query)),
        tuple(sorted(wanted)) if wanted is not None else None,
        tuple(query.modified),
    )


async def _conditions(
    store: Store, parameters: SearchParameterSet, query: SearchQuery
) -> list[StoreCondition]:
    """The store conditions of ``query``: its own, and one per chain (the references to the
    resources the chain selects)."""
    conditions = [store_condition(condition) for condition in query.conditions]
    for chain in query.chains:
        keys: list[str] = []
        for target, condition in chain.targets:
            inner = SearchQuery(target, count=MAX_HAS, conditions=[condition], total="none")
            result = await find(store, parameters, inner)
            if result.has_next:
                raise BadRequestError(
                    f"The chain on {chain.reference} selects more than {MAX_HAS} {target} "
                    "resources; narrow it down.",
                    data={"issue_code": "too-costly"},
                )
            keys += [
                entry.key
                for document in result.documents
                for entry in reference_keys("", f"{target}/{document.id}")
            ]
        conditions.append(StoreKeyIn(chain.reference, tuple(keys)))
    return conditions


async def _wanted_ids(
    store: Store, parameters: SearchParameterSet, query: SearchQuery
) -> set[str] | None:
    """The ids ``_id`` and ``_has`` allow (``None``: any)."""
    wanted = query.ids
    for has in query.has:
        referred = await _referred_ids(store, parameters, query.resource_type, has)
        wanted = referred if wanted is None else wanted & referred
    return wanted


async def _referred_ids(
    store: Store, parameters: SearchParameterSet, resource_type: str, has: Has
) -> set[str]:
    """The ids of ``resource_type`` that resources selected by ``has`` refer to."""
    inner = SearchQuery(has.source, count=MAX_HAS, conditions=list(has.conditions), total="none")
    result = await find(store, parameters, inner)
    if result.has_next:
        raise BadRequestError(
            f"_has:{has.source}:{has.reference} selects more than {MAX_HAS} resources; "
            "narrow it down.",
            data={"issue_code": "too-costly"},
        )
    link = parameters.get(has.source, has.reference)
    assert link is not None
    include = Include(has.source, link, resource_type)
    return {
        reference.split("/", 1)[1]
        for document in result.documents
        for reference in _references(parameters, has.source, document, include)
    }


def _orders(query: SearchQuery) -> list[str | IndexOrder]:
    """The store orders of ``_sort`` (id order when there is none, and to break ties)."""
    orders: list[str | IndexOrder] = []
    for sort in query.sort:
        if sort.code == "_id":
            orders.append("-id" if sort.descending else "id")
        elif sort.code == "_lastUpdated":
            orders.append("-last_modified" if sort.descending else "last_modified")
        else:
            # Every range entry is also indexed without a unit (see extract): sorting by
            # those alone is the same order, and the store can read it from its index.
            orders.append(IndexOrder(sort.code, sort.descending, unit=""))
    return orders or ["id"]


# -- _include and _revinclude --------------------------------------------------------------------
def _references(
    parameters: SearchParameterSet, resource_type: str, document: StoredDocument, include: Include
) -> list[str]:
    """The ``Type/id`` targets of ``include`` in one resource."""
    chosen: Sequence[SearchParameter]
    if include.parameter is None:
        chosen = [p for p in parameters.for_type(resource_type).values() if p.type == "reference"]
    else:
        chosen = [include.parameter]
    body = {**document.body, "resourceType": resource_type, "id": document.id}
    entries, _ = extract(body, chosen)
    found = []
    for entry in entries:
        key = getattr(entry, "key", "")
        if "/" not in key or "://" in key or ":" in entry.name:
            continue
        target_type = key.split("/", 1)[0]
        if include.target is None or include.target == target_type:
            found.append(key)
    return found


async def _read_references(
    store: Store, references: Iterable[str], resource_types: Iterable[str]
) -> list[tuple[str, StoredDocument]]:
    known = set(resource_types)
    by_type: dict[str, set[str]] = {}
    for reference in references:
        kind, _, id = reference.partition("/")
        if kind in known and id:
            by_type.setdefault(kind, set()).add(id)
    found: list[tuple[str, StoredDocument]] = []
    for kind, ids in sorted(by_type.items()):
        page = await store.query(collection_of(kind), limit=len(ids), ids=sorted(ids), order="id")
        found.extend((kind, document) for document in page.items)
    return found


async def included(
    store: Store,
    parameters: SearchParameterSet,
    query: SearchQuery,
    documents: Sequence[StoredDocument],
    resource_types: Iterable[str],
) -> list[tuple[str, StoredDocument]]:
    """The resources ``_include`` and ``_revinclude`` add to a page (``:iterate`` one level
    further), without the page's own resources and without duplicates."""
    types = list(resource_types)
    page = [(query.resource_type, document) for document in documents]
    seen = {(kind, document.id) for kind, document in page}
    added: list[tuple[str, StoredDocument]] = []

    async def round_of(sources: list[tuple[str, StoredDocument]], iterate: bool) -> None:
        for include in query.includes:
            if include.iterate != iterate:
                continue
            wanted = [
                reference
                for kind, document in sources
                if kind == include.source
                for reference in _references(parameters, kind, document, include)
            ]
            for kind, document in await _read_references(store, wanted, types):
                _add(kind, document)
        for include in query.revincludes:
            if include.iterate != iterate:
                continue
            targets = tuple(
                key
                for kind, document in sources
                for key in (entry.key for entry in reference_keys("", f"{kind}/{document.id}"))
            )
            if not targets or include.parameter is None:
                continue
            for document in await _referrers(store, parameters, include, targets):
                _add(include.source, document)

    def _add(kind: str, document: StoredDocument) -> None:
        if (kind, document.id) not in seen and len(added) < MAX_INCLUDED:
            seen.add((kind, document.id))
            added.append((kind, document))

    await round_of(page, iterate=False)
    first = list(added)
    await round_of(page, iterate=True)
    await round_of(first, iterate=True)
    return added


async def _referrers(
    store: Store, parameters: SearchParameterSet, include: Include, targets: tuple[str, ...]
) -> list[StoredDocument]:
    assert include.parameter is not None
    query = SearchQuery(
        include.source,
        count=MAX_INCLUDED,
        conditions=[KeyIn(include.parameter.code, targets)],
        total="none",
    )
    return (await find(store, parameters, query)).documents


# -- _summary and _elements ----------------------------------------------------------------------
def shape(resource: Mapping[str, Any], query: SearchQuery) -> dict[str, Any]:
    """The resource as ``_summary``/``_elements`` ask; subsetted ones carry the SUBSETTED tag."""
    kept: set[str] | None = None
    if query.elements is not None:
        kept = set(query.elements)
    elif query.summary == "true":
        kept = set(summary_elements(str(resource.get("resourceType"))))
    elif query.summary == "text":
        kept = {"text"}
    elif query.summary == "data":
        shaped = {k: v for k, v in resource.items() if k != "text"}
        return _subsetted(shaped) if "text" in resource else shaped
    if kept is None:
        return dict(resource)
    always = {"resourceType", "id", "meta"}
    shaped = {k: v for k, v in resource.items() if k in always or _is_kept(k, kept)}
    return _subsetted(shaped)


def _is_kept(key: str, kept: set[str]) -> bool:
    # '_birthDate' goes with 'birthDate'; a choice element's key (valueQuantity) with 'value'.
    name = key.removeprefix("_")
    return name in kept or any(
        name.startswith(k) and name[len(k) : len(k) + 1].isupper() for k in kept
    )


def _subsetted(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("code") != "SUBSETTED"]
    meta["tag"] = [*tags, SUBSETTED]
    return {**resource, "meta": meta}
