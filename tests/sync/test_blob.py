import pytest

from tidemark.core import DataValidationError
from tidemark.sync import new_id, validate_blob

ID = new_id("k")
OTHER = new_id("k")


def test_validate_returns_a_normalized_copy_without_empty_maps():
    raw = {"Note": {ID: {"id": ID}}, "Task": {}, "deleted": {"Note": {}, "Task": {OTHER: "2024"}}}
    normalized = validate_blob(raw)
    assert normalized == {"Note": {ID: {"id": ID}}, "deleted": {"Task": {OTHER: "2024"}}}
    assert raw["Task"] == {}  # the input is untouched


@pytest.mark.parametrize(
    ("blob", "path"),
    [
        ([], "$"),
        ({"bad name": {}}, "$.bad name"),
        ({"Note": []}, "$.Note"),
        ({"Note": {"nope": {"id": "nope"}}}, "$.Note.nope"),
        ({"Note": {ID: {"id": OTHER}}}, f"$.Note.{ID}"),
        ({"Note": {ID: "text"}}, f"$.Note.{ID}"),
        ({"deleted": []}, "$.deleted"),
        ({"deleted": {"Note": {ID: 5}}}, f"$.deleted.Note.{ID}"),
    ],
)
def test_malformed_blobs_are_rejected_naming_the_path(blob, path):
    with pytest.raises(DataValidationError) as info:
        validate_blob(blob)
    assert path in info.value.validation_errors


def test_an_id_both_active_and_deleted_keeps_the_later_one_and_delete_wins_a_tie():
    stamp = "2024-01-01T00:00:00.000000Z"
    later = "2024-01-02T00:00:00.000000Z"
    tie = validate_blob(
        {"Note": {ID: {"id": ID, "updated_at": stamp}}, "deleted": {"Note": {ID: stamp}}}
    )
    assert tie == {"deleted": {"Note": {ID: stamp}}}
    update_later = validate_blob(
        {"Note": {ID: {"id": ID, "updated_at": later}}, "deleted": {"Note": {ID: stamp}}}
    )
    assert update_later == {"Note": {ID: {"id": ID, "updated_at": later}}}
