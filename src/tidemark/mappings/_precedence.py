"""Which source wins: the effective mapping of a key and the final alias object (pure functions).

Mappings: a JSON file beats a text file of the same key, and any file beats a server
StructureMap. Aliases: built-ins < the server ConceptMap < ``aliases.json``, key by key. Every
override of one source by another is returned as an :class:`Override`; logging it is the
caller's business.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingOf
from dataclasses import dataclass
from typing import Literal

from ._types import AliasEntry, Mapping

OverrideRule = Literal["json-over-text", "file-over-server", "alias-file-over-server"]
#: The rules :func:`effective_mapping` may report, in the order it reports them.
MAPPING_RULES: tuple[OverrideRule, ...] = ("json-over-text", "file-over-server")

_MESSAGES: dict[OverrideRule, str] = {
    "json-over-text": "JSON mapping file overrides the text mapping file with the same key",
    "file-over-server": "file mapping overrides the server mapping with the same key",
    "alias-file-over-server": "aliases.json overrides the server alias with the same key",
}


@dataclass(frozen=True, slots=True)
class Override:
    """A warning as data: for ``key``, the entry from ``winner`` hides the one from ``hidden``
    (sources as in :class:`Mapping` / :class:`AliasEntry`; ``None`` when not known)."""

    rule: OverrideRule
    key: str
    winner: str | None
    hidden: str | None

    @property
    def message(self) -> str:
        """The warning, in words."""
        return _MESSAGES[self.rule]

    @property
    def fields(self) -> dict[str, str | None]:
        """The structured fields logged with the warning."""
        if self.rule == "file-over-server":
            return {"key": self.key, "file": self.winner, "server": self.hidden}
        return {"key": self.key}


def effective_mapping(
    key: str,
    *,
    json_file: Mapping | None = None,
    text_file: Mapping | None = None,
    server: Mapping | None = None,
) -> tuple[Mapping | None, tuple[Override, ...]]:
    """The mapping the cache should hold for ``key`` given its candidates (JSON file > text
    file > server; ``None`` when there is none), and the overrides that choice implies."""
    overrides: list[Override] = []
    if json_file is not None and text_file is not None:
        overrides.append(Override("json-over-text", key, json_file.source, text_file.source))
    chosen = json_file if json_file is not None else text_file
    if chosen is not None and server is not None:
        overrides.append(Override("file-over-server", key, chosen.source, server.source))
    return (chosen if chosen is not None else server), tuple(overrides)


def effective_aliases(
    *,
    built_in: MappingOf[str, str],
    server: MappingOf[str, str],
    server_source: str | None,
    file: MappingOf[str, str] | None,
    file_source: str | None,
) -> tuple[dict[str, AliasEntry], tuple[Override, ...]]:
    """The final alias object: built-ins, overridden by the server ConceptMap's aliases (taken
    only when ``server_source`` names the ConceptMap), overridden by those of ``aliases.json``;
    and an override for each ``aliases.json`` key the server also defines."""
    merged = {key: AliasEntry(value, "built_in", "built_in") for key, value in built_in.items()}
    if server and server_source is not None:
        for key, value in server.items():
            merged[key] = AliasEntry(value, "server", server_source)
    overrides: list[Override] = []
    if file is not None and file_source is not None:
        for key, value in file.items():
            if key in server:
                overrides.append(
                    Override("alias-file-over-server", key, file_source, server_source)
                )
            merged[key] = AliasEntry(value, "file", file_source)
    return merged, tuple(overrides)
