"""The HL7 v2 ADT ingest: sources cut into messages, batches of messages per transaction."""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, tzinfo
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.orm import Session

from tidemark.core import (
    SYSTEM_CLOCK,
    Clock,
    ConfigurationError,
    DataValidationError,
    SourceUnavailableError,
    get_logger,
)
from tidemark.tracking import TypeCache, TypeCaches

from ._apply import AdtBatch, KeyAllocator, update_whole_rows
from ._framing import MessageSplitter, RawMessage
from ._messages import AdtEvent, parse_adt
from ._summary import IngestSummary, MessageProblem, Outcome, RowTally
from ._tables import Location, LocationType, create_adt_schema

_log = get_logger("tracking")

_CHUNK = 1 << 20  # bytes read from a file at a time
_STREAM_CHUNK = 1 << 16  # bytes asked of a stream at a time (it may return fewer)
_WATCHED = "tidemark.tracking.hl7.keys"


@dataclass(frozen=True, slots=True)
class MessageResult:
    """What became of one message: its outcome, and for a rejected or unsupported one, why
    (``refused_by_database``: the message was read but the database would not store it)."""

    raw: RawMessage
    outcome: Outcome
    reason: str = ""
    line: int = 0
    message_type: str = ""
    control_id: str = ""
    refused_by_database: bool = False


class _Fault(Exception):
    """A message of the batch could not be applied or stored (the batch was rolled back)."""


def example_files() -> list[Path]:
    """The synthetic ADT fixture files shipped with tidemark, in the order to ingest them."""
    folder = resources.files("tidemark.tracking.hl7") / "examples"
    return sorted(Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".hl7"))


