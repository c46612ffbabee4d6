"""`tidemark sync ...`: inspect a tier's metadata and sync two tiers (files, folders, servers)."""

from __future__ import annotations

import asyncio
from typing import Any

import typer

from tidemark.sync import open_tier, sync_tiers

from ._shell import command_group, print_json, reported_errors

sync_app = command_group("sync", "Offline-first sync: tier metadata and one-off syncs.")

TIER_HELP = "A SQLite file, a folder (ending in /), or http(s)://host:port/<namespace>."
TOKEN_OPTION = typer.Option(
    None, "--token", metavar="TOKEN", envvar="TIDEMARK_SYNC_TOKEN", help="Bearer token."
)


async def _metadata(spec: str, token: str | None) -> dict[str, Any]:
    tier = open_tier(spec, token=token, read_only=True)
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
    tier: str = typer.Argument(..., metavar="TIER", help=TIER_HELP),
    token: str | None = TOKEN_OPTION,
) -> None:
    """Print a tier's metadata as JSON (per key: hash, stamp, counts).

    Read-only: a local tier is left exactly as it was (no index written, corrupt files only
    named in a warning, never moved).
    """
    with reported_errors():
        print_json(asyncio.run(_metadata(tier, token)))


@sync_app.command("run")
def run(
    source: str = typer.Argument(..., metavar="SOURCE", help=f"Tier A. {TIER_HELP}"),
    target: str = typer.Argument(
        ..., metavar="TARGET", help=f"Tier B (created if it is a missing file). {TIER_HELP}"
    ),
    one_way: bool = typer.Option(
        False, "--one-way", help="Leave keys only B holds alone instead of copying them to A."
    ),
    token: str | None = TOKEN_OPTION,
) -> None:
    """Sync tier A -> B once and print the counts as JSON.

    Only the keys whose hashes differ are read.
    """
    with reported_errors():
        print_json(asyncio.run(_run(source, target, one_way, token)))
