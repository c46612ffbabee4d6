"""The ``[storage]`` settings of the schema store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tidemark.core import Settings

#: The storage strategies: where converted schemas are kept.
STRATEGIES = ("memory", "memory-disk", "disk")

DEFAULT_DISK_CACHE_DIR = Path("~/.cache/tidemark/schemas")

_MIB = 1024 * 1024
_GIB = 1024 * _MIB


@dataclass(frozen=True)
class StorageSettings:
    """``[storage]``: read with :meth:`load` (TOML file plus ``TIDEMARK_STORAGE_<FIELD>``).

    * ``strategy``: ``memory`` (bounded memory only), ``memory-disk`` (memory over a persistent
      disk cache) or ``disk`` (disk only, for small memory budgets).
    * ``memory_limit_mb`` / ``max_entries``: bounds of the memory tier (measured in real
      memory of the parsed schemas, least recently used evicted first).
    * ``disk_cache_dir``, ``max_disk_size_gb`` (total size cap, LRU), ``enable_compression``
      (zstd): the disk tier.
    * ``ttl_hours``: schemas expire this long after they were stored (every tier).
    * ``write_behind``: disk (and Redis) writes happen in the background; closing the store
      waits for them.
    * ``redis_url`` / ``redis_prefix``: an optional shared tier below the others.
    * ``archive_key``: signs exported archives (HMAC-SHA256) and makes a valid signature
      mandatory on import; without it an archive's checksums detect damage, not deliberate
      edits. ``max_import_schema_mb`` / ``max_import_total_mb``: caps on each schema and on a
      whole archive, counted while it is decompressed.
    """

    strategy: str = "memory-disk"
    memory_limit_mb: float = 256.0
    max_entries: int = 1000
    disk_cache_dir: Path | None = field(default_factory=DEFAULT_DISK_CACHE_DIR.expanduser)
    ttl_hours: float | None = None
    enable_compression: bool = True
    max_disk_size_gb: float | None = 1.0
    write_behind: bool = True
    redis_url: str | None = None
    redis_prefix: str = "tidemark:schemas:"
    archive_key: str | None = field(default=None, repr=False)  # a secret: never in logs
    max_import_schema_mb: float = 8.0
    max_import_total_mb: float = 512.0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"strategy must be one of {', '.join(STRATEGIES)}, not {self.strategy!r}"
            )
        if self.memory_limit_mb <= 0 or self.max_entries <= 0:
            raise ValueError("memory_limit_mb and max_entries must be > 0")
        if self.uses_disk and self.disk_cache_dir is None:
            raise ValueError(f"strategy {self.strategy!r} needs disk_cache_dir")
        if self.ttl_hours is not None and self.ttl_hours <= 0:
            raise ValueError("ttl_hours must be > 0 (leave it out for no expiry)")
        if self.max_disk_size_gb is not None and self.max_disk_size_gb <= 0:
            raise ValueError("max_disk_size_gb must be > 0 (leave it out for no cap)")
        if not self.redis_prefix:
            raise ValueError("redis_prefix must not be empty")
        if self.max_import_schema_mb <= 0 or self.max_import_total_mb <= 0:
            raise ValueError("max_import_schema_mb and max_import_total_mb must be > 0")
        if self.archive_key is not None and len(self.archive_key) < 16:
            raise ValueError("archive_key must be at least 16 characters")

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: object) -> StorageSettings:
        """The ``[storage]`` table of ``path`` (or ``$TIDEMARK_SETTINGS``, or ``./tidemark.toml``)
        with environment overrides, then ``overrides`` that are not ``None``.

        Raises :class:`~tidemark.core.ConfigurationError` for a missing file, unknown keys or
        invalid values.
        """
        return Settings.load(path).section("storage", cls, **overrides)

    @property
    def uses_memory(self) -> bool:
        """Whether the strategy keeps a memory tier."""
        return self.strategy in ("memory", "memory-disk")

    @property
    def uses_disk(self) -> bool:
        """Whether the strategy keeps a disk tier."""
        return self.strategy in ("memory-disk", "disk")

    @property
    def memory_limit_bytes(self) -> int:
        """``memory_limit_mb`` in bytes."""
        return int(self.memory_limit_mb * _MIB)

    @property
    def max_disk_bytes(self) -> int | None:
        """``max_disk_size_gb`` in bytes (``None``: no cap)."""
        return None if self.max_disk_size_gb is None else int(self.max_disk_size_gb * _GIB)

    @property
    def ttl_seconds(self) -> float | None:
        """``ttl_hours`` in seconds (``None``: no expiry)."""
        return None if self.ttl_hours is None else self.ttl_hours * 3600.0
