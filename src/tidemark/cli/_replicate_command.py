"""`tidemark replicate`: keep a local store in step with an Ed-Fi API (see tidemark.replicate)."""

from __future__ import annotations

import asyncio
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import typer

from tidemark.core import configure_logging
from tidemark.replicate import PAGE_SIZE, RoundSummary, TerminalProgress, replicate

from ._shell import (
    duration,
    err,
    json_option,
    log_level_option,
    log_text_option,
    print_json,
    reported_errors,
)


def replicate_command(
    source_url: str = typer.Argument(
        ..., metavar="SOURCE_URL", help="Base URL of the Ed-Fi API (its discovery document)."
    ),
    db: str = typer.Option(
        "tidemark.db",
        "--db",
        metavar="URL",
        help="The replica: a SQLite file path (default ./tidemark.db) or postgresql://…",
    ),
    client_id: str | None = typer.Option(
        None, "--client-id", metavar="ID", envvar="TIDEMARK_REPLICATE_CLIENT_ID"
    ),
    client_secret: str | None = typer.Option(
        None, "--client-secret", metavar="SECRET", envvar="TIDEMARK_REPLICATE_CLIENT_SECRET"
    ),
    resources: list[str] = typer.Option(
        [],
        "--resources",
        metavar="ENDPOINT",
        help="Replicate only these endpoints (repeatable; include what they reference).",
    ),
    once: bool = typer.Option(False, "--once", help="Run one round and exit (the default)."),
    interval: float | None = typer.Option(
        None,
        "--interval",
        metavar="DURATION",
        parser=duration,
        help="Run a round every DURATION (e.g. 30s, 5m) until interrupted.",
    ),
    api_schema: Path | None = typer.Option(
        None,
        "--api-schema",
        metavar="FILE",
        help="The source's Ed-Fi ApiSchema JSON file (default: the model the source's OpenAPI "
        "metadata describes).",
    ),
    page_size: int = typer.Option(
        PAGE_SIZE, "--page-size", metavar="N", min=1, help="Documents per request and commit."
    ),
    json: bool = json_option("Print a JSON summary of each round on stdout."),
    log_level: str = log_level_option("WARNING"),
    log_text: bool = log_text_option(),
) -> None:
    """Keep the store --db in step with the Ed-Fi API at SOURCE_URL.

    The first round copies every resource (keeping the source's ids); later rounds apply only
    what changed since the stored watermark. Interrupted rounds continue where they stopped.
    """
    configure_logging(log_level, json=not log_text)
    show = sys.stderr.isatty() and not json
    with reported_errors(), TerminalProgress() if show else nullcontext() as progress:
        asyncio.run(
            replicate(
                source_url,
                db,
                model=api_schema,
                client_id=client_id,
                client_secret=client_secret,
                resources=resources or None,
                interval=None if once else interval,
                page_size=page_size,
                progress=progress,
                on_round=lambda summary: _report(summary, json),
            )
        )


def _report(summary: RoundSummary, json: bool) -> None:
    if json:
        print_json(summary.to_json(), compact=True)
        return
    counts: dict[str, Any] = summary.counters
    err.print(
        f"replicate: {summary.kind} round, watermark {summary.watermark_before} -> "
        f"{summary.watermark}; fetched {counts['fetched']}, written {counts['written']}, "
        f"unchanged {counts['unchanged']}, deleted {counts['deleted']}, renamed "
        f"{counts['renamed']}; {counts['requests']} requests, {counts['retries']} retries"
        + (f"; resynchronised {', '.join(summary.resynced)}" if summary.resynced else ""),
        markup=False,
    )
