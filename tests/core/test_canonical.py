from hypothesis import given
from hypothesis import strategies as st

from tidemark.core import canonical_bytes, canonical_hash, content_hash, same_content

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
    import pytest

    with pytest.raises(TypeError):
        canonical_bytes({"a": object()})
