"""tidemark.schemas: converted FHIRSchemas kept in memory, on disk and in Redis.

- :class:`SchemaMetadata`: canonical URL, version, source hash, conversion time,
  dependencies and size of a stored schema.
- :class:`SchemaStorage`: the async storage protocol (``store``, ``load``, ``remove``,
  ``list``, ``clear``, ``size``), implemented by :class:`MemorySchemaStorage`,
  :class:`DiskSchemaStorage` and :class:`RedisSchemaStorage` over the ``tidemark.cache`` tiers.
- :class:`SchemaStore`: the storage manager (strategies ``memory``, ``memory-disk``,
  ``disk``, plus an optional Redis tier) resolving memory → disk → Redis → FHIR packages,
  converting on demand, never converting an unchanged definition twice, tracking dependencies,
  and plugging into the FHIRSchema validator (:meth:`SchemaStore.resolver`,
  :meth:`SchemaStore.validate`).
- :class:`StorageSettings`: the ``[storage]`` settings (TOML plus ``TIDEMARK_STORAGE_*``).
- :func:`export_archive` / :func:`import_archive`: one checksummed (with ``archive_key``:
  signed) file with every schema and its metadata; import refuses a damaged, oversized or
  naively edited file, and any edit when the archive is signed.
- :func:`load_packages`: the FHIR packages named by paths or ``name#version`` specs.
"""

from ._export import ARCHIVE_FORMAT, ArchiveSummary, export_archive, import_archive
from ._schema_metadata import SchemaMetadata, schema_key, split_canonical
from ._schema_store import ConversionReport, Outcome, ProgressCallback, SchemaStore, StoreStats
from ._schema_tiers import (
    DiskSchemaStorage,
    MemorySchemaStorage,
    RedisSchemaStorage,
    SchemaStorage,
    TieredSchemaStorage,
)
from ._settings import DEFAULT_DISK_CACHE_DIR, STRATEGIES, StorageSettings
from ._sources import load_packages
from ._stats import read_persisted_stats

__all__ = [
    "ARCHIVE_FORMAT",
    "DEFAULT_DISK_CACHE_DIR",
    "STRATEGIES",
    "ArchiveSummary",
    "ConversionReport",
    "DiskSchemaStorage",
    "MemorySchemaStorage",
    "Outcome",
    "ProgressCallback",
    "RedisSchemaStorage",
    "SchemaMetadata",
    "SchemaStorage",
    "SchemaStore",
    "StorageSettings",
    "StoreStats",
    "TieredSchemaStorage",
    "export_archive",
    "import_archive",
    "load_packages",
    "read_persisted_stats",
    "schema_key",
    "split_canonical",
]
