"""One replication round: a full extract the first time, then Change Queries windows (live
documents in dependency order, deletes in reverse), each page committed with the position it
reaches, and a resynchronisation of the resources whose window the source no longer retains."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tidemark.core import (
    ConfigurationError,
    Counters,
    GoneError,
    ModelMismatchError,
    UnresolvedReferenceError,
    canonical_bytes,
    get_logger,
    reconcile,
)
from tidemark.store import DeleteDocument, PutDocument, ResourceSpec, Store

from ._progress_state import Position, ReplicaState, load_state
from ._source import EdFiSource

log = get_logger("replicate")

#: Documents per source request and per replica transaction.
PAGE_SIZE = 500
COUNTER_NAMES = (
    "fetched",
    "written",
    "unchanged",
    "deleted",
    "renamed",
    "requests",
    "retries",
    "resynced",
    "deferred",
)
#: Server members of a representation: the replica's store stamps its own.
_SERVER_MEMBERS = ("id", "_etag", "_lastModifiedDate")

#: ``progress(collection, stage, documents)`` after each page; ``documents`` is how many
#: the page held.
ProgressHook = Callable[[str, str, int], None]


@dataclass(slots=True)
class RoundSummary:
    """What one round did: ``kind`` (``extract``, ``changes`` or ``none`` when the source had
    nothing new), the watermark before and after, the resources resynchronised, the counters."""

    kind: str
    watermark_before: int | None
    watermark: int | None
    resynced: list[str] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "watermarkBefore": self.watermark_before,
            "watermark": self.watermark,
            "resynced": self.resynced,
            "counters": self.counters,
            "seconds": round(self.seconds, 3),
        }


def source_body(representation: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The id and the body of a source representation, without server members or the
    ``link`` objects an ODS/API adds to references."""
    body = {k: v for k, v in representation.items() if k not in _SERVER_MEMBERS}
    for key, value in list(body.items()):
        if key.endswith("Reference") and isinstance(value, dict) and "link" in value:
            body[key] = {k: v for k, v in value.items() if k != "link"}
    return str(representation["id"]), body


def identity_may_change(specs: Sequence[ResourceSpec]) -> set[str]:
    """Collections whose natural key can change: identity updates allowed, or an identity
    reference to such a resource (a cascade reaches them)."""
    changing = {s.collection for s in specs if s.allow_identity_updates}
    by_name = {(s.project, s.resource_name): s for s in specs}
    grew = True
    while grew:
        grew = False
        for spec in specs:
            if spec.collection in changing:
                continue
            for ref in spec.references:
                target = by_name.get((ref.target_project, ref.target))
                if ref.in_identity and target is not None and target.collection in changing:
                    changing.add(spec.collection)
                    grew = True
                    break
    return changing


