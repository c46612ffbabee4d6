import pytest

from tidemark.core import ConfigurationError, Settings
from tidemark.sync import SyncSettings


def test_sync_settings_come_from_the_settings_file_and_environment():
    settings = Settings(
        {"sync": {"cloud_interval": "10m", "tombstone_retention": "30d"}},
        env={"TIDEMARK_SYNC_STORE_INTERVAL": "500ms"},
    )
    section = settings.section("sync", SyncSettings)
    assert section.cloud_interval == 600
    assert section.tombstone_retention == 30 * 86400
    assert section.store_interval == 0.5
    with pytest.raises(ConfigurationError):
        Settings({"sync": {"retry_base": 0}}, env={}).section("sync", SyncSettings)
