"""Bounded, expiring caches of "type" entities (LocationType, ObservationType...) by natural key.

A cache holds detached snapshots of committed rows and hands each session its own copy through
``Session.merge(load=False)``, which costs no SQL. Rows a session creates are published only when
its transaction commits, so a rollback can never leave the cache pointing at a row that does not
exist.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

from sqlalchemy import event, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached

from tidemark.cache import CacheStats, MemoryCache
from tidemark.core import SYSTEM_CLOCK, Clock, ConfigurationError, Counters, Settings, get_logger

from ._lookup import find_by_key

E = TypeVar("E")

_log = get_logger("tracking")

#: The settings section of the defaults for every type cache (``[type_cache]``).
SECTION = "type_cache"


@dataclass(frozen=True, slots=True)
class TypeCacheSettings:
    """Configuration of type caches: ``[type_cache]`` in the settings file,
    ``TIDEMARK_TYPE_CACHE_<FIELD>`` in the environment.

    * ``enabled``: false turns every type cache into a pass-through that stores nothing.
    * ``maximum_size``: entries per cache (least recently used evicted first), at least 1.
    * ``expire_after_write``: seconds (or ``10m``, ``1h``...) an entry lives after it is loaded;
      0 = never.
    * ``expire_after_access``: seconds an entry lives after its last read; 0 = never.
    * ``invalidate``: what an update through :meth:`TypeCache.update` drops: ``"entry"`` (the
      entity's keys) or ``"all"`` (the whole cache, for types whose changes affect others).

    One cache can override any field in ``[type_cache_<name>]`` /
    ``TIDEMARK_TYPE_CACHE_<NAME>_<FIELD>`` (see :meth:`for_cache`).
    """

    enabled: bool = True
    maximum_size: int = 10_000
    expire_after_write: float = 600.0
    expire_after_access: float = 0.0
    invalidate: Literal["entry", "all"] = "entry"

    def __post_init__(self) -> None:
        if self.maximum_size < 1:
            raise ValueError(
                f"maximum_size must be at least 1, got {self.maximum_size} (use enabled = false)"
            )
        for name in ("expire_after_write", "expire_after_access"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative")
        if self.invalidate not in ("entry", "all"):
            raise ValueError(f"invalidate must be 'entry' or 'all', got {self.invalidate!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> TypeCacheSettings:
        """The ``[type_cache]`` defaults. Raises :class:`ConfigurationError` on bad values."""
        return settings.section(SECTION, cls)

    def for_cache(self, settings: Settings, name: str) -> TypeCacheSettings:
        """These settings with the overrides of cache ``name`` applied.

        The cache is enabled only when both these settings and its own say so, so one
        ``enabled = false`` in ``[type_cache]`` turns every cache off.
        """
        override = settings.section(f"{SECTION}_{name}", _TypeCacheOverride)
        changes = {
            field.name: getattr(override, field.name)
            for field in dataclasses.fields(override)
            if getattr(override, field.name) is not None
        }
        try:
            merged = dataclasses.replace(self, **changes)
        except ValueError as exc:
            raise ConfigurationError(f"invalid [{SECTION}_{name}] settings: {exc}") from exc
        if not self.enabled:
            merged = dataclasses.replace(merged, enabled=False)
        return merged


@dataclass(frozen=True, slots=True)
class _TypeCacheOverride:
    # Every field None = "inherit from [type_cache]".
    enabled: bool | None = None
    maximum_size: int | None = None
    expire_after_write: float | None = None
    expire_after_access: float | None = None
    invalidate: str | None = None


@dataclass(frozen=True, slots=True)
class TypeCacheStats:
    """Counters of one type cache: the memory tier's plus database ``queries``, ``created`` and
    ``updated`` rows (a disabled cache counts only those three)."""

    name: str
    enabled: bool
    hits: int
    misses: int
    evictions: int
    expirations: int
    invalidations: int
    entries: int
    queries: int
    created: int
    updated: int

    @property
    def hit_rate(self) -> float:
        """hits / (hits + misses), 0.0 before the first lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Every field plus ``hit_rate``, for JSON and tables."""
        values = dataclasses.asdict(self)
        values["hit_rate"] = round(self.hit_rate, 6)
        return values


class _Store(Protocol):
    def get(self, key: Hashable, default: Any = None) -> Any: ...
    def set(self, key: Hashable, value: Any) -> bool: ...
    def invalidate(self, key: Hashable) -> bool: ...
    def clear(self) -> int: ...
    def stats(self) -> CacheStats: ...


class _NoStore:
    """The disabled tier: remembers nothing, so every lookup is a query."""

    _EMPTY = CacheStats(0, 0, 0, 0, 0, 0, 0, 0, 0)

    def get(self, key: Hashable, default: Any = None) -> Any:
        return default

    def set(self, key: Hashable, value: Any) -> bool:
        return False

    def invalidate(self, key: Hashable) -> bool:
        return False

    def clear(self) -> int:
        return 0

    def stats(self) -> CacheStats:
        return self._EMPTY


_MISSING: Any = object()
_IN_CHUNK = 500  # keys per IN (...) list: far below every engine's parameter limit
_cache_serial = itertools.count(1)


class _SessionLedger:
    """What one session did to (and learned from) one cache in its open transaction."""

    __slots__ = ("absent", "created", "invalidated")

    def __init__(self) -> None:
        self.created: dict[Hashable, tuple[Any, Any]] = {}  # key -> (live entity, snapshot)
        self.invalidated: set[Hashable] = set()
        self.absent: set[Hashable] = set()  # keys get_many found no row for


class TypeCache(Generic[E]):
    """A cache of one type entity ``model``, keyed by the natural key ``key`` (attribute names).

    Keys passed to the methods are a scalar for a one-attribute natural key, a tuple otherwise.
    Entities returned belong to the caller's session. Thread-safe; one instance is meant to be
    shared by every session of a process. Only changes made through :meth:`update` (or
    announced with :meth:`invalidate`) are seen before expiry: another process's changes show
    after ``expire_after_write``.
    """

    def __init__(
        self,
        model: type[E],
        key: str | Sequence[str],
        *,
        settings: TypeCacheSettings | None = None,
        name: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.model = model
        self.key_attributes: tuple[str, ...] = (key,) if isinstance(key, str) else tuple(key)
        if not self.key_attributes:
            raise ValueError("a type cache needs at least one key attribute")
        mapper = inspect(model)
        columns = {attr.key for attr in mapper.column_attrs}
        unknown = [a for a in self.key_attributes if a not in columns]
        if unknown:
            raise ValueError(f"{model.__name__} has no column attribute(s) {unknown}")
        self._column_keys = tuple(attr.key for attr in mapper.column_attrs)
        self.name = name or str(getattr(model, "__tablename__", model.__name__))
        self.settings = settings or TypeCacheSettings()
        self._store: _Store
        if self.settings.enabled:
            self._store = MemoryCache(
                self.settings.maximum_size,
                ttl=self.settings.expire_after_write or None,
                expire_after_access=self.settings.expire_after_access or None,
                clock=clock,
            )
        else:
            self._store = _NoStore()
        self.counters = Counters("queries", "created", "updated")
        # A key no other cache can share, even one created later at the same address.
        self._ledger_key = ("tidemark.tracking.type_cache", next(_cache_serial))

    @property
    def enabled(self) -> bool:
        """False when the cache is a pass-through (``enabled = false``)."""
        return self.settings.enabled

    def key_of(self, entity: E) -> Hashable:
        """The cache key of ``entity`` (its natural key attribute values)."""
        if len(self.key_attributes) == 1:
            return getattr(entity, self.key_attributes[0])  # type: ignore[no-any-return]
        return tuple(getattr(entity, a) for a in self.key_attributes)

    def _criteria(self, key: Hashable) -> dict[str, Any]:
        if len(self.key_attributes) == 1:
            return {self.key_attributes[0]: key}
        if not isinstance(key, tuple) or len(key) != len(self.key_attributes):
            raise ValueError(f"{self.name} keys are tuples of {self.key_attributes}, got {key!r}")
        return dict(zip(self.key_attributes, key, strict=True))

    # -- reading ---------------------------------------------------------------------------
    def get(self, session: Session, key: Hashable) -> E | None:
        """The entity with natural key ``key`` in ``session``, or None when there is none.

        A hit costs no SQL; a miss runs one SELECT and caches what it finds (absence is not cached).
        """
        snapshot = self._store.get(key, _MISSING)
        if snapshot is not _MISSING:
            return session.merge(snapshot, load=False)  # type: ignore[no-any-return]
        criteria = self._criteria(key)
        if self.enabled:
            ledger = self._find_ledger(session)
            if ledger is not None:
                if key in ledger.created:
                    return ledger.created[key][0]  # type: ignore[no-any-return]
                if key in ledger.absent:
                    return None
        self.counters.increment("queries")
        entity = find_by_key(session, self.model, criteria)
        if entity is not None and self.enabled:
            self._store.set(key, self._snapshot(entity))
        return entity

    def get_many(self, session: Session, keys: Iterable[Hashable]) -> dict[Hashable, E]:
        """The entities with natural keys ``keys`` in ``session``, by key (absent keys are left
        out).

        Hits cost no SQL; the misses of a one-attribute key are read with one query per 500
        keys and cached. The session's transaction remembers the keys found absent, so a
        :meth:`get` or :meth:`get_or_create` of them in it costs no query.
        """
        found: dict[Hashable, E] = {}
        missing: list[Hashable] = []
        for key in dict.fromkeys(keys):
            snapshot = self._store.get(key, _MISSING)
            if snapshot is not _MISSING:
                found[key] = session.merge(snapshot, load=False)
            else:
                missing.append(key)
        if len(self.key_attributes) > 1:
            for key in missing:
                entity = self.get(session, key)
                if entity is not None:
                    found[key] = entity
            return found
        column = getattr(self.model, self.key_attributes[0])
        ledger = self._ledger(session) if self.enabled else None
        for start in range(0, len(missing), _IN_CHUNK):
            chunk = missing[start : start + _IN_CHUNK]
            if ledger is not None:
                chunk = [key for key in chunk if key not in ledger.created]
            if not chunk:
                continue
            self.counters.increment("queries")
            loaded = {
                self.key_of(entity): entity
                for entity in session.scalars(select(self.model).where(column.in_(chunk)))
            }
            for key in chunk:
                entity = loaded.get(key)
                if entity is None:
                    if ledger is not None:
                        ledger.absent.add(key)
                    continue
                found[key] = entity
                if self.enabled:
                    self._store.set(key, self._snapshot(entity))
        return found

    def get_or_create(
        self,
        session: Session,
        key: Hashable,
        defaults: Mapping[str, Any] | None = None,
        *,
        factory: Callable[[], E] | None = None,
        flush: bool = True,
    ) -> tuple[E, bool]:
        """``(entity, created)``: the entity with natural key ``key``, created (added and
        flushed) when missing.

        A new entity is ``factory()`` when given, else ``model(**key, **defaults)``. It is cached
        only once the session's transaction commits. On PostgreSQL a concurrent creator of the
        same key is resolved inside a SAVEPOINT (the other row is read instead); the natural key
        must be unique in the database for that to work. ``flush=False`` only adds the new
        entity (give it its primary key yourself, e.g. in ``factory``): many creations then
        share one flush, and a concurrent creator makes that flush fail instead.
        """
        entity = self.get(session, key)
        if entity is not None:
            return entity, False
        criteria = self._criteria(key)
        entity = factory() if factory is not None else self.model(**criteria, **(defaults or {}))
        if self.key_of(entity) != key:
            raise ValueError(f"{self.name} factory built key {self.key_of(entity)!r}, not {key!r}")
        if not flush:
            session.add(entity)
        elif session.get_bind().dialect.name == "sqlite":
            # One writer at a time: no concurrent creator can slip in between SELECT and INSERT.
            session.add(entity)
            session.flush()
        else:
            try:
                with session.begin_nested():
                    session.add(entity)
                    session.flush()
            except IntegrityError:
                self.counters.increment("queries")
                existing = find_by_key(session, self.model, criteria)
                if existing is None:
                    raise
                _log.info("type entity created concurrently", cache=self.name, key=repr(key))
                return existing, False
        self.counters.increment("created")
        if self.enabled:
            ledger = self._ledger(session)
            ledger.absent.discard(key)
            ledger.created[key] = (entity, self._snapshot(entity))
        _log.debug("type entity created", cache=self.name, key=repr(key))
        return entity, True

    # -- changing --------------------------------------------------------------------------
    def update(self, session: Session, entity: E, changes: Mapping[str, Any]) -> bool:
        """Set ``changes`` on ``entity`` (attributes whose value differs) and invalidate.

        When anything changed, the entity's old and new keys (or the whole cache, with
        ``invalidate = "all"``) are dropped now and again when the session commits, so a
        reader that reloaded the old row in between cannot keep it. Returns True when changed.
        """
        unknown = [name for name in changes if name not in self._column_keys]
        if unknown:
            raise AttributeError(f"{self.model.__name__} has no column attribute(s) {unknown}")
        old_key = self.key_of(entity)
        changed = False
        for name, value in changes.items():
            if getattr(entity, name) != value:
                setattr(entity, name, value)
                changed = True
        if not changed:
            return False
        self.counters.increment("updated")
        keys = {old_key, self.key_of(entity)}
        self._drop(keys)
        if self.enabled:
            ledger = self._ledger(session)
            ledger.invalidated.update(keys)
            for key in keys:
                ledger.created.pop(key, None)
        return True

    def invalidate(self, key: Hashable) -> bool:
        """Drop the entry for ``key`` now; True if it was cached."""
        return self._store.invalidate(key)

    def clear(self) -> int:
        """Drop every entry; returns how many."""
        return self._store.clear()

    def _drop(self, keys: set[Hashable]) -> None:
        if self.settings.invalidate == "all":
            dropped = self._store.clear()
        else:
            dropped = sum(self._store.invalidate(key) for key in keys)
        if dropped and _log.isEnabledFor(logging.DEBUG):
            _log.debug("type cache invalidated", cache=self.name, entries=dropped)

    # -- counters --------------------------------------------------------------------------
    def stats(self) -> TypeCacheStats:
        """A snapshot of the counters."""
        memory = self._store.stats()
        counters = self.counters.snapshot()
        return TypeCacheStats(
            name=self.name,
            enabled=self.enabled,
            hits=memory.hits,
            misses=memory.misses,
            evictions=memory.evictions,
            expirations=memory.expirations,
            invalidations=memory.invalidations,
            entries=memory.entries,
            queries=counters["queries"],
            created=counters["created"],
            updated=counters["updated"],
        )

    # -- snapshots and transactions ---------------------------------------------------------
    def _snapshot(self, entity: E) -> E:
        # A detached copy holding the loaded column values: merge(load=False) turns it into a
        # session's instance without SQL. Unloaded attributes stay expired and load on access.
        loaded = inspect(entity).dict
        copy = inspect(self.model).class_manager.new_instance()
        for name in self._column_keys:
            if name in loaded:
                setattr(copy, name, loaded[name])
        make_transient_to_detached(copy)
        return copy  # type: ignore[no-any-return]

    def _find_ledger(self, session: Session) -> _SessionLedger | None:
        ledger: _SessionLedger | None = session.info.get(self._ledger_key)
        return ledger

    def _ledger(self, session: Session) -> _SessionLedger:
        ledger = self._find_ledger(session)
        if ledger is None:
            ledger = session.info[self._ledger_key] = _SessionLedger()
            event.listen(session, "after_commit", self._after_commit)
            event.listen(session, "after_rollback", self._after_rollback)
        return ledger

    def _after_commit(self, session: Session) -> None:
        if session.in_nested_transaction():
            # SQLAlchemy also fires after_commit when a SAVEPOINT is released (get_or_create
            # releases one on PostgreSQL): the transaction around it can still roll back.
            return
        ledger = self._find_ledger(session)
        if ledger is None:
            return
        self._drop(ledger.invalidated)
        for key, (entity, snapshot) in ledger.created.items():
            # A SAVEPOINT rolled back inside the transaction leaves the entity without identity.
            if inspect(entity).key is not None:
                self._store.set(key, snapshot)
        ledger.created.clear()
        ledger.invalidated.clear()
        ledger.absent.clear()

    def _after_rollback(self, session: Session) -> None:
        ledger = self._find_ledger(session)
        if ledger is None:
            return
        # Fires for the whole transaction and for each SAVEPOINT: keep rows that still exist.
        ledger.created = {
            key: pair for key, pair in ledger.created.items() if inspect(pair[0]).key is not None
        }
        ledger.absent.clear()
        self._drop(ledger.invalidated)


class TypeCaches:
    """The type caches of one application, configured from :class:`~tidemark.core.Settings`.

    ``register`` builds each cache with ``[type_cache]`` and its ``[type_cache_<name>]``
    overrides; reading settings happens there, once, so a bad value fails at start-up.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        defaults: TypeCacheSettings | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._settings = settings if settings is not None else Settings()
        self.defaults = defaults or TypeCacheSettings.from_settings(self._settings)
        self._clock = clock
        self._caches: dict[str, TypeCache[Any]] = {}

    def register(
        self, model: type[E], key: str | Sequence[str], *, name: str | None = None
    ) -> TypeCache[E]:
        """Create the cache of ``model`` keyed by ``key``; ``name`` defaults to the table name.

        Raises ``ValueError`` when the name is taken and :class:`ConfigurationError` on bad
        settings for it.
        """
        cache_name = name or str(getattr(model, "__tablename__", model.__name__))
        if cache_name in self._caches:
            raise ValueError(f"a type cache named {cache_name!r} is already registered")
        settings = self.defaults.for_cache(self._settings, cache_name)
        cache = TypeCache(model, key, settings=settings, name=cache_name, clock=self._clock)
        self._caches[cache_name] = cache
        return cache

    def __contains__(self, name: object) -> bool:
        return name in self._caches

    def __getitem__(self, name: str) -> TypeCache[Any]:
        return self._caches[name]

    def __iter__(self) -> Iterator[TypeCache[Any]]:
        return iter(list(self._caches.values()))

    def __len__(self) -> int:
        return len(self._caches)

    def stats(self) -> dict[str, TypeCacheStats]:
        """The counters of every cache by name."""
        return {name: cache.stats() for name, cache in self._caches.items()}

    def clear(self) -> int:
        """Drop every entry of every cache; returns how many."""
        return sum(cache.clear() for cache in self._caches.values())