class AdtIngester:
    """Applies HL7 v2 ADT messages to the ADT example schema on ``engine``.

    Messages are applied ``batch_size`` at a time, each batch in one transaction with one flush.
    When the database refuses a batch, it is rolled back and applied again with a SAVEPOINT per
    message: the messages at fault are rejected (recorded in :attr:`summary` with their
    position) and the others committed. A lost database connection raises
    :class:`SourceUnavailableError` (its ``data["summary"]`` says how far the ingest got);
    what was committed before stays.

    The final rows are a function of the set of messages ingested (see :class:`AdtBatch`): any
    arrival order and any number of replays give the same rows, and a replay writes nothing.
    ``progress`` is called with the number of source bytes each committed batch covered. An
    unknown ``encoding`` raises :class:`ConfigurationError`. Not thread-safe; use one ingester
    per thread (the type caches may be shared).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        type_caches: TypeCaches | None = None,
        clock: Clock = SYSTEM_CLOCK,
        default_tz: tzinfo = UTC,
        encoding: str = "utf-8",
        create_schema: bool = True,
        batch_size: int = 2000,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ConfigurationError(f"unknown text encoding {encoding!r}") from None
        if batch_size < 1:
            raise ConfigurationError(f"batch size must be at least 1, got {batch_size}")
        self.engine = engine
        self.clock = clock
        self.default_tz = default_tz
        self.encoding = encoding
        self.batch_size = batch_size
        self.progress = progress
        self.type_caches = type_caches if type_caches is not None else TypeCaches()
        self.location_types: TypeCache[LocationType] = self._cache(LocationType, "code")
        self.locations: TypeCache[Location] = self._cache(Location, "location_string")
        self.summary = IngestSummary()
        self._keys = KeyAllocator()
        if create_schema:
            try:
                create_adt_schema(engine)
            except DBAPIError as exc:
                raise SourceUnavailableError(f"cannot create the ADT tables: {exc.orig}") from exc

    def _cache(self, model: type[Any], key: str) -> TypeCache[Any]:
        name = model.__tablename__
        if name in self.type_caches:
            return self.type_caches[name]
        return self.type_caches.register(model, key)

    # -- sources ---------------------------------------------------------------------------
    def ingest_file(self, path: str | Path) -> None:
        """Ingest every message of the file at ``path``, read a chunk at a time; an unreadable
        file is one rejected message (index 0)."""
        source = str(path)
        try:
            with Path(path).open("rb") as handle:
                before = self.summary.messages
                self._ingest_chunks(iter(lambda: handle.read(_CHUNK), b""), source, eager=False)
        except OSError as exc:
            self._reject(MessageProblem(source, 0, 0, f"cannot read file: {exc.strerror or exc}"))
            return
        _log.info("file ingested", source=source, messages=self.summary.messages - before)

    def ingest_bytes(self, data: bytes, source: str = "<bytes>") -> None:
        """Ingest every message in ``data`` (plain segment lines or MLLP frames)."""
        self._ingest_chunks((data,), source, eager=False)

    def ingest_stream(self, stream: BinaryIO, source: str = "<stdin>") -> None:
        """Ingest messages from ``stream`` as they arrive (an MLLP stream or plain lines), until
        its end. What has arrived is committed before waiting for more."""
        read = getattr(stream, "read1", stream.read)
        self._ingest_chunks(iter(lambda: read(_STREAM_CHUNK), b""), source, eager=True)

    def ingest_messages(self, raws: Sequence[RawMessage]) -> list[MessageResult]:
        """Ingest ``raws`` as one batch (one transaction) and return what became of each."""
        return self._run(list(raws))

    def _ingest_chunks(self, chunks: Iterable[bytes], source: str, *, eager: bool) -> None:
        splitter = MessageSplitter(source)
        pending: list[RawMessage] = []
        reported = 0
        for chunk in chunks:
            pending += splitter.feed(chunk)
            while len(pending) >= self.batch_size or (eager and pending):
                batch, pending = pending[: self.batch_size], pending[self.batch_size :]
                self._run(batch)
                reported = self._advance(reported, batch[-1].end)
        pending += splitter.close()
        while pending:
            batch, pending = pending[: self.batch_size], pending[self.batch_size :]
            self._run(batch)
            reported = self._advance(reported, batch[-1].end)
        self._advance(reported, splitter.consumed)

    def _advance(self, reported: int, end: int) -> int:
        if self.progress is not None and end > reported:
            self.progress(end - reported)
        return max(reported, end)

    # -- batches ---------------------------------------------------------------------------
    def _run(self, raws: list[RawMessage]) -> list[MessageResult]:
        results: list[MessageResult | None] = [None] * len(raws)
        parsed: list[tuple[int, RawMessage, AdtEvent]] = []
        for position, raw in enumerate(raws):
            try:
                event = parse_adt(raw, default_tz=self.default_tz, encoding=self.encoding)
            except DataValidationError as exc:
                results[position] = _refused(raw, exc)
                continue
            parsed.append((position, raw, event))
        if parsed:
            try:
                committed = self._transaction(parsed, savepoints=False)
            except _Fault as fault:
                _log.info(
                    "batch refused: applying it again, a savepoint per message",
                    messages=len(parsed),
                    error=str(fault),
                )
                committed = self._transaction(parsed, savepoints=True)
            for position, result, tally, event in committed:
                results[position] = result
                if tally is not None:
                    self.summary.add_rows(tally)
                for warning in event.warnings:
                    self._warn(result.raw, str(warning), warning.line)
        final = [result for result in results if result is not None]
        for result in final:
            self._record(result)
        return final

    def _transaction(
        self, parsed: list[tuple[int, RawMessage, AdtEvent]], *, savepoints: bool
    ) -> list[tuple[int, MessageResult, RowTally | None, AdtEvent]]:
        done: list[tuple[int, MessageResult, RowTally | None, AdtEvent]] = []
        try:
            # No autoflush: the batch flushes once, at commit (or where a rule needs it).
            with (
                Session(self.engine, autoflush=False, expire_on_commit=False) as session,
                session.begin(),
            ):
                batch = self._batch(session, [event for _p, _r, event in parsed])
                for number, (position, raw, event) in enumerate(parsed):
                    if not savepoints:
                        tally, stale = batch.apply(event, self.clock.now())
                        done.append((position, _applied(raw, event, tally, stale), tally, event))
                        continue
                    try:
                        with session.begin_nested():
                            tally, stale = batch.apply(event, self.clock.now())
                            batch.write()
                    except (DataValidationError, IntegrityError, DataError) as exc:
                        reason = _reason(exc)
                    except DBAPIError:
                        raise
                    except StatementError as exc:
                        reason = _reason(exc)
                    else:
                        done.append((position, _applied(raw, event, tally, stale), tally, event))
                        continue
                    result = MessageResult(
                        raw, "rejected", reason, raw.line, "", event.control_id, True
                    )
                    done.append((position, result, None, event))
                    # The savepoint's rollback expired what the batch held: load it again.
                    batch = self._batch(session, [e for _p, _r, e in parsed[number + 1 :]])
                batch.write()
        except (DataValidationError, IntegrityError, DataError) as exc:
            if savepoints:
                raise self._unavailable(exc, parsed[0][1]) from exc
            raise _Fault(_reason(exc)) from exc
        except DBAPIError as exc:
            raise self._unavailable(exc, parsed[0][1]) from exc
        except StatementError as exc:
            if savepoints:
                raise self._unavailable(exc, parsed[0][1]) from exc
            raise _Fault(_reason(exc)) from exc
        finally:
            self._keys.end_transaction()
        return done

    def _batch(self, session: Session, events: list[AdtEvent]) -> AdtBatch:
        if not session.info.get(_WATCHED):
            self._keys.watch(session)
            update_whole_rows(session)
            session.info[_WATCHED] = True
        batch = AdtBatch(
            session,
            keys=self._keys,
            location_types=self.location_types,
            locations=self.locations,
        )
        batch.preload(events)
        return batch

    # -- applying one message in the caller's transaction ----------------------------------
    def apply(self, session: Session, event: AdtEvent) -> None:
        """Apply one parsed message inside the caller's transaction (flushed, not committed;
        :attr:`summary` is not touched)."""
        try:
            batch = self._batch(session, [event])
            batch.apply(event, self.clock.now())
            batch.write()
        finally:
            self._keys.end_transaction()

    # -- the summary -----------------------------------------------------------------------
    def _record(self, result: MessageResult) -> None:
        self.summary.count(result.outcome, result.message_type)
        if result.outcome == "rejected":
            raw = result.raw
            self._log_rejection(MessageProblem(raw.source, raw.index, result.line, result.reason))

    def _reject(self, problem: MessageProblem) -> None:
        self.summary.count("rejected")
        self._log_rejection(problem)

    def _log_rejection(self, problem: MessageProblem) -> None:
        self.summary.problems.append(problem)
        _log.warning(
            "message rejected",
            source=problem.source,
            index=problem.index,
            line=problem.line,
            reason=problem.reason,
        )

    def _warn(self, raw: RawMessage, reason: str, line: int) -> None:
        self.summary.warnings.append(MessageProblem(raw.source, raw.index, line, reason))
        _log.warning("field ignored", source=raw.source, index=raw.index, line=line, reason=reason)

    def _unavailable(self, exc: Exception, raw: RawMessage) -> SourceUnavailableError:
        _log.error("database unavailable", source=raw.source, index=raw.index, error=str(exc))
        return SourceUnavailableError(
            f"database error at {raw.source} message {raw.index}: {exc}",
            data={"summary": self.summary},
        )


def _applied(raw: RawMessage, event: AdtEvent, tally: RowTally, stale: bool) -> MessageResult:
    outcome: Outcome = "changed" if tally.wrote_values else ("stale" if stale else "unchanged")
    return MessageResult(raw, outcome, "", raw.line, f"ADT^{event.trigger}", event.control_id)


def _refused(raw: RawMessage, exc: DataValidationError) -> MessageResult:
    reason = str(exc.data.get("reason", exc.detail))
    line = exc.data.get("line")
    where = line if isinstance(line, int) else raw.line
    unsupported = exc.data.get("unsupported")
    if isinstance(unsupported, str):
        return MessageResult(raw, "unsupported", reason, where, unsupported)
    return MessageResult(raw, "rejected", reason, where)


def _reason(exc: Exception) -> str:
    if isinstance(exc, DataValidationError):
        return exc.detail
    if isinstance(exc, (IntegrityError, DataError)):
        # The data broke a constraint or a column type: this message's fault, not the server's.
        lines = str(exc.orig).strip().splitlines()
        return f"refused by the database: {lines[0] if lines else type(exc.orig).__name__}"
    if isinstance(exc, StatementError):
        # Raised before reaching the database, e.g. a value a column type refused to bind.
        return f"cannot store: {exc.orig}"
    return str(exc)


def ingest_files(
    paths: Iterable[str | Path],
    engine: Engine,
    *,
    type_caches: TypeCaches | None = None,
    clock: Clock = SYSTEM_CLOCK,
    default_tz: tzinfo = UTC,
    encoding: str = "utf-8",
    batch_size: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Ingest the HL7 v2 ADT files ``paths`` into ``engine`` (tables created if missing).

    Returns the :class:`IngestSummary`; rejected messages are in ``summary.problems``. See
    :class:`AdtIngester` for the transaction and error rules.
    """
    ingester = AdtIngester(
        engine,
        type_caches=type_caches,
        clock=clock,
        default_tz=default_tz,
        encoding=encoding,
        batch_size=batch_size,
        progress=progress,
    )
    for path in paths:
        ingester.ingest_file(path)
    return ingester.summary
