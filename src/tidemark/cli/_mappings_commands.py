"""`tidemark mappings ...`: watch the self-healing mapping provider at work."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import typer
from rich.table import Table

from tidemark.core import ConfigurationError, Settings, configure_logging, content_hash, iso_utc
from tidemark.mappings import MappingEvent, MappingProvider, MappingsConfig

from ._shell import command_group, config_option, json_option, out, print_json, reported_errors

mappings_app = command_group("mappings", "The self-healing mapping provider (files + FHIR server).")


@mappings_app.command()
def watch(
    folder: Path | None = typer.Option(None, "--folder", metavar="DIR", help="Mapping folder."),
    server: str | None = typer.Option(
        None, "--server", metavar="URL", help="FHIR server base URL."
    ),
    token: str | None = typer.Option(
        None, "--token", metavar="TOKEN", help="Bearer token for the server."
    ),
    extension: str | None = typer.Option(
        None, "--extension", metavar="EXT", help="Text mapping extension."
    ),
    alias_id: str | None = typer.Option(
        None, "--alias-id", metavar="ID", help="Alias ConceptMap id."
    ),
    file_interval: float | None = typer.Option(
        None, "--file-interval", metavar="SECONDS", help="File polling interval (0 = off)."
    ),
    server_interval: float | None = typer.Option(
        None, "--server-interval", metavar="SECONDS", help="Server polling interval (0 = off)."
    ),
    resync_interval: float | None = typer.Option(
        None,
        "--resync-interval",
        metavar="SECONDS",
        help="Seconds between forced resyncs (0 = off).",
    ),
    config: Path | None = config_option("mappings"),
    as_json: bool = json_option("JSON lines instead of tables."),
) -> None:
    """Print the provider's state, then each cache change (Ctrl-C ends)."""
    with reported_errors():
        mappings_config = Settings.load(config).section(
            "mappings",
            MappingsConfig,
            folder=str(folder) if folder else None,
            server_url=server,
            server_token=token,
            file_extension=extension,
            alias_concept_map_id=alias_id,
            file_poll_interval=file_interval,
            server_poll_interval=server_interval,
            forced_resync_interval=resync_interval,
        )
        if mappings_config.folder is None and mappings_config.server_url is None:
            raise ConfigurationError("give --folder and/or --server")
        configure_logging("INFO", json=as_json)
        asyncio.run(_watch(MappingProvider(mappings_config), as_json))


async def _watch(provider: MappingProvider, as_json: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    await provider.initialize()
    subscription = provider.subscribe()
    _print_state(provider, as_json)

    async def follow() -> None:
        async for event in subscription:
            _print_event(event, as_json)

    follower = asyncio.create_task(follow())
    try:
        await stop.wait()
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        subscription.close()
        await provider.close()


def _print_state(provider: MappingProvider, as_json: bool) -> None:
    metadata = provider.get_mappings_metadata()
    hashes = {m.key: content_hash(m.text) for m in provider.get_mappings()}
    aliases = provider.get_aliases_with_metadata()
    status = provider.status()
    if as_json:
        print_json(
            {
                "type": "state",
                "mappings": [
                    {
                        "key": m.key,
                        "source_type": m.source_type,
                        "source": m.source,
                        "format": m.format,
                        "version_id": m.version_id,
                        "last_updated": m.last_updated,
                        "text_hash": hashes.get(m.key),
                    }
                    for m in metadata
                ],
                "aliases": {
                    k: {"value": a.value, "source_type": a.source_type, "source": a.source}
                    for k, a in aliases.items()
                },
                "alias_resource_id": provider.get_alias_resource_id(),
                "status": {name: s.available for name, s in status.items() if s.configured},
            },
            compact=True,
        )
        return
    table = Table(title=f"{len(metadata)} mapping(s)")
    for column in ("key", "source", "format", "version"):
        table.add_column(column)
    for m in metadata:
        version = m.version_id or m.last_updated or ""
        table.add_row(m.key, f"{m.source_type}: {m.source}", m.format, version)
    out.print(table)
    by_source: dict[str, int] = {}
    for entry in aliases.values():
        by_source[entry.source_type] = by_source.get(entry.source_type, 0) + 1
    summary = ", ".join(f"{count} {source}" for source, count in sorted(by_source.items()))
    out.print(f"{len(aliases)} alias(es): {summary or 'none'}")
    alias_id = provider.get_alias_resource_id()
    if alias_id:
        out.print(f"alias ConceptMap: {alias_id}")
    for name, s in status.items():
        if s.configured:
            state = "[green]ok[/green]" if s.available else f"[red]failing[/red] ({s.last_error})"
            out.print(f"{name}: {state}")
    out.print("[dim]watching for changes (Ctrl-C to stop)[/dim]")


def _print_event(event: MappingEvent, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "type": "event",
                "kind": event.kind,
                "action": event.action,
                "trigger": event.trigger,
                "at": iso_utc(event.at, timespec="milliseconds"),
                "key": event.key,
                "source_type": event.source_type,
                "source": event.source,
                "text_hash": event.text_hash,
                "added": list(event.added),
                "changed": list(event.changed),
                "removed": list(event.removed),
            },
            compact=True,
        )
        return
    stamp = event.at.strftime("%H:%M:%S.%f")[:-3]
    if event.kind == "aliases":
        parts = [f"+{k}" for k in event.added] + [f"~{k}" for k in event.changed]
        parts += [f"-{k}" for k in event.removed]
        out.print(f"{stamp} aliases replaced {' '.join(parts)} [dim]({event.trigger})[/dim]")
        return
    color = {"created": "green", "updated": "yellow", "deleted": "red"}[event.action]
    out.print(
        f"{stamp} [{color}]{event.action:<7}[/{color}] {event.key}  "
        f"{event.source_type}: {event.source} [dim]({event.trigger})[/dim]"
    )
