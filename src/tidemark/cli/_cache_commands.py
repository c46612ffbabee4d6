"""`tidemark cache ...`: inspect and manage the schema caches."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from tidemark.core import iso_utc
from tidemark.schemas import (
    ArchiveSummary,
    SchemaMetadata,
    export_archive,
    import_archive,
    load_packages,
    read_persisted_stats,
)

from ._schemas_commands import (
    CONFIG_OPTION,
    PACKAGE_OPTION,
    open_store,
    package_cache,
    quiet_logging,
)
from ._shell import (
    ExitCode,
    command_group,
    duration,
    err,
    human_bytes,
    json_option,
    out,
    print_json,
    reported_errors,
)

cache_app = command_group("cache", "Inspect and manage the schema caches ([storage] settings).")

JSON_OPTION = json_option("Print JSON instead of a table.")
URL_OPTION = typer.Option(
    None, "--url", metavar="PREFIX", help="Only canonical URLs with this prefix."
)
PACKAGE_FILTER_OPTION = typer.Option(
    None, "--package", metavar="NAME[#VERSION]", help="Only this package."
)


# -- list -------------------------------------------------------------------------------------
@cache_app.command("list")
def list_command(
    url: str | None = URL_OPTION,
    package: str | None = PACKAGE_FILTER_OPTION,
    as_json: bool = JSON_OPTION,
    config: Path | None = CONFIG_OPTION,
) -> None:
    """List the cached schemas with their metadata."""
    quiet_logging()
    with reported_errors():
        listed = asyncio.run(_list(config))
    chosen = [
        m
        for m in listed
        if (url is None or m.canonical_url.startswith(url))
        and (package is None or (m.package or "").split("#")[0] == package or m.package == package)
    ]
    if as_json:
        print_json([m.to_dict() for m in chosen])
        return
    table = Table(title=f"Cached schemas ({len(chosen)})")
    for column in ("canonical URL", "version", "package", "size", "converted", "deps"):
        table.add_column(
            column,
            justify="right" if column in ("size", "deps") else "left",
            overflow="fold",
        )
    for m in chosen:
        table.add_row(
            m.canonical_url,
            m.version or "",
            m.package or "",
            human_bytes(m.size_bytes),
            iso_utc(m.conversion_time, timespec="seconds"),
            str(len(m.dependencies)),
        )
    out.print(table)


async def _list(config: Path | None) -> list[SchemaMetadata]:
    async with open_store(config) as store:
        return await store.list()


# -- stats ------------------------------------------------------------------------------------
@cache_app.command("stats")
def stats_command(as_json: bool = JSON_OPTION, config: Path | None = CONFIG_OPTION) -> None:
    """Hits, misses, hit rate, entries and bytes per tier.

    Counters are lifetime totals of every process that used the disk cache (each adds its own
    when it closes); entries and bytes are the tiers' current contents. The memory tier lives
    in each process, so its current contents are not shown here.
    """
    quiet_logging()
    with reported_errors():
        rows = asyncio.run(_stats(config))
    if as_json:
        print_json(rows)
        return
    table = Table(title="Schema cache statistics")
    columns = ("tier", "hits", "misses", "hit rate", "entries", "bytes", "evictions", "expired")
    for column in (*columns, "corrupt"):
        table.add_column(column, justify="left" if column == "tier" else "right")
    for tier, row in rows["tiers"].items():
        entries = row.get("entries")
        size = row.get("bytes")
        table.add_row(
            tier,
            str(row["hits"]),
            str(row["misses"]),
            f"{row['hit_rate']:.1%}",
            "-" if entries is None else str(entries),
            "-" if size is None else human_bytes(size),
            str(row["evictions"]),
            str(row["expirations"]),
            str(row["corrupt"]),
        )
    out.print(table)
    counters = ", ".join(f"{k}={v}" for k, v in sorted(rows["store"].items()))
    out.print(f"store: {counters or 'no runs recorded yet'}")


async def _stats(config: Path | None) -> dict[str, Any]:
    async with open_store(config) as store:
        lifetime = read_persisted_stats(store.disk.root) if store.disk is not None else {}
        current = store.stats()
        if store.redis is not None:
            await store.redis.entries()  # refreshes its entry count and size
        tiers: dict[str, dict[str, Any]] = {}
        for tier, stats in store.cache.stats().items():
            totals = lifetime.get(tier, {})
            row: dict[str, Any] = {
                name: totals.get(name, 0) + getattr(stats, name)
                for name in ("hits", "misses", "evictions", "expirations", "corrupt")
            }
            lookups = row["hits"] + row["misses"]
            row["hit_rate"] = row["hits"] / lookups if lookups else 0.0
            if tier != "memory":
                row["entries"], row["bytes"] = stats.entries, stats.bytes
            tiers[tier] = row
        store_counters = dict(lifetime.get("store", {}))
        for name, value in current.counters.items():
            store_counters[name] = store_counters.get(name, 0) + value
        return {"tiers": tiers, "store": store_counters}


# -- clear ------------------------------------------------------------------------------------
@cache_app.command("clear")
def clear_command(
    url: str | None = URL_OPTION,
    older_than: float | None = typer.Option(
        None,
        "--older-than",
        metavar="DURATION",
        parser=duration,
        help="Only schemas converted longer ago than this (e.g. 30d, 12h).",
    ),
    package: str | None = PACKAGE_FILTER_OPTION,
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Remove cached schemas: all, or those matching every filter given."""
    quiet_logging()
    with reported_errors():
        removed = asyncio.run(_clear(config, url, older_than, package))
    out.print(f"removed {len(removed)} schema(s)")


