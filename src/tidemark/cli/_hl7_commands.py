"""`tidemark hl7 ...`: the HL7 v2 ADT ingest example of tracked entity updates."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import typer

from tidemark.cli import app
from tidemark.core import ConfigurationError, Settings, SourceUnavailableError, configure_logging
from tidemark.tracking import (
    IngestSummary,
    TypeCaches,
    create_tracking_engine,
    example_files,
    ingest_files,
)

hl7_app = typer.Typer(
    name="hl7",
    help="HL7 v2 ADT ingest: tracked entity updates with audit rows and type caches.",
    no_args_is_help=True,
)
app.add_typer(hl7_app)

DEFAULT_DB = "sqlite:///tidemark-hl7.db"


@hl7_app.command("ingest")
def ingest(
    files: list[Path] = typer.Argument(..., help="HL7 v2 files (many messages each)."),
    *,
    db: str = typer.Option(
        DEFAULT_DB,
        "--db",
        help="Database URL: sqlite:///file.db, or postgresql://user@host/db (psycopg 3).",
    ),
    timezone: str = typer.Option(
        "UTC", "--timezone", help="Zone of HL7 times that carry no offset, e.g. Europe/London."
    ),
    encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of the files."),
    settings_file: Path | None = typer.Option(
        None, "--settings", help="Settings file ([type_cache]); default ./tidemark.toml if present."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    log_level: str = typer.Option("error", "--log-level", help="Log level on stderr."),
) -> None:
    """Ingest ADT A01/A02/A03/A08 messages; print what was created, updated and audited.

    Exit status: 0 all messages ingested, 1 some skipped (listed on stderr), 2 bad options,
    3 database unavailable.
    """
    configure_logging(log_level, json=False)
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        typer.echo(f"error: unknown time zone {timezone!r}", err=True)
        raise typer.Exit(2) from None
    try:
        settings = Settings.load(settings_file)
        caches = TypeCaches(settings)
        engine = create_tracking_engine(db)
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        summary = ingest_files(
            files, engine, type_caches=caches, default_tz=zone, encoding=encoding
        )
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except SourceUnavailableError as exc:
        partial = exc.data.get("summary")
        if isinstance(partial, IngestSummary):
            _print(partial, caches, as_json)
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from None
    finally:
        engine.dispose()
    _print(summary, caches, as_json)
    if summary.problems:
        raise typer.Exit(1)


def _print(summary: IngestSummary, caches: TypeCaches, as_json: bool) -> None:
    for problem in summary.problems:
        typer.echo(f"skipped: {problem}", err=True)
    cache_stats = {name: stats.as_dict() for name, stats in caches.stats().items()}
    if as_json:
        document = {**summary.as_dict(), "type_caches": cache_stats}
        typer.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        return
    typer.echo(
        f"messages {summary.messages}: ingested {summary.ingested}, skipped {summary.skipped}"
    )
    typer.echo(
        f"rows: created {summary.created}, updated {summary.updated}, "
        f"unchanged {summary.unchanged}, audit rows {summary.audit_rows}"
    )
    columns = ("created", "updated", "unchanged", "audit_rows")
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


@hl7_app.command("examples")
def examples() -> None:
    """Print the paths of the synthetic ADT fixture files shipped with tidemark."""
    for path in example_files():
        typer.echo(str(path))
