"""`tidemark schemas ...`: convert FHIR packages to FHIRSchema and validate resources."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from tidemark.core import Settings, configure_logging, parse_json
from tidemark.fhir.packages import FhirPackage, PackageCache, PackageSet, PackageSettings
from tidemark.fhir.schema import ValidationResult, operation_outcome
from tidemark.schemas import ConversionReport, SchemaStore, StorageSettings, load_packages

from ._shell import (
    ExitCode,
    command_group,
    config_option,
    err,
    fail,
    human_bytes,
    json_option,
    out,
    print_json,
    reported_errors,
)

schemas_app = command_group("schemas", "FHIR packages to FHIRSchema, and resource validation.")

CONFIG_OPTION = config_option("storage", "packages")
PACKAGE_OPTION = typer.Option(
    [],
    "--package",
    "-p",
    metavar="PACKAGE",
    help="A FHIR package: a .tgz, a folder, or name#version from the package cache. Repeatable.",
)


# -- shared by the schemas and cache commands -------------------------------------------------
def quiet_logging() -> None:
    """Library warnings (a corrupt cache file removed...) reach stderr as readable lines."""
    configure_logging("WARNING", json=False)


def open_store(config: Path | None, packages: PackageSet | None = None) -> SchemaStore:
    """The schema store the ``[storage]`` settings of ``config`` describe."""
    return SchemaStore(StorageSettings.load(config), packages=packages)


def package_cache(config: Path | None) -> PackageCache:
    """The FHIR package cache the ``[packages]`` settings of ``config`` describe."""
    return Settings.load(config).section("packages", PackageSettings).cache()


# -- convert ----------------------------------------------------------------------------------
@schemas_app.command("convert")
def convert_command(
    packages: list[str] = typer.Argument(
        ..., metavar="PACKAGE", help="Packages to convert (.tgz, folder or name#version)."
    ),
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Convert packages' StructureDefinitions into the schema cache.

    Definitions already converted with the same source hash are reused, not converted again.
    Exit code 1 when any definition fails to convert.
    """
    quiet_logging()
    with reported_errors():
        loaded = load_packages(packages, cache=package_cache(config))
        reports = asyncio.run(_convert(config, loaded.packages))
    table = Table(title="FHIRSchema conversion")
    for column in ("package", "definitions", "converted", "reused", "failed", "size", "seconds"):
        table.add_column(column, justify="left" if column == "package" else "right")
    for report in reports:
        table.add_row(
            report.package,
            str(report.total),
            str(report.converted),
            str(report.reused),
            str(len(report.failed)),
            human_bytes(report.size_bytes),
            f"{report.seconds:.2f}",
        )
    out.print(table)
    failures = [(url, reason) for report in reports for url, reason in report.failed.items()]
    for url, reason in failures:
        err.print(f"[red]failed:[/red] {escape(f'{url}: {reason}')}")
    if failures:
        raise typer.Exit(ExitCode.FAILED)


async def _convert(config: Path | None, packages: Sequence[FhirPackage]) -> list[ConversionReport]:
    reports = []
    async with open_store(config, PackageSet(packages)) as store:
        for package in packages:
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=err, transient=True) as progress:
                task = progress.add_task(
                    package.manifest.package_id, total=len(package.structure_definitions())
                )

                def advance(done: int, *_: object, task: TaskID = task) -> None:
                    progress.update(task, completed=done)

                reports.append(await store.convert_package(package, progress=advance))
    return reports


# -- validate ---------------------------------------------------------------------------------
@schemas_app.command("validate")
def validate_command(
    resource: Path = typer.Argument(
        ..., metavar="RESOURCE", help="A FHIR resource as a JSON file.", dir_okay=False
    ),
    profile: list[str] = typer.Option(
        [],
        "--profile",
        metavar="URL",
        help="Also validate against this profile (canonical URL). Repeatable.",
    ),
    package: list[str] = PACKAGE_OPTION,
    as_json: bool = json_option("Print the OperationOutcome as JSON."),
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Validate a resource against its type and profiles.

    The profiles are the resource's meta.profile and each --profile. Schemas come from the
    cache, converted from the --package packages (and their cached dependencies) when missing.
    Prints the OperationOutcome issues; exit code 1 when there are errors, 2 when the file
    cannot be read as JSON.
    """
    try:
        document = parse_json(resource.read_bytes())
    except (OSError, ValueError) as exc:
        fail(f"cannot read {resource} as JSON: {exc}", ExitCode.USAGE)
    quiet_logging()
    with reported_errors():
        sources = load_packages(package, cache=package_cache(config), dependencies=True)
        result = asyncio.run(_validate(config, sources, document, profile))
    if as_json:
        print_json(operation_outcome(result))
    else:
        _print_issues(result)
    if not result.valid:
        raise typer.Exit(ExitCode.FAILED)


async def _validate(
    config: Path | None, packages: PackageSet, document: Any, profiles: Sequence[str]
) -> ValidationResult:
    async with open_store(config, packages) as store:
        return await store.validate(document, profiles=profiles)


def _print_issues(result: ValidationResult) -> None:
    if not result.issues:
        out.print("[green]valid[/green]: no issues")
        return
    table = Table(title="OperationOutcome")
    for column in ("severity", "code", "location", "diagnostics"):
        table.add_column(column)
    colours = {"fatal": "red", "error": "red", "warning": "yellow", "information": "cyan"}
    for issue in result.issues:
        colour = colours.get(issue.severity, "white")
        table.add_row(
            f"[{colour}]{issue.severity}[/{colour}]",
            issue.code,
            issue.expression,
            issue.diagnostics,
        )
    out.print(table)
    verdict = "[green]valid[/green]" if result.valid else "[red]invalid[/red]"
    out.print(f"{verdict}: {len(result.errors)} error(s), {len(result.warnings)} warning(s)")
