"""`tidemark sync ...`: inspect a tier's metadata and sync two tiers (files, folders, servers)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import typer

from tidemark.cli import app
from tidemark.core import TidemarkError
from tidemark.sync import open_tier, sync_tiers

sync_app = typer.Typer(
    name="sync",
    help="Offline-first sync: tier metadata and one-off syncs.",
    no_args_is_help=True,
)
app.add_typer(sync_app)

TIER_HELP = "A SQLite file, a folder (ending in /), or http(s)://host:port/<namespace>."


def _print(document: Any) -> None:
    typer.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())


def _fail(error: TidemarkError) -> None:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(1)


async def _metadata(spec: str, token: str | None) -> dict[str, Any]:
    tier = open_tier(spec, token=token, create=False)
    try:
        return (await tier.metadata()).to_json()
    finally:
        await tier.close()


async def _run(source: str, target: str, one_way: bool, token: str | None) -> dict[str, Any]:
    a = open_tier(source, name="source", token=token, create=False)
    b = open_tier(target, name="target", token=token)
    try:
        return (await sync_tiers(a, b, two_way=not one_way)).counts()
    finally:
        await a.close()
        await b.close()


@sync_app.command("metadata")
def metadata(
    tier: str = typer.Argument(..., help=TIER_HELP),
    token: str | None = typer.Option(None, envvar="TIDEMARK_SYNC_TOKEN", help="Bearer token."),
) -> None:
    """Print a tier's metadata as JSON: per entity key its hash, newest stamp and counts."""
    try:
        _print(asyncio.run(_metadata(tier, token)))
    except TidemarkError as error:
        _fail(error)


@sync_app.command("run")
def run(
    source: str = typer.Argument(..., help=f"Tier A. {TIER_HELP}"),
    target: str = typer.Argument(
        ..., help=f"Tier B (created if it is a missing file). {TIER_HELP}"
    ),
    one_way: bool = typer.Option(
        False, "--one-way", help="Leave keys only B holds alone instead of copying them to A."
    ),
    token: str | None = typer.Option(None, envvar="TIDEMARK_SYNC_TOKEN", help="Bearer token."),
) -> None:
    """Sync tier A -> B once (reading only differing keys) and print the counts as JSON."""
    try:
        _print(asyncio.run(_run(source, target, one_way, token)))
    except TidemarkError as error:
        _fail(error)
