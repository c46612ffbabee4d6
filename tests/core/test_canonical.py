import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidemark.core import (
    MAX_JSON_DEPTH,
    JsonDepthError,
    canonical_bytes,
    canonical_hash,
    content_hash,
    exceeds_json_depth,
    parse_json,
    same_content,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


def test_canonical_bytes_sort_keys_and_drop_whitespace():
    assert canonical_bytes({"b": 1, "a": [1, {"d": 2, "c": 3}]}) == b'{"a":[1,{"c":3,"d":2}],"b":1}'


@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_key_order_never_changes_canonical_bytes(value):
    reordered = dict(reversed(list(value.items())))
    assert canonical_bytes(value) == canonical_bytes(reordered)
    assert canonical_hash(value) == canonical_hash(reordered)


def test_different_values_have_different_hashes():
    assert canonical_hash({"a": 1}) != canonical_hash({"a": 2})
    assert not same_content({"a": 1}, {"a": 1.5})
    assert same_content({"a": 1, "b": 2}, {"b": 2, "a": 1})


def test_content_hash_is_xxh3_128_hex_and_accepts_text():
    digest = content_hash(b"hello")
    assert len(digest) == 32 and int(digest, 16) >= 0
    assert content_hash("hello") == digest


def test_non_json_value_is_a_type_error():
    with pytest.raises(TypeError):
        canonical_bytes({"a": object()})


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


# Strings full of what the depth scan must not be fooled by: brackets, quotes, backslashes.
tricky_text = st.text(alphabet='[]{}"\\ab\n', max_size=6)
nested = st.recursive(
    st.none() | st.integers(-1000, 1000) | tricky_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(tricky_text, children, max_size=3)
    ),
    max_leaves=25,
)


@given(nested, st.integers(0, 12))
def test_the_depth_scan_agrees_with_the_nesting_of_the_parsed_value(value, limit):
    text = canonical_bytes(value)
    assert exceeds_json_depth(text, limit) == (_depth(value) > limit)
    assert exceeds_json_depth(text.decode(), limit) == (_depth(value) > limit)


def test_the_depth_limit_is_inclusive():
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json(at_limit, max_depth=MAX_JSON_DEPTH) is not None
    with pytest.raises(JsonDepthError, match=f"more than {MAX_JSON_DEPTH} levels"):
        parse_json("[" + at_limit + "]", max_depth=MAX_JSON_DEPTH)


def test_brackets_inside_strings_do_not_count():
    text = '{"a": "' + "[" * 500 + '", "b": "\\"{{{{\\\\", "c": [1]}'
    assert parse_json(text, max_depth=2)["c"] == [1]


def test_a_very_deep_document_is_refused_before_any_parsing():
    # Deeper than the parser's own recursion limit and than Python's: refused by the scan, as a
    # ValueError like any malformed input.
    with pytest.raises(JsonDepthError) as refused:
        parse_json(b'{"a":' * 200_000 + b"1" + b"}" * 200_000, max_depth=MAX_JSON_DEPTH)
    assert isinstance(refused.value, ValueError) and refused.value.limit == MAX_JSON_DEPTH


def test_without_a_limit_parse_json_is_unchanged():
    assert parse_json(b"[[[1]]]") == [[[1]]]
    with pytest.raises(ValueError):
        parse_json(b"[[[1]]", max_depth=MAX_JSON_DEPTH)
