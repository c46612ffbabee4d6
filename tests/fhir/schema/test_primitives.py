import pytest

from tidemark.fhir.fhirpath import PRIMITIVE_TYPES
from tidemark.fhir.schema._primitives import check_primitive


@pytest.mark.parametrize(
    ("type_name", "value"),
    [
        ("boolean", True),
        ("integer", -5),
        ("integer", 2147483647),
        ("unsignedInt", 0),
        ("positiveInt", 1),
        ("decimal", 1.50),
        ("decimal", 3),
        ("string", "x"),
        ("code", "in-progress"),
        ("code", "a b"),
        ("id", "a-B.9"),
        ("uri", "urn:oid:1.2.3"),
        ("url", "https://example.org/x"),
        ("canonical", "http://hl7.org/fhir/StructureDefinition/Patient|4.0.1"),
        ("oid", "urn:oid:2.16.840.1.113883"),
        ("uuid", "urn:uuid:c757873d-ec9a-4326-a141-556f43239520"),
        ("date", "2024"),
        ("date", "2024-02"),
        ("date", "2024-02-29"),
        ("dateTime", "2015-02-07T13:28:17.239+02:00"),
        ("dateTime", "2015-02-07"),
        ("instant", "2015-02-07T13:28:17Z"),
        ("time", "13:28:17"),
        ("base64Binary", "aGVsbG8="),
        ("markdown", "*hi*"),
        ("xhtml", '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'),
    ],
)
def test_valid_primitives(type_name, value):
    assert check_primitive(type_name, value) is None


@pytest.mark.parametrize(
    ("type_name", "value"),
    [
        ("boolean", "true"),
        ("boolean", 1),
        ("integer", 1.5),
        ("integer", True),
        ("integer", 2147483648),
        ("unsignedInt", -1),
        ("positiveInt", 0),
        ("decimal", "1.0"),
        ("decimal", float("nan")),
        ("string", ""),
        ("string", 5),
        ("code", " leading"),
        ("code", "two  spaces"),
        ("id", "has space"),
        ("id", "x" * 65),
        ("uri", "has space"),
        ("oid", "urn:oid:3.1"),
        ("uuid", "urn:uuid:C757873D-EC9A-4326-A141-556F43239520"),
        ("date", "2023-02-29"),
        ("date", "2024-2-1"),
        ("dateTime", "2015-02-07T13:28:17"),
        ("dateTime", "2015-02-07T25:00:00Z"),
        ("instant", "2015-02-07"),
        ("time", "24:00:00"),
        ("base64Binary", "not base64!"),
        ("xhtml", "<p>no div</p>"),
    ],
)
def test_invalid_primitives(type_name, value):
    assert check_primitive(type_name, value)


def test_all_twenty_r4_primitive_types_are_known():
    assert len(PRIMITIVE_TYPES) == 20
