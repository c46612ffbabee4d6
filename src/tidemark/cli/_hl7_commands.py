"""`tidemark hl7 ...`: the HL7 v2 ADT ingest example of tracked entity updates."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer

from tidemark.core import Settings, SourceUnavailableError, configure_logging
from tidemark.tracking import TypeCaches, create_tracking_engine
from tidemark.tracking.hl7 import IngestSummary, example_files, ingest_files

from ._shell import (
    ExitCode,
    command_group,
    config_option,
    json_option,
    log_level_option,
    print_json,
    reported_errors,
)

hl7_app = command_group("hl7", "HL7 v2 ADT ingest: tracked entity updates and audit rows.")

DEFAULT_DB = "sqlite:///tidemark-hl7.db"


def time_zone(name: str) -> ZoneInfo:
    """Parse ``--timezone``; an unknown zone is a usage error."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise typer.BadParameter(f"unknown time zone {name!r}") from None


@hl7_app.command("ingest")
def ingest(
    files: list[Path] = typer.Argument(
        ..., metavar="FILE", help="HL7 v2 files (many messages each)."
    ),
    *,
    db: str = typer.Option(
        DEFAULT_DB,
        "--db",
        metavar="URL",
        help="Database URL: sqlite:///file.db, or postgresql://user@host/db (psycopg 3).",
    ),
    timezone: ZoneInfo = typer.Option(
        "UTC",
        "--timezone",
        metavar="ZONE",
        parser=time_zone,
        help="Zone of HL7 times that carry no offset, e.g. Europe/London.",
    ),
    encoding: str = typer.Option(
        "utf-8", "--encoding", metavar="ENCODING", help="Text encoding of the files."
    ),
    config: Path | None = config_option("type_cache", "type_cache_<name>"),
    settings_file: Path | None = typer.Option(
        None, "--settings", hidden=True, dir_okay=False, help="Old name of --config."
    ),
    as_json: bool = json_option("Print the summary as JSON."),
    log_level: str = log_level_option("error"),
) -> None:
    """Ingest ADT A01/A02/A03/A08 messages; print what changed.

    Prints the rows created, updated and left unchanged per table, the audit rows written and
    the type caches' counters. Exit code 1 when some messages were skipped (each listed on
    stderr).
    """
    configure_logging(log_level, json=False)
    with reported_errors():
        caches = TypeCaches(Settings.load(config or settings_file))
        engine = create_tracking_engine(db)
        try:
            summary = ingest_files(
                files, engine, type_caches=caches, default_tz=timezone, encoding=encoding
            )
        except SourceUnavailableError as exc:
            partial = exc.data.get("summary")
            if isinstance(partial, IngestSummary):
                _print(partial, caches, as_json)
            raise
        finally:
            engine.dispose()
    _print(summary, caches, as_json)
    if summary.problems:
        raise typer.Exit(ExitCode.FAILED)


def _print(summary: IngestSummary, caches: TypeCaches, as_json: bool) -> None:
    for problem in summary.problems:
        typer.echo(f"skipped: {problem}", err=True)
    cache_stats = {name: stats.as_dict() for name, stats in caches.stats().items()}
    if as_json:
        print_json({**summary.as_dict(), "type_caches": cache_stats})
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
    """Print the paths of the bundled synthetic ADT files."""
    for path in example_files():
        typer.echo(str(path))