class Replicator:
    """Keeps ``store`` in step with the Ed-Fi API ``source``; see :func:`replicate`.

    Not safe to run two rounds of the same source and store at once (they would apply the same
    pages twice, harmlessly but wastefully); different sources may share a store.
    """

    def __init__(
        self,
        source: EdFiSource,
        store: Store,
        *,
        resources: Sequence[str] | None = None,
        counters: Counters | None = None,
        progress: ProgressHook | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.source = source
        self.store = store
        self.only = {r.strip("/").split("/")[-1].lower() for r in resources or ()}
        self.counters = counters or Counters(*COUNTER_NAMES)
        self.progress = progress or (lambda _c, _s, _n: None)
        self.page_size = page_size
        self._order: list[ResourceSpec] | None = None

    # -- discovery ---------------------------------------------------------------------------------
    async def resource_order(self) -> list[ResourceSpec]:
        """The resources to replicate in the source's dependency order (checked against the
        replica's model: a resource the model lacks is a :class:`ModelMismatchError`)."""
        if self._order is not None:
            return self._order
        discovery = self.source.discovery or await self.source.discover()
        model = self.store.model
        for name, version in discovery.data_models.items():
            ours = next((v for n, v in model.projects.items() if n.lower() == name.lower()), None)
            if ours is not None and version and ours and not _same_version(ours, version):
                raise ModelMismatchError(
                    f"The source serves {name} {version}, the replica's model is {name} {ours} "
                    f"({model.describe()}). Use --api-schema with the source's model."
                )
        answer = await self.source.get(discovery.dependencies, authorized=False)
        rows = answer.body if isinstance(answer.body, list) else []
        ordered: list[tuple[int, int, ResourceSpec]] = []
        missing: list[str] = []
        for position, row in enumerate(rows):
            path = str(row.get("resource", "")).strip("/").split("/")
            if len(path) < 2:
                continue
            spec = model.find(path[-2], path[-1])
            if self.only and path[-1].lower() not in self.only:
                continue
            if spec is None:
                missing.append("/".join(path))
                continue
            ordered.append((int(row.get("order") or 0), position, spec))
        if missing:
            raise ModelMismatchError(
                f"The source serves resources the replica's model lacks ({', '.join(missing[:5])}"
                f"{' …' if len(missing) > 5 else ''}): {model.describe()}. Use --api-schema "
                "with the source's model."
            )
        if self.only and len(ordered) < len(self.only):
            found = {spec.endpoint.lower() for _o, _p, spec in ordered}
            raise ConfigurationError(
                "The source does not list these resources: " + ", ".join(sorted(self.only - found))
            )
        self._order = [spec for _o, _p, spec in sorted(ordered, key=lambda t: (t[0], t[1]))]
        return self._order

    @property
    def _cursor_paging(self) -> bool:
        return self.source.discovery is not None and self.source.discovery.cursor_paging

    def _url(self, spec: ResourceSpec, tail: str = "") -> str:
        assert self.source.discovery is not None
        return f"{self.source.discovery.data_root}{spec.project_endpoint}/{spec.endpoint}{tail}"

    # -- a round -----------------------------------------------------------------------------------
    async def run_round(self) -> RoundSummary:
        """Run one round (or finish the one a crash interrupted) and return what it did."""
        started = time.monotonic()
        before = dict(self.counters)
        order = await self.resource_order()
        state = await load_state(self.store, self.source.base_url)
        watermark_before = state.watermark
        assert self.source.discovery is not None
        versions_url = self.source.discovery.change_queries + "availableChangeVersions"
        if state.round_kind is None:
            answer = await self.source.get(versions_url)
            newest = int(answer.body.get("newestChangeVersion", 0))
            oldest = int(answer.body.get("oldestChangeVersion", 0) or 0)
            if state.watermark is None:
                # The watermark is read before the extract: anything written meanwhile is in
                # the next round's window.
                state.round_kind, state.round_min, state.round_max = "extract", 0, newest
            elif newest <= state.watermark:
                return self._summary("none", state, watermark_before, started, before)
            else:
                state.round_kind = "changes"
                state.round_min, state.round_max = state.watermark + 1, newest
                if oldest > state.round_min:
                    state.resync = [spec.collection for spec in order]
                    log.warning(
                        "the source no longer retains the window: resynchronising",
                        watermark=state.watermark,
                        oldest=oldest,
                        resources=len(order),
                    )
            state.pending_deletes = {}
            state.position = None
        if state.round_kind == "extract":
            await self._extract(order, state)
        else:
            await self._changes(order, state)
        resynced = list(state.resync)
        state.watermark = state.round_max
        state.round_kind, state.resync, state.pending_deletes, state.position = None, [], {}, None
        await self.store.write_many([state.write()])
        summary = self._summary(
            "extract" if watermark_before is None else "changes",
            state,
            watermark_before,
            started,
            before,
        )
        summary.resynced = resynced
        log.info("round done", **summary.to_json())
        return summary

    def _summary(
        self,
        kind: str,
        state: ReplicaState,
        watermark_before: int | None,
        started: float,
        before: dict[str, int],
    ) -> RoundSummary:
        now = dict(self.counters)
        return RoundSummary(
            kind,
            watermark_before,
            state.watermark,
            counters={name: now.get(name, 0) - before.get(name, 0) for name in COUNTER_NAMES},
            seconds=time.monotonic() - started,
        )

    @staticmethod
    def _remaining(
        order: Sequence[ResourceSpec], state: ReplicaState, stages: Sequence[str]
    ) -> list[ResourceSpec]:
        """``order`` from the resource a crash interrupted, when it was in one of ``stages``."""
        where = state.position
        if where is None or where.stage not in stages:
            return list(order)
        for index, spec in enumerate(order):
            if spec.collection == where.collection:
                return list(order[index:])
        return list(order)

    # -- first run ---------------------------------------------------------------------------------
    async def _extract(self, order: Sequence[ResourceSpec], state: ReplicaState) -> None:
        for spec in self._remaining(order, state, ("extract",)):
            resume = (
                state.position
                if state.position and state.position.collection == spec.collection
                else None
            )
            # Without cursor paging the extract reads change-version windows up to the
            # watermark: a document written meanwhile cannot shift the pages not read yet.
            low, high = (None, None) if self._cursor_paging else (0, state.round_max)
            async for rows, after in self._pages(spec, low, high, resume):
                state.position = Position(
                    spec.collection, "extract", after.token, after.offset, after.window
                )
                await self._apply(spec, rows, state)
                self.progress(spec.collection, "extract", len(rows))
            state.position = None

    # -- later rounds ------------------------------------------------------------------------------
    async def _changes(self, order: Sequence[ResourceSpec], state: ReplicaState) -> None:
        low, high = state.round_min, state.round_max
        changing = identity_may_change(list(self.store.model))
        in_deletes = state.position is not None and state.position.stage == "deletes"
        if not in_deletes:
            for spec in self._remaining(order, state, ("live", "resync")):
                resume = (
                    state.position
                    if state.position and state.position.collection == spec.collection
                    else None
                )
                if spec.collection not in state.resync:
                    try:
                        if resume is None and spec.collection in changing:
                            await self._count_key_changes(spec, low, high)
                        async for rows, after in self._pages(spec, low, high, resume):
                            state.position = Position(
                                spec.collection, "live", after.token, after.offset, after.window
                            )
                            await self._apply(spec, rows, state)
                            self.progress(spec.collection, "live", len(rows))
                    except GoneError:
                        log.warning(
                            "the source no longer retains this resource's window: resynchronising",
                            resource=spec.endpoint,
                            min=low,
                        )
                        state.resync.append(spec.collection)
                if spec.collection in state.resync:
                    await self._resync(spec, state)
                state.position = None
            if state.deferred:
                await self._retry_deferred(order, state)
        for spec in self._remaining(list(reversed(order)), state, ("deletes",)):
            state.position = Position(spec.collection, "deletes")
            if spec.collection in state.resync:
                ids = state.pending_deletes.get(spec.collection, [])
                await self._delete(spec, ids, state)
                continue
            try:
                await self._apply_deletes(spec, low, high, state)
            except GoneError:
                state.resync.append(spec.collection)
                await self._resync(spec, state)
                await self._delete(spec, state.pending_deletes.get(spec.collection, []), state)

    async def _count_key_changes(self, spec: ResourceSpec, low: int, high: int) -> None:
        """Count the renames of the window. The live window carries each renamed document's
        new body under the same id, and a displacing write takes over a key another document
        held, so the renames need no write of their own."""
        async for rows in self._window_pages(spec, "/keyChanges", low, high):
            self.counters.increment("renamed", len(rows))

    async def _apply_deletes(
        self, spec: ResourceSpec, low: int, high: int, state: ReplicaState
    ) -> None:
        async for rows in self._window_pages(spec, "/deletes", low, high):
            await self._delete(spec, [str(row["id"]) for row in rows if "id" in row], state)

    async def _window_pages(
        self, spec: ResourceSpec, feed: str, low: int, high: int
    ) -> AsyncIterator[list[Any]]:
        """The non-empty pages of one of a resource's change feeds (``/deletes``,
        ``/keyChanges``) in the window ``low``..``high``, paged by offset."""
        offset = 0
        while True:
            answer = await self.source.get(
                self._url(spec, feed),
                {
                    "minChangeVersion": low,
                    "maxChangeVersion": high,
                    "limit": self.page_size,
                    "offset": offset,
                },
            )
            rows = answer.body if isinstance(answer.body, list) else []
            if rows:
                yield rows
            if len(rows) < self.page_size:
                return
            offset += len(rows)

    async def _delete(self, spec: ResourceSpec, ids: Sequence[str], state: ReplicaState) -> None:
        present = [
            doc_id
            for doc_id in dict.fromkeys(ids)
            if await self.store.current_version(spec.collection, doc_id) is not None
        ]
        operations: list[PutDocument | DeleteDocument] = [
            DeleteDocument(spec.collection, doc_id) for doc_id in present
        ]
        if operations:
            await self.store.write_many([*operations, state.write()])
            self.counters.increment("deleted", len(operations))
            self.progress(spec.collection, "deletes", len(operations))

    # -- resynchronisation ---------------------------------------------------------------------------
    async def _resync(self, spec: ResourceSpec, state: ReplicaState) -> None:
        """Reconcile the replica's documents of ``spec`` with the source's: changed ones are
        written, equal ones untouched, missing ones deleted in the deletes stage."""
        desired: dict[str, bytes] = {}
        bodies: dict[str, dict[str, Any]] = {}
        async for rows, _after in self._pages(spec, None, None, None):
            for representation in rows:
                doc_id, body = source_body(representation)
                desired[doc_id] = canonical_bytes(body)
                bodies[doc_id] = body
        current: dict[str, bytes] = {}
        cursor = None
        while True:
            page = await self.store.walk(spec.collection, cursor=cursor, limit=1000)
            for document in page.items:
                current[document.id] = canonical_bytes(document.body)
            if page.next is None:
                break
            cursor = page.next
        plan = reconcile(desired, current)
        self.counters.increment("unchanged", plan.unchanged)
        self.counters.increment("resynced")
        upserts = [(doc_id, bodies[doc_id]) for doc_id, _text in plan.upserts]
        state.pending_deletes[spec.collection] = list(plan.deletes)
        state.position = Position(spec.collection, "resync")
        for start in range(0, max(len(upserts), 1), self.page_size):
            chunk = upserts[start : start + self.page_size]
            await self._write(spec, chunk, state)
        log.info(
            "resynchronised",
            resource=spec.endpoint,
            written=len(upserts),
            unchanged=plan.unchanged,
            to_delete=len(plan.deletes),
        )

    # -- pages -------------------------------------------------------------------------------------
    async def _pages(
        self,
        spec: ResourceSpec,
        low: int | None,
        high: int | None,
        resume: Position | None,
    ) -> AsyncIterator[tuple[list[dict[str, Any]], Position]]:
        """The source's documents of ``spec`` (in the window when given), page by page, each
        with the position after it: cursor paging where the source offers it, else
        change-version windows (:meth:`_windows`), else (no window: a resynchronisation)
        offsets."""
        assert self.source.discovery is not None
        window: dict[str, Any] = {}
        if low is not None:
            window = {"minChangeVersion": low, "maxChangeVersion": high}
        url = self._url(spec)
        if self.source.discovery.cursor_paging:
            token = resume.token if resume else None
            if resume is not None and token is None:
                return  # the resource was finished when the round stopped

            def cursor_params(token: str | None) -> dict[str, Any]:
                if token is None:
                    return {**window, "limit": self.page_size}
                return {**window, "pageToken": token, "pageSize": self.page_size}

            # The next page is requested while the caller writes this one.
            request = asyncio.ensure_future(self.source.get(url, cursor_params(token)))
            try:
                while True:
                    answer = await request
                    rows = answer.body if isinstance(answer.body, list) else []
                    token = answer.headers.get("next-page-token") or None
                    if token is not None:
                        request = asyncio.ensure_future(self.source.get(url, cursor_params(token)))
                    self.counters.increment("fetched", len(rows))
                    yield rows, Position(spec.collection, "", token, 0)
                    if token is None:
                        return
            finally:
                if not request.done():
                    request.cancel()
        if low is not None and high is not None:
            async for page in self._windows(url, spec, low, high, resume):
                yield page
            return
        offset = resume.offset if resume else 0
        while True:
            params = {**window, "limit": self.page_size, "offset": offset}
            answer = await self.source.get(url, params)
            rows = answer.body if isinstance(answer.body, list) else []
            offset += len(rows)
            self.counters.increment("fetched", len(rows))
            yield rows, Position(spec.collection, "", None, offset)
            if len(rows) < self.page_size:
                return

    async def _windows(
        self, url: str, spec: ResourceSpec, low: int, high: int, resume: Position | None
    ) -> AsyncIterator[tuple[list[dict[str, Any]], Position]]:
        """The documents of ``low``..``high`` by change-version windows that each fit one page
        (a source without cursor paging): no offsets, so a document that changes during the
        round (and leaves the window) cannot shift another one out of the pages still to read.
        The first window is all that remains (one request when it fits a page, as a round with
        few changes does); a window that comes back full (it may hold more) is halved and read
        again, and one that comes back sparse doubles the next. Empty windows are not yielded."""
        start = resume.window if resume is not None and resume.window is not None else low
        span = high - start + 1
        while start <= high:
            end = min(high, start + span - 1)
            params = {
                "minChangeVersion": start,
                "maxChangeVersion": end,
                "limit": self.page_size,
                "offset": 0,
            }
            answer = await self.source.get(url, params)
            rows = answer.body if isinstance(answer.body, list) else []
            if len(rows) >= self.page_size and end > start:
                span = max(1, (end - start + 1) // 2)
                continue
            if len(rows) >= self.page_size:  # one change version, a full page: read on by offset
                rows = await self._one_version(url, start, rows)
            self.counters.increment("fetched", len(rows))
            if rows:
                yield rows, Position(spec.collection, "", None, 0, end + 1)
            start = end + 1
            if len(rows) < self.page_size // 4:
                span *= 2

    async def _one_version(
        self, url: str, version: int, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Every document of one change version (a source that shares change versions)."""
        found = list(rows)
        while len(rows) >= self.page_size:
            params = {
                "minChangeVersion": version,
                "maxChangeVersion": version,
                "limit": self.page_size,
                "offset": len(found),
            }
            answer = await self.source.get(url, params)
            rows = answer.body if isinstance(answer.body, list) else []
            found += rows
        return found

    async def _apply(
        self, spec: ResourceSpec, rows: list[dict[str, Any]], state: ReplicaState
    ) -> None:
        await self._write(spec, [source_body(row) for row in rows], state)

    async def _write(
        self,
        spec: ResourceSpec,
        documents: Sequence[tuple[str, dict[str, Any]]],
        state: ReplicaState,
    ) -> None:
        """Write one page with the position it reaches, in one transaction. A document whose
        reference the replica cannot resolve yet (its target changed on the source after the
        target's own page was read) is deferred: left out of the page and retried each round."""
        pending = list(documents)
        while True:
            operations: list[PutDocument | DeleteDocument] = [
                PutDocument(spec.collection, doc_id, body, displace=True)
                for doc_id, body in pending
            ]
            try:
                results = await self.store.write_many([*operations, state.write()])
            except UnresolvedReferenceError as error:
                index = error.data.get("operation")
                if not isinstance(index, int) or index >= len(pending):
                    raise
                doc_id, _body = pending.pop(index)
                self._defer(spec, doc_id, state, error)
                continue
            changed = sum(1 for r in results[:-1] if getattr(r, "changed", False))
            self.counters.increment("written", changed)
            self.counters.increment("unchanged", len(operations) - changed)
            return

    def _defer(
        self, spec: ResourceSpec, doc_id: str, state: ReplicaState, error: Exception
    ) -> None:
        waiting = state.deferred.setdefault(spec.collection, [])
        if doc_id not in waiting:
            waiting.append(doc_id)
        self.counters.increment("deferred")
        log.warning(
            "reference not resolvable yet, document deferred",
            resource=spec.endpoint,
            id=doc_id,
            reason=str(error),
        )

    async def _retry_deferred(self, order: Sequence[ResourceSpec], state: ReplicaState) -> None:
        """Read each deferred document again (by id) and write it; one the source deleted is
        dropped, one still unresolvable stays deferred."""
        for spec in order:
            ids = state.deferred.pop(spec.collection, [])
            for doc_id in ids:
                answer = await self.source.get(self._url(spec, f"/{doc_id}"), missing_ok=True)
                if answer is None:
                    continue  # deleted on the source: its delete reaches us, or nothing to do
                self.counters.increment("fetched")
                await self._write(spec, [source_body(answer.body)], state)


def _same_version(a: str, b: str) -> bool:
    """``5.1.0`` and ``5.1`` are the same model version."""

    def parts(text: str) -> list[str]:
        pieces = text.split(".")
        while len(pieces) > 1 and pieces[-1] == "0":
            pieces.pop()
        return pieces

    return parts(a) == parts(b)
