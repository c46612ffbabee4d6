"""`tidemark hl7 ...`: the HL7 v2 ADT ingest example of tracked entity updates."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from tidemark.core import Settings, SourceUnavailableError, configure_logging
from tidemark.tracking import TypeCaches, create_tracking_engine
from tidemark.tracking.hl7 import AdtIngester, IngestSummary, MllpListener, example_files

from ._shell import (
    ExitCode,
    command_group,
    config_option,
    err,
    fail,
    json_option,
    log_level_option,
    out,
    print_json,
    reported_errors,
)

hl7_app = command_group("hl7", "HL7 v2 ADT ingest: tracked entity updates and audit rows.")

DEFAULT_DB = "sqlite:///tidemark-hl7.db"
#: Inputs at least this large get a progress bar on a terminal.
PROGRESS_THRESHOLD = 1 << 20


def time_zone(name: str) -> ZoneInfo:
    """Parse ``--timezone``; an unknown zone is a usage error."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise typer.BadParameter(f"unknown time zone {name!r}") from None


DB_OPTION = typer.Option(
    DEFAULT_DB,
    "--db",
    metavar="URL",
    help="Database URL: sqlite:///file.db, or postgresql://user@host/db (psycopg 3).",
)
TIMEZONE_OPTION = typer.Option(
    "UTC",
    "--timezone",
    metavar="ZONE",
    parser=time_zone,
    help="Zone of HL7 times that carry no offset, e.g. Europe/London.",
)
ENCODING_OPTION = typer.Option(
    "utf-8", "--encoding", metavar="ENCODING", help="Text encoding of the messages."
)


@hl7_app.command("ingest")
def ingest(
    files: list[Path] = typer.Argument(
        ...,
        metavar="FILE",
        help="HL7 v2 files (many messages each, plain lines or MLLP frames); - reads standard "
        "input as a stream.",
    ),
    *,
    db: str = DB_OPTION,
    timezone: ZoneInfo = TIMEZONE_OPTION,
    encoding: str = ENCODING_OPTION,
    batch_size: int = typer.Option(
        2000, "--batch-size", metavar="N", min=1, help="Messages per transaction."
    ),
    config: Path | None = config_option("type_cache", "type_cache_<name>"),
    settings_file: Path | None = typer.Option(
        None, "--settings", hidden=True, dir_okay=False, help="Old name of --config."
    ),
    as_json: bool = json_option("Print the summary as JSON."),
    log_level: str = log_level_option("error"),
) -> None:
    """Ingest ADT messages from files or stdin; print what changed.

    Applies A01 A02 A03 A04 A08 A11 A12 A13 A40. Prints the messages that changed rows, changed nothing, were stale (older than what is
    stored) or were rejected, the unsupported events by type, the rows created, updated and
    deleted per table, the audit rows written and the type caches' counters. Large files show
    a progress bar on a terminal. Exit code 1 when a message was rejected (each listed on
    stderr); unsupported events are counted, not errors.
    """
    configure_logging(log_level, json=False)
    with reported_errors():
        caches = TypeCaches(Settings.load(config or settings_file))
        engine = create_tracking_engine(db)
        try:
            names = [str(path) for path in files]
            with _progress(names, as_json) as advance:
                ingester = AdtIngester(
                    engine,
                    type_caches=caches,
                    default_tz=timezone,
                    encoding=encoding,
                    batch_size=batch_size,
                    progress=advance,
                )
                try:
                    for name in names:
                        if name == "-":
                            ingester.ingest_stream(sys.stdin.buffer, "<stdin>")
                        else:
                            ingester.ingest_file(name)
                except SourceUnavailableError:
                    _print(ingester.summary, caches, as_json)
                    raise
        finally:
            engine.dispose()
    summary = ingester.summary
    _print(summary, caches, as_json)
    if summary.problems:
        raise typer.Exit(ExitCode.FAILED)


