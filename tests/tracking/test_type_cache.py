"""Type-entity caches: bounds, expiry on an injected clock, invalidation, disabled mode, settings."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from tidemark.tracking import TypeCache, TypeCacheSettings

from .conftest import SqlLog
from .models import DeviceKind

pytestmark = pytest.mark.usefixtures("model_engine")


def make_cache(clock, **settings) -> TypeCache[DeviceKind]:
    return TypeCache(DeviceKind, "code", settings=TypeCacheSettings(**settings), clock=clock)


def must_get(cache: TypeCache[DeviceKind], session: Session, code: str) -> DeviceKind:
    kind = cache.get(session, code)
    assert kind is not None
    return kind


def seed(engine, *codes: str) -> None:
    with Session(engine) as session, session.begin():
        session.add_all(DeviceKind(code=code, label=f"{code} label") for code in codes)


def lookup(engine, cache, code):
    with Session(engine) as session:
        kind = cache.get(session, code)
        return None if kind is None else (kind.id, kind.code, kind.label)


def test_a_hit_returns_the_session_s_own_instance_without_sql(engine, clock, sql_log: SqlLog):
    seed(engine, "PUMP")
    cache = make_cache(clock)
    assert lookup(engine, cache, "PUMP")[1:] == ("PUMP", "PUMP label")
    sql_log.clear()
    with Session(engine) as session:
        kind = must_get(cache, session, "PUMP")
        assert kind in session
        assert (kind.code, kind.label) == ("PUMP", "PUMP label")
    assert sql_log.selects_from("device_kind") == 0
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.queries, stats.entries) == (1, 1, 1, 1)


def test_absent_rows_are_not_cached(engine, clock):
    cache = make_cache(clock)
    assert lookup(engine, cache, "NONE") is None
    seed(engine, "NONE")
    assert lookup(engine, cache, "NONE") is not None
    assert cache.stats().queries == 2


def test_maximum_size_evicts_the_least_recently_used_entry(engine, clock, sql_log: SqlLog):
    seed(engine, "A", "B", "C")
    cache = make_cache(clock, maximum_size=2)
    for code in ("A", "B", "A", "C"):  # A is used again before C arrives: B is the LRU
        lookup(engine, cache, code)
    assert cache.stats().evictions == 1
    assert cache.stats().entries == 2
    sql_log.clear()
    lookup(engine, cache, "A")
    lookup(engine, cache, "C")
    assert sql_log.selects_from("device_kind") == 0
    lookup(engine, cache, "B")
    assert sql_log.selects_from("device_kind") == 1


def test_entries_expire_after_write_on_the_injected_clock(engine, clock):
    seed(engine, "A")
    cache = make_cache(clock, expire_after_write=60)
    lookup(engine, cache, "A")
    clock.advance(59)
    lookup(engine, cache, "A")
    assert cache.stats().queries == 1
    clock.advance(2)
    lookup(engine, cache, "A")
    stats = cache.stats()
    assert (stats.queries, stats.expirations) == (2, 1)


def test_expire_after_access_keeps_read_entries_and_drops_idle_ones(engine, clock):
    seed(engine, "A")
    cache = make_cache(clock, expire_after_write=0, expire_after_access=10)
    lookup(engine, cache, "A")
    for _ in range(5):  # read every 8 s: 40 s in all, never idle for 10 s
        clock.advance(8)
        lookup(engine, cache, "A")
    assert cache.stats().queries == 1
    clock.advance(11)
    lookup(engine, cache, "A")
    assert cache.stats().queries == 2


def test_update_invalidates_the_entry_and_readers_see_the_new_value(engine, clock):
    seed(engine, "A", "B")
    cache = make_cache(clock)
    lookup(engine, cache, "A")
    lookup(engine, cache, "B")
    with Session(engine) as session, session.begin():
        kind = must_get(cache, session, "A")
        assert cache.update(session, kind, {"label": "renamed"})
        assert not cache.update(session, kind, {"label": "renamed"})
    assert lookup(engine, cache, "A")[2] == "renamed"
    stats = cache.stats()
    assert stats.queries == 3  # A, B, then A again after its invalidation; B stayed cached
    assert stats.updated == 1


def test_update_of_the_natural_key_drops_old_and_new_keys(engine, clock):
    seed(engine, "OLD")
    cache = make_cache(clock)
    lookup(engine, cache, "OLD")
    with Session(engine) as session, session.begin():
        kind = must_get(cache, session, "OLD")
        cache.update(session, kind, {"code": "NEW"})
    assert lookup(engine, cache, "OLD") is None
    assert lookup(engine, cache, "NEW")[1] == "NEW"


def test_update_with_invalidate_all_clears_the_whole_cache(engine, clock):
    seed(engine, "A", "B")
    cache = make_cache(clock, invalidate="all")
    lookup(engine, cache, "A")
    lookup(engine, cache, "B")
    with Session(engine) as session, session.begin():
        cache.update(session, must_get(cache, session, "A"), {"label": "x"})
    assert cache.stats().entries == 0


def test_a_stale_reload_during_an_update_is_dropped_when_the_update_commits(engine, clock):
    seed(engine, "A")
    cache = make_cache(clock)
    with Session(engine) as writer:
        writer.begin()
        cache.update(writer, must_get(cache, writer, "A"), {"label": "new"})
        # Another session reloads the committed (old) row while the update is still open.
        assert lookup(engine, cache, "A")[2] == "A label"
        writer.commit()
    assert lookup(engine, cache, "A")[2] == "new"


def test_created_rows_are_cached_only_once_committed(engine, clock, sql_log: SqlLog):
    cache = make_cache(clock)
    with Session(engine) as session, session.begin():
        kind, created = cache.get_or_create(session, "NEW", {"label": "fresh"})
        assert created and kind.id is not None
        again, created_again = cache.get_or_create(session, "NEW")
        assert again is kind and not created_again
        assert cache.stats().entries == 0
    assert cache.stats().entries == 1
    sql_log.clear()
    assert lookup(engine, cache, "NEW")[1:] == ("NEW", "fresh")
    assert sql_log.selects_from("device_kind") == 0


def test_a_rolled_back_creation_never_reaches_the_cache(engine, clock):
    cache = make_cache(clock)
    with Session(engine) as session:
        session.begin()
        cache.get_or_create(session, "GHOST")
        session.rollback()
    assert cache.stats().entries == 0
    assert lookup(engine, cache, "GHOST") is None


def test_a_released_savepoint_publishes_nothing_before_the_transaction_commits(engine, clock):
    # On PostgreSQL each creation runs in a SAVEPOINT, and SQLAlchemy reports its release as a
    # commit: the first creation must still wait for the real commit.
    cache = make_cache(clock)
    with Session(engine) as session:
        session.begin()
        cache.get_or_create(session, "FIRST")
        cache.get_or_create(session, "SECOND")
        with session.begin_nested():
            pass
        assert cache.stats().entries == 0
        session.rollback()
    assert cache.stats().entries == 0
    assert lookup(engine, cache, "FIRST") is None


def test_a_creation_inside_a_rolled_back_savepoint_is_not_cached(engine, clock):
    cache = make_cache(clock)
    with Session(engine) as session, session.begin():
        cache.get_or_create(session, "KEPT")
        savepoint = session.begin_nested()
        cache.get_or_create(session, "GHOST")
        savepoint.rollback()
    assert lookup(engine, cache, "KEPT") is not None
    assert lookup(engine, cache, "GHOST") is None
    assert cache.stats().entries == 1


def test_disabled_cache_is_a_pass_through_that_stores_nothing(engine, clock, sql_log: SqlLog):
    seed(engine, "A")
    cache = make_cache(clock, enabled=False)
    sql_log.clear()
    for _ in range(3):
        assert lookup(engine, cache, "A")[1] == "A"
    with Session(engine) as session, session.begin():
        kind, created = cache.get_or_create(session, "B")
        assert created
        cache.update(session, kind, {"label": "b"})
        assert session.info == {}  # no per-session bookkeeping, no listeners
    stats = cache.stats()
    assert not stats.enabled
    assert (stats.hits, stats.entries, stats.queries) == (0, 0, 4)
    assert sql_log.selects_from("device_kind") == 4


def test_composite_keys_and_factories(engine, clock):
    cache = TypeCache(DeviceKind, ("code", "label"), settings=TypeCacheSettings(), clock=clock)
    with Session(engine) as session, session.begin():
        kind, created = cache.get_or_create(
            session, ("X", "x"), factory=lambda: DeviceKind(code="X", label="x")
        )
        assert created and cache.key_of(kind) == ("X", "x")
        with pytest.raises(ValueError, match="factory built key"):
            cache.get_or_create(
                session, ("Y", "y"), factory=lambda: DeviceKind(code="Z", label="z")
            )
        with pytest.raises(ValueError, match="tuples"):
            must_get(cache, session, "X")
        session.rollback()


def test_unknown_attributes_are_refused(engine, clock):
    with pytest.raises(ValueError, match="no column"):
        TypeCache(DeviceKind, "nope")
    cache = make_cache(clock)
    seed(engine, "A")
    with Session(engine) as session, pytest.raises(AttributeError, match="lable"):
        cache.update(session, must_get(cache, session, "A"), {"lable": "typo"})


def test_an_outside_change_shows_after_expiry(engine, clock):
    seed(engine, "A")
    cache = make_cache(clock, expire_after_write=30)
    lookup(engine, cache, "A")
    with Session(engine) as session, session.begin():
        session.execute(update(DeviceKind).values(label="outside"))
    assert lookup(engine, cache, "A")[2] == "A label"
    clock.advance(31)
    assert lookup(engine, cache, "A")[2] == "outside"


def test_get_many_reads_the_misses_with_one_query_and_caches_them(engine, clock, sql_log: SqlLog):
    seed(engine, "A", "B", "C")
    cache = make_cache(clock)
    lookup(engine, cache, "A")  # a hit from now on
    sql_log.clear()
    with Session(engine) as session:
        found = cache.get_many(session, ["A", "B", "C", "ZZ", "B"])
        assert set(found) == {"A", "B", "C"}
        assert all(found[code].code == code for code in found)
    assert sql_log.selects_from("device_kind") == 1
    assert cache.stats().entries == 3
    sql_log.clear()
    assert lookup(engine, cache, "C") is not None
    assert sql_log.selects_from("device_kind") == 0


def test_keys_get_many_found_absent_cost_no_query_until_the_transaction_ends(
    engine, clock, sql_log: SqlLog
):
    cache = make_cache(clock)
    with Session(engine) as session, session.begin():
        assert cache.get_many(session, ["NEW"]) == {}
        sql_log.clear()
        assert cache.get(session, "NEW") is None
        kind, created = cache.get_or_create(session, "NEW", {"label": "new"})
        assert created and sql_log.selects_from("device_kind") == 0
        assert cache.get(session, "NEW") is kind
    sql_log.clear()
    with Session(engine) as session:
        assert cache.get_many(session, ["NEW", "OTHER"])["NEW"].label == "new"
        assert cache.get(session, "OTHER") is None
    assert sql_log.selects_from("device_kind") == 1  # the absence of OTHER: per transaction
    with Session(engine) as session:
        assert cache.get(session, "OTHER") is None
    assert sql_log.selects_from("device_kind") == 2


def test_a_creation_without_flush_waits_for_the_callers_flush(engine, clock, sql_log: SqlLog):
    cache = make_cache(clock)
    with Session(engine) as session, session.begin():
        _kind, created = cache.get_or_create(
            session, "LATE", factory=lambda: DeviceKind(id=77, code="LATE"), flush=False
        )
        assert created and not sql_log.writes()
    assert lookup(engine, cache, "LATE") == (77, "LATE", None)
