"""Type-cache configuration from settings, and concurrent creation on PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from tests.support import wait_until
from tidemark.core import ConfigurationError, Settings
from tidemark.tracking import TypeCache, TypeCaches, TypeCacheSettings

from .conftest import make_engine
from .models import DeviceKind, ModelBase


def insert_is_waiting(engine) -> bool:
    with engine.connect() as connection:
        waiting = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'INSERT INTO device_kind%' AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    return int(waiting) > 0


@pytest.mark.postgres
def test_a_concurrent_creator_of_the_same_key_reads_the_winner(request, tmp_path):
    engine = make_engine("postgresql", request, tmp_path)
    ModelBase.metadata.create_all(engine)
    cache = TypeCache(DeviceKind, "code")
    loser_result: list[tuple[str | None, bool]] = []
    loser_started = threading.Event()
    try:
        with Session(engine) as winner:
            winner.begin()
            winner.add(DeviceKind(code="RACE", label="winner"))
            winner.flush()

            def lose() -> None:
                with Session(engine) as session, session.begin():
                    loser_started.set()
                    kind, created = cache.get_or_create(session, "RACE", {"label": "loser"})
                    loser_result.append((kind.label, created))

            thread = threading.Thread(target=lose)
            thread.start()
            assert loser_started.wait(5)
            # The loser's INSERT waits on the winner's unique index entry until we commit.
            wait_until(
                lambda: insert_is_waiting(engine),
                message="the second creator's INSERT blocks on the unique key",
            )
            winner.commit()
            thread.join(10)
        assert loser_result == [("winner", False)]
        assert cache.stats().queries == 2  # the miss, then the re-read after the conflict
        with Session(engine) as session:
            assert [k.label for k in session.scalars(select(DeviceKind))] == ["winner"]
    finally:
        engine.dispose()


class TestSettings:
    def test_defaults_when_nothing_is_configured(self):
        caches = TypeCaches(Settings({}, env={}))
        cache = caches.register(DeviceKind, "code")
        assert cache.name == "device_kind"
        assert cache.settings == TypeCacheSettings()
        assert cache.enabled

    def test_file_values_and_environment_overrides(self):
        settings = Settings(
            {"type_cache": {"maximum_size": 50, "expire_after_write": "10m"}},
            env={"TIDEMARK_TYPE_CACHE_EXPIRE_AFTER_ACCESS": "90s"},
        )
        cache = TypeCaches(settings).register(DeviceKind, "code")
        assert cache.settings.maximum_size == 50
        assert cache.settings.expire_after_write == 600
        assert cache.settings.expire_after_access == 90

    def test_per_cache_overrides_from_file_and_environment(self):
        settings = Settings(
            {"type_cache": {"maximum_size": 50}, "type_cache_device_kind": {"maximum_size": 5}},
            env={"TIDEMARK_TYPE_CACHE_DEVICE_KIND_INVALIDATE": "all"},
        )
        caches = TypeCaches(settings)
        kinds = caches.register(DeviceKind, "code")
        other = caches.register(DeviceKind, "label", name="by_label")
        assert (kinds.settings.maximum_size, kinds.settings.invalidate) == (5, "all")
        assert (other.settings.maximum_size, other.settings.invalidate) == (50, "entry")

    def test_one_setting_disables_every_cache(self):
        settings = Settings(
            {"type_cache_device_kind": {"enabled": True}},
            env={"TIDEMARK_TYPE_CACHE_ENABLED": "false"},
        )
        caches = TypeCaches(settings)
        assert not caches.register(DeviceKind, "code").enabled
        assert not caches.register(DeviceKind, "label", name="other").enabled
        assert {name: s.enabled for name, s in caches.stats().items()} == {
            "device_kind": False,
            "other": False,
        }

    def test_one_cache_can_be_disabled_alone(self):
        settings = Settings({}, env={"TIDEMARK_TYPE_CACHE_DEVICE_KIND_ENABLED": "0"})
        caches = TypeCaches(settings)
        assert not caches.register(DeviceKind, "code").enabled
        assert caches.register(DeviceKind, "label", name="other").enabled

    @pytest.mark.parametrize(
        ("data", "env", "match"),
        [
            ({"type_cache": {"maximum_size": 0}}, {}, "maximum_size"),
            ({"type_cache": {"maximum_size": "lots"}}, {}, "integer"),
            ({"type_cache": {"expire_after_write": "soon"}}, {}, "duration"),
            ({"type_cache": {"invalidate": "some"}}, {}, "invalidate"),
            ({"type_cache": {"maximum_sise": 3}}, {}, "maximum_sise"),
            ({}, {"TIDEMARK_TYPE_CACHE_DEVICE_KIND_MAXIMUM_SIZE": "-1"}, "maximum_size"),
        ],
    )
    def test_bad_settings_fail_at_registration_with_a_clear_error(self, data, env, match):
        with pytest.raises(ConfigurationError, match=match):
            TypeCaches(Settings(data, env=env)).register(DeviceKind, "code")

    def test_a_name_registers_once(self):
        caches = TypeCaches(Settings({}, env={}))
        caches.register(DeviceKind, "code")
        with pytest.raises(ValueError, match="already registered"):
            caches.register(DeviceKind, "code")
        assert "device_kind" in caches and len(caches) == 1