@contextmanager
def _progress(files: list[str], as_json: bool) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr for large files, only when both outputs are terminals."""
    sizes = [_size(name) for name in files if name != "-"]
    total = sum(sizes)
    if as_json or total < PROGRESS_THRESHOLD or not (out.is_terminal and err.is_terminal):
        yield None
        return
    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("ingest", total=total)

        def advance(done: int) -> None:
            progress.advance(task, done)

        yield advance


def _size(name: str) -> int:
    try:
        return Path(name).stat().st_size
    except OSError:
        return 0


def _print(summary: IngestSummary, caches: TypeCaches, as_json: bool) -> None:
    for problem in summary.problems:
        typer.echo(f"rejected: {problem}", err=True)
    for warning in summary.warnings:
        typer.echo(f"warning: {warning}", err=True)
    cache_stats = {name: stats.as_dict() for name, stats in caches.stats().items()}
    if as_json:
        print_json({**summary.as_dict(), "type_caches": cache_stats})
        return
    typer.echo(
        f"messages {summary.messages}: changed {summary.changed}, unchanged "
        f"{summary.unchanged}, stale {summary.stale}, rejected {summary.rejected}, "
        f"unsupported {sum(summary.unsupported.values())}"
    )
    if summary.unsupported:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(summary.unsupported.items()))
        typer.echo(f"unsupported events (ignored): {kinds}")
    typer.echo(
        f"rows: created {summary.created}, updated {summary.updated}, "
        f"deleted {summary.deleted}, audit rows {summary.audit_rows}"
    )
    columns = ("created", "updated", "deleted", "unchanged", "audit_rows")
    typer.echo(f"  {'table':<16}" + "".join(f"{c:>12}" for c in columns))
    for table, counts in sorted(summary.by_table.items()):
        typer.echo(f"  {table:<16}" + "".join(f"{counts.get(c, 0):>12}" for c in columns))
    for name, stats in cache_stats.items():
        if not stats["enabled"]:
            typer.echo(f"type cache {name}: disabled, {stats['queries']} queries")
            continue
        typer.echo(
            f"type cache {name}: {stats['hits']} hits, {stats['misses']} misses, "
            f"{stats['queries']} queries, {stats['evictions']} evictions, "
            f"{stats['entries']} entries"
        )


@hl7_app.command("listen")
def listen(
    *,
    port: int = typer.Option(..., "--port", metavar="PORT", help="TCP port (0: any free one)."),
    host: str = typer.Option("127.0.0.1", "--host", metavar="HOST", help="Address to bind."),
    db: str = DB_OPTION,
    timezone: ZoneInfo = TIMEZONE_OPTION,
    encoding: str = ENCODING_OPTION,
    config: Path | None = config_option("type_cache", "type_cache_<name>"),
    as_json: bool = json_option("Print the summary as JSON when stopped."),
    log_level: str = log_level_option("warning"),
) -> None:
    """Receive ADT messages over MLLP; ACK each once committed.

    Answers AA once a message is committed (an unsupported event is ignored and still
    acknowledged), AR with the reason when it cannot be used, AE when the database refused it
    or is unavailable. Prints "listening on mllp://HOST:PORT" when ready; Ctrl-C (or SIGTERM)
    stops it and prints the summary.
    """
    configure_logging(log_level, json=False)
    with reported_errors():
        caches = TypeCaches(Settings.load(config))
        engine = create_tracking_engine(db)
        try:
            ingester = AdtIngester(
                engine, type_caches=caches, default_tz=timezone, encoding=encoding, batch_size=1
            )
            try:
                asyncio.run(_listen(MllpListener(ingester, host, port)))
            except OSError as exc:
                fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", ExitCode.UNAVAILABLE)
            except KeyboardInterrupt:
                pass
        finally:
            engine.dispose()
    _print(ingester.summary, caches, as_json)


async def _listen(listener: MllpListener) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    async with listener:
        host, port = listener.address
        typer.echo(f"listening on mllp://{host}:{port}")
        sys.stdout.flush()
        serving = asyncio.create_task(listener.serve())
        await stop.wait()
        serving.cancel()
        try:
            await serving
        except asyncio.CancelledError:
            pass


@hl7_app.command("examples")
def examples() -> None:
    """Print the paths of the bundled synthetic ADT files."""
    for path in example_files():
        typer.echo(str(path))
