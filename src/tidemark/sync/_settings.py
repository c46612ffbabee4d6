"""The ``[sync]`` settings section."""

from __future__ import annotations

from dataclasses import dataclass

from ._stamps import DEFAULT_MAX_CLOCK_SKEW


@dataclass(frozen=True)
class SyncSettings:
    """Timing and limits of an orchestrator (all durations in seconds).

    Read from a settings file with ``Settings.load().section("sync", SyncSettings)``
    (``[sync] cloud_interval = "10m"``, or ``TIDEMARK_SYNC_CLOUD_INTERVAL=10m``).
    """

    #: Period of the store -> local sync.
    store_interval: float = 2.0
    #: Period of the local -> cloud sync (and of store -> cloud without a local tier).
    cloud_interval: float = 300.0
    #: First retry delay after a transient failure; doubles per attempt.
    retry_base: float = 1.0
    #: Longest retry delay.
    retry_max: float = 300.0
    #: Age after which tombstones every tier holds are purged.
    tombstone_retention: float = 90 * 86400.0
    #: Period of the tombstone purge.
    purge_interval: float = 6 * 3600.0
    #: Keys read, merged and written per step of a sync.
    batch_size: int = 256
    #: Run every sync once right after ``DataOrchestrator.load``.
    initial_sync: bool = True
    #: How far ahead of the local clock another replica's stamp may be; a version stamped
    #: later is quarantined instead of winning (the sync server refuses it with 400).
    max_clock_skew: float = DEFAULT_MAX_CLOCK_SKEW

    def __post_init__(self) -> None:
        for name in (
            "store_interval",
            "cloud_interval",
            "retry_base",
            "retry_max",
            "tombstone_retention",
            "purge_interval",
            "max_clock_skew",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.retry_max < self.retry_base:
            raise ValueError("retry_max must not be below retry_base")
