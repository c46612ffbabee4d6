"""tidemark: keep data, and the caches and replicas built from it, in step with their sources.

Each capability is a subpackage with a small public API re-exported from its ``__init__``:
``tidemark.core``, ``tidemark.store``, ``tidemark.api``, ``tidemark.mappings``,
``tidemark.schemas``, ``tidemark.cache``, ``tidemark.sync``, ``tidemark.tracking``.
"""

__version__ = "0.1.0"
