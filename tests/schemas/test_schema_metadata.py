from datetime import UTC, datetime

import pytest

from tidemark.core import CorruptDataError
from tidemark.schemas import SchemaMetadata, schema_key, split_canonical


def test_metadata_round_trips_through_json_dicts():
    metadata = SchemaMetadata(
        canonical_url="http://x/A",
        version="1.0",
        source_hash="abc",
        conversion_time=datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC),
        dependencies=("http://x/B",),
        size_bytes=42,
        package="p#1",
        conversion_seconds=0.5,
        source_file_hash="def",
        memory_bytes=900,
    )
    assert SchemaMetadata.from_dict(metadata.to_dict()) == metadata
    assert metadata.key == "http://x/A|1.0"


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {"canonical_url": "", "source_hash": "h", "size_bytes": 1, "conversion_time": "2024-01-01"},
        {"canonical_url": "u", "source_hash": "h", "size_bytes": "1", "conversion_time": "x"},
        {
            "canonical_url": "u",
            "source_hash": "h",
            "size_bytes": 1,
            "conversion_time": "2024-01-01T00:00:00Z",
            "dependencies": [1],
        },
        {"canonical_url": "u", "source_hash": "h", "size_bytes": 1, "conversion_time": "nope"},
    ],
)
def test_unusable_metadata_is_corrupt_data(broken):
    with pytest.raises(CorruptDataError):
        SchemaMetadata.from_dict(broken)


def test_keys_and_canonicals():
    assert schema_key("http://x/A", None) == "http://x/A"
    assert schema_key("http://x/A", "2") == "http://x/A|2"
    assert split_canonical("http://x/A|2") == ("http://x/A", "2")
    assert split_canonical("http://x/A") == ("http://x/A", None)
    assert split_canonical("http://x/A|") == ("http://x/A", None)