async def _clear(
    config: Path | None, url: str | None, older_than: float | None, package: str | None
) -> list[str]:
    async with open_store(config) as store:
        return await store.clear_where(url_prefix=url, older_than=older_than, package=package)


# -- save -------------------------------------------------------------------------------------
@cache_app.command("save")
def save_command(
    urls: list[str] = typer.Argument(
        ..., metavar="URL", help="Canonical URLs (url or url|version)."
    ),
    package: list[str] = PACKAGE_OPTION,
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Resolve schemas and write them to the persistent tiers now.

    Missing schemas are converted from the --package packages. Exit code 1 when any URL is not
    found.
    """
    quiet_logging()
    with reported_errors():
        sources = load_packages(package, cache=package_cache(config), dependencies=True)
        saved, missing = asyncio.run(_save(config, sources, urls))
    for metadata in saved:
        out.print(f"saved {metadata.key} ({human_bytes(metadata.size_bytes)})")
    for url in missing:
        err.print(f"[red]not found:[/red] {escape(url)}")
    if missing:
        raise typer.Exit(ExitCode.FAILED)


async def _save(config: Path | None, sources: Any, urls: list[str]) -> Any:
    async with open_store(config, sources) as store:
        return await store.save(urls)


# -- export / import --------------------------------------------------------------------------
@cache_app.command("export")
def export_command(
    file: Path = typer.Argument(..., metavar="FILE", help="The archive to write.", dir_okay=False),
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Write the cached schemas and metadata to one checksummed archive.

    With [storage] archive_key set the archive is signed (HMAC-SHA256), so an import with the
    same key detects any edit.
    """
    quiet_logging()
    with reported_errors():
        summary = asyncio.run(_export(config, file))
    signed = "signed" if summary.signed else "not signed: no [storage] archive_key"
    out.print(
        f"exported {summary.entries} schema(s) to {summary.path} "
        f"({human_bytes(summary.size_bytes)}, {signed})",
        markup=False,
    )


async def _export(config: Path | None, file: Path) -> ArchiveSummary:
    async with open_store(config) as store:
        return await export_archive(store, file)


@cache_app.command("import")
def import_command(
    file: Path = typer.Argument(
        ..., metavar="FILE", help="An archive written by `tidemark cache export`.", dir_okay=False
    ),
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Verify an archive, then load its schemas into the cache.

    The whole archive is checked first, each file counted against [storage]
    max_import_schema_mb and max_import_total_mb while it is decompressed: a damaged, oversized
    or edited one is refused and nothing is imported (exit code 1). Edits that recompute every
    checksum are detected only with [storage] archive_key (the archive must then be signed
    with the same key).
    """
    quiet_logging()
    with reported_errors():
        summary = asyncio.run(_import(config, file))
    signature = (
        "signature verified"
        if summary.signed
        else "signature not checked (no [storage] archive_key): checksums detect damage, "
        "not deliberate edits"
    )
    out.print(
        f"imported {summary.stored} schema(s) from {summary.path}; "
        f"{summary.unchanged} already cached unchanged; {signature}",
        markup=False,
    )


async def _import(config: Path | None, file: Path) -> ArchiveSummary:
    async with open_store(config) as store:
        return await import_archive(store, file)
