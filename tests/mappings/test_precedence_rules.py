"""The precedence rules on their own: which candidate wins a key, how the alias object is
layered, and which overrides are reported — pure functions, no folder and no server."""

from __future__ import annotations

from tidemark.mappings import AliasEntry, Mapping
from tidemark.mappings._precedence import (
    MAPPING_RULES,
    Override,
    effective_aliases,
    effective_mapping,
)

JSON = Mapping("k", '{"from": "json"}', "json", "file", "/maps/k.json")
TEXT = Mapping("k", "from text", "text", "file", "/maps/k.fume")
SERVER = Mapping("k", "from server", "text", "server", "http://host/fhir/StructureMap/k")


def test_a_key_without_candidates_has_no_effective_mapping_and_no_override() -> None:
    assert effective_mapping("k") == (None, ())


def test_a_lone_candidate_of_any_source_is_effective_without_override() -> None:
    assert effective_mapping("k", json_file=JSON) == (JSON, ())
    assert effective_mapping("k", text_file=TEXT) == (TEXT, ())
    assert effective_mapping("k", server=SERVER) == (SERVER, ())


def test_a_json_file_beats_a_text_file_of_the_same_key() -> None:
    mapping, overrides = effective_mapping("k", json_file=JSON, text_file=TEXT)
    assert mapping is JSON
    assert overrides == (Override("json-over-text", "k", JSON.source, TEXT.source),)


def test_a_file_beats_the_server_and_the_warning_names_both_sources() -> None:
    mapping, overrides = effective_mapping("k", text_file=TEXT, server=SERVER)
    assert mapping is TEXT
    [override] = overrides
    assert override == Override("file-over-server", "k", TEXT.source, SERVER.source)
    assert override.message == "file mapping overrides the server mapping with the same key"
    assert override.fields == {"key": "k", "file": TEXT.source, "server": SERVER.source}


def test_all_three_candidates_report_both_overrides_in_rule_order() -> None:
    mapping, overrides = effective_mapping("k", json_file=JSON, text_file=TEXT, server=SERVER)
    assert mapping is JSON
    assert tuple(o.rule for o in overrides) == MAPPING_RULES
    assert overrides[1].winner == JSON.source  # the JSON file is the one hiding the server


def test_the_json_over_text_warning_carries_only_the_key() -> None:
    [override] = effective_mapping("k", json_file=JSON, text_file=TEXT)[1]
    assert override.fields == {"key": "k"}
    assert "JSON mapping file overrides the text mapping file" in override.message


CM = "http://host/fhir/ConceptMap/aliases"
FILE = "/maps/aliases.json"


def test_aliases_are_layered_built_ins_then_server_then_file_key_by_key() -> None:
    aliases, overrides = effective_aliases(
        built_in={"a": "built-in a", "b": "built-in b", "c": "built-in c"},
        server={"b": "server b", "c": "server c", "d": "server d"},
        server_source=CM,
        file={"c": "file c", "e": "file e"},
        file_source=FILE,
    )
    assert aliases == {
        "a": AliasEntry("built-in a", "built_in", "built_in"),
        "b": AliasEntry("server b", "server", CM),
        "c": AliasEntry("file c", "file", FILE),
        "d": AliasEntry("server d", "server", CM),
        "e": AliasEntry("file e", "file", FILE),
    }
    # Only the aliases.json key the server also defines is an override; built-ins are defaults.
    assert overrides == (Override("alias-file-over-server", "c", FILE, CM),)
    assert overrides[0].fields == {"key": "c"}


def test_without_other_sources_the_built_ins_are_the_alias_object() -> None:
    aliases, overrides = effective_aliases(
        built_in={"ucum": "http://unitsofmeasure.org"},
        server={},
        server_source=None,
        file=None,
        file_source=None,
    )
    assert aliases == {"ucum": AliasEntry("http://unitsofmeasure.org", "built_in", "built_in")}
    assert overrides == ()


def test_server_aliases_are_taken_only_with_the_concept_map_that_holds_them() -> None:
    aliases, _ = effective_aliases(
        built_in={}, server={"x": "server x"}, server_source=None, file=None, file_source=None
    )
    assert aliases == {}


def test_an_empty_aliases_json_hides_nothing_and_reports_nothing() -> None:
    aliases, overrides = effective_aliases(
        built_in={"a": "built-in"},
        server={"a": "server"},
        server_source=CM,
        file={},
        file_source=FILE,
    )
    assert aliases == {"a": AliasEntry("server", "server", CM)}
    assert overrides == ()


def test_the_precedence_functions_leave_their_inputs_untouched() -> None:
    built_in, server, file = {"a": "1"}, {"a": "2"}, {"a": "3"}
    effective_aliases(
        built_in=built_in, server=server, server_source=CM, file=file, file_source=FILE
    )
    assert (built_in, server, file) == ({"a": "1"}, {"a": "2"}, {"a": "3"})
