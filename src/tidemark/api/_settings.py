"""Server settings: the ``[server]`` table of the settings file, env ``TIDEMARK_SERVER_*``, CLI."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from tidemark.core import ConfigurationError
from tidemark.sync import DEFAULT_MAX_CLOCK_SKEW

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """True for ``127.0.0.0/8``, ``::1`` and localhost names."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_clients(entries: list[str]) -> dict[str, str]:
    """``["key:secret", ...]`` → ``{key: secret}``; raises :class:`ConfigurationError` when malformed."""
    clients: dict[str, str] = {}
    for entry in entries:
        key, sep, secret = entry.partition(":")
        if not sep or not key.strip() or not secret:
            raise ConfigurationError(f"a client must be KEY:SECRET, got {entry.split(':')[0]!r}:…")
        if key in clients:
            raise ConfigurationError(f"client {key!r} is configured twice")
        clients[key.strip()] = secret
    return clients


@dataclass
class ServerSettings:
    """How ``tidemark serve`` runs. Defaults are safe: loopback only, SQLite file, sample model.

    Durations (``token_lifetime``, ``retain_changes``, ``retention_interval``) are seconds or
    strings such as ``90d`` / ``1h``; ``retain_changes=None`` keeps every change. Without a
    ``retention_interval`` the purge pass runs as often as the retention period (at least every
    second, at most every minute): see :attr:`retention_pass_interval`.
    ``fhir_packages`` (paths or ``name#version``) turns on FHIRSchema validation of ``/fhir``
    writes; the schema caches follow the ``[storage]`` settings. ``sync_max_clock_skew``: how
    far ahead of the server clock a sync blob's stamps may be (400 beyond). ``migrate_model``:
    open a database whose recorded Ed-Fi model differs from ``api_schema`` and record the new
    one (without it the server refuses to start).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    db: str = "tidemark.db"
    api_schema: str | None = None
    max_body_bytes: int = 4 * 1024 * 1024
    default_page_size: int = 25
    max_page_size: int = 500
    clients: list[str] = field(default_factory=list)
    token_secret: str | None = None
    token_lifetime: float = 3600.0
    retain_changes: float | None = None
    retention_interval: float | None = None
    workers: int = 1
    fhir_packages: list[str] = field(default_factory=list)
    log_json: bool = True
    log_level: str = "INFO"
    sync_max_clock_skew: float = DEFAULT_MAX_CLOCK_SKEW
    migrate_model: bool = False

    def check(self) -> None:
        """Refuse unsafe or impossible settings (raises :class:`ConfigurationError`)."""
        if not is_loopback(self.host) and not self.clients:
            raise ConfigurationError(
                f"refusing to listen on non-loopback address {self.host!r} without credentials: "
                "configure at least one client (--client KEY:SECRET) or bind 127.0.0.1"
            )
        if not 0 <= self.port <= 65535:
            raise ConfigurationError(f"invalid port {self.port}")
        if self.max_body_bytes <= 0:
            raise ConfigurationError("max_body_bytes must be positive")
        if not 1 <= self.default_page_size <= self.max_page_size:
            raise ConfigurationError("default_page_size must be between 1 and max_page_size")
        if self.retain_changes is not None and self.retain_changes <= 0:
            raise ConfigurationError("retain_changes must be a positive duration")
        if self.retention_interval is not None and self.retention_interval <= 0:
            raise ConfigurationError("retention_interval must be positive")
        if self.sync_max_clock_skew <= 0:
            raise ConfigurationError("sync_max_clock_skew must be a positive duration")
        if self.workers < 1:
            raise ConfigurationError("workers must be at least 1")
        if self.workers > 1 and not self.db.startswith(("postgresql://", "postgres://")):
            raise ConfigurationError(
                "--workers needs PostgreSQL: SQLite runs in one server process (use --db postgresql://…)"
            )
        parse_clients(self.clients)

    @property
    def retention_pass_interval(self) -> float:
        """Seconds between purge passes: ``retention_interval`` when set, otherwise the retention
        period bounded to [1 s, 60 s], so a short retention is honoured promptly."""
        if self.retention_interval is not None:
            return self.retention_interval
        return min(max(self.retain_changes or 60.0, 1.0), 60.0)
