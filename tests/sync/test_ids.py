import re

import pytest

from tidemark.core import DataValidationError, ParameterValidationError
from tidemark.sync import (
    RANDOM_ID_LENGTH,
    is_valid_id,
    key_of_id,
    logical_key_of,
    new_id,
    sanitize_logical_key,
    validate_key,
)

ID_FORMAT = re.compile(r"^(?P<logical>[A-Za-z0-9_.-]+)\.(?P<random>[A-Za-z0-9_-]{21})$")


def test_new_id_is_logical_key_dot_21_url_safe_characters():
    entity_id = new_id("Note.2024")
    match = ID_FORMAT.fullmatch(entity_id)
    assert match is not None
    assert match.group("logical") == "Note.2024"
    assert len(match.group("random")) == RANDOM_ID_LENGTH == 21


def test_new_id_without_logical_key_uses_the_global_partition():
    entity_id = new_id()
    assert entity_id.startswith("global.")
    assert key_of_id("app", entity_id) == "app.global"


def test_ten_thousand_ids_are_unique_and_use_the_whole_alphabet():
    ids = {new_id("k") for _ in range(10_000)}
    assert len(ids) == 10_000
    alphabet = set("".join(i.split(".", 1)[1] for i in ids))
    assert alphabet == set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_the_id_names_its_entity_key():
    entity_id = new_id("Note.2024")
    assert logical_key_of(entity_id) == "Note.2024"
    assert key_of_id("app", entity_id) == "app.Note.2024"


@pytest.mark.parametrize(
    "bad",
    ["", "short", "k.tooshort", "k." + "a" * 22, "k/" + "a" * 21, "." + "a" * 21, 42, None],
)
def test_malformed_ids_are_rejected_with_a_validation_error(bad):
    assert not is_valid_id(bad)
    with pytest.raises(DataValidationError):
        logical_key_of(bad)


def test_new_id_rejects_an_unsafe_logical_key():
    with pytest.raises(DataValidationError):
        new_id("../etc")


def test_sanitize_turns_free_text_into_a_safe_logical_key():
    assert sanitize_logical_key("Europe/West 2") == "Europe_West_2"
    assert sanitize_logical_key("a..b") == "a.b"
    assert sanitize_logical_key("///") == "_"
    assert sanitize_logical_key("") is None
    assert sanitize_logical_key(None) is None


@pytest.mark.parametrize("bad", ["", "a..b", ".a", "a.", "a/b", "../x", "a b", "x" * 201])
def test_keys_that_could_escape_a_folder_or_url_are_rejected(bad):
    with pytest.raises(ParameterValidationError):
        validate_key(bad)
