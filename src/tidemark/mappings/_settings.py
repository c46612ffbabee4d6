"""Provider settings: the ``[mappings]`` table of the settings file, env ``TIDEMARK_MAPPINGS_*``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tidemark.core import ConfigurationError

from ._fume import BUILT_IN_ALIASES, DEFAULT_ALIAS_SEARCH, DEFAULT_ALIAS_SEARCH_FALLBACK


@dataclass
class MappingsConfig:
    """How a :class:`MappingProvider` finds its sources and keeps them tracked.

    Sources: ``folder`` (text mapping files ``<key><file_extension>``, JSON mapping files
    ``<key>.json``, the alias file ``aliases.json``) and ``server_url`` (StructureMaps found by
    ``structure_map_search``, filtered client-side by the FUME convention; the alias ConceptMap by
    ``alias_concept_map_id`` or discovered with ``alias_search``, then ``alias_search_fallback``
    when the server rejects the first search). Intervals are seconds; 0 disables a loop.

    Load it from settings with ``Settings.load().section("mappings", MappingsConfig)``
    (environment: ``TIDEMARK_MAPPINGS_FOLDER``, ``TIDEMARK_MAPPINGS_FILE_POLL_INTERVAL``...).
    """

    folder: Path | None = None
    file_extension: str = ".fume"
    server_url: str | None = None
    server_token: str | None = None
    server_timeout: float = 10.0
    server_retries: int = 2
    server_page_size: int = 100
    structure_map_search: dict[str, str] = field(default_factory=dict)
    alias_concept_map_id: str | None = None
    alias_search: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ALIAS_SEARCH))
    alias_search_fallback: dict[str, str] = field(
        default_factory=lambda: dict(DEFAULT_ALIAS_SEARCH_FALLBACK)
    )
    built_in_aliases: dict[str, str] = field(default_factory=lambda: dict(BUILT_IN_ALIASES))
    file_poll_interval: float = 5.0
    server_poll_interval: float = 30.0
    forced_resync_interval: float = 3600.0
    max_file_bytes: int = 4 * 1024 * 1024
    start_tracking: bool = True

    def __post_init__(self) -> None:
        if self.folder is not None:
            self.folder = Path(self.folder)  # accept a str too
        extension = self.file_extension.strip()
        if not extension.startswith("."):
            extension = "." + extension
        if extension.lower() == ".json" or extension == ".":
            raise ConfigurationError(
                f"file_extension {self.file_extension!r} is not allowed: .json files are JSON "
                "mappings and aliases.json"
            )
        self.file_extension = extension
        for name in ("file_poll_interval", "server_poll_interval", "forced_resync_interval"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must be >= 0 (0 disables the loop)")
        if self.server_retries < 0 or self.server_timeout <= 0 or self.server_page_size < 1:
            raise ConfigurationError(
                "server_retries must be >= 0, server_timeout > 0, server_page_size >= 1"
            )
        if self.max_file_bytes < 1:
            raise ConfigurationError("max_file_bytes must be positive")
        if self.server_url is not None:
            self.server_url = self.server_url.rstrip("/")
