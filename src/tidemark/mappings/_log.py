"""The mapping provider's logger, and warnings given once per condition instead of once per tick."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from tidemark.core import ComponentLogger, get_logger

log = get_logger("mappings")


class WarnOnce:
    """Log a warning the first time a key is seen; ``forget`` lets it be warned again."""

    def __init__(self, logger: ComponentLogger = log) -> None:
        self._log = logger
        self._seen: set[Hashable] = set()

    def warn(self, once: Hashable, message: str, /, **fields: Any) -> None:
        if once not in self._seen:
            self._seen.add(once)
            self._log.warning(message, **fields)

    def forget(self, once: Hashable) -> None:
        self._seen.discard(once)
