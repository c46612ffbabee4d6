import pytest

from tidemark.core import ConfigurationError
from tidemark.sync import CloudTier, FolderTier, SqliteTier, open_tier


def test_open_tier_tells_files_folders_and_servers_apart(tmp_path):
    assert isinstance(open_tier(str(tmp_path)), FolderTier)
    assert isinstance(open_tier(f"{tmp_path}/new-folder/"), FolderTier)
    assert isinstance(open_tier(str(tmp_path / "local.db")), SqliteTier)
    cloud = open_tier("http://127.0.0.1:8000/ns1", token="t")
    assert isinstance(cloud, CloudTier) and cloud.namespace == "ns1"
    with pytest.raises(ConfigurationError):
        open_tier("http://127.0.0.1:8000/")
    with pytest.raises(ConfigurationError):
        open_tier(str(tmp_path / "missing.db"), create=False)
