"""Splitting HL7 files into messages and reading ADT fields: pure, no database."""

from __future__ import annotations

import random
import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from tidemark.core import DataValidationError
from tidemark.tracking import InterchangeValue
from tidemark.tracking.hl7 import example_files, parse_adt, split_messages

from .adt_messages import adt


def one(text: str, **options):
    [raw] = list(split_messages(text.encode(), "test.hl7"))
    return parse_adt(raw, **options)


def problem(text: str | bytes, **options) -> DataValidationError:
    with pytest.raises(DataValidationError) as caught:
        for raw in split_messages(text.encode() if isinstance(text, str) else text, "bad.hl7"):
            parse_adt(raw, **options)
    return caught.value


@pytest.mark.parametrize("separator", ["\r", "\n", "\r\n"])
def test_messages_split_at_msh_whatever_the_line_ending(separator):
    text = separator.join(adt(control=c).replace("\r", separator) for c in "AB")
    messages = list(split_messages(text.encode(), "f"))
    assert [m.index for m in messages] == [1, 2]
    assert [m.line for m in messages] == [1, 5]
    assert messages[1].segment_lines == (5, 6, 7, 8)
    assert [parse_adt(m).control_id for m in messages] == ["A", "B"]


def test_blank_lines_mllp_framing_and_batch_envelopes_are_skipped():
    body = adt().replace("\r", "\n")
    text = f"FHS|^~\\&\nBHS|^~\\&\n\x0b{body}\x1c\n\n\nBTS|1\nFTS|1\n"
    [raw] = list(split_messages(text.encode(), "f"))
    assert raw.line == 3
    assert parse_adt(raw).mrn == "M1"


def test_lines_before_the_first_msh_are_a_message_of_their_own_that_fails():
    text = "garbage\r" + adt()
    messages = list(split_messages(text.encode(), "f"))
    assert len(messages) == 2
    with pytest.raises(DataValidationError, match="does not start with an MSH segment"):
        parse_adt(messages[0])
    assert parse_adt(messages[1]).mrn == "M1"


def test_adt_fields_become_interchange_values():
    event = one(
        adt(
            "A03",
            nhs="943",
            name="O\\T\\NEIL^ANN",
            admitted="20240301",
            discharged="202403051200",
            event="20240305115900",
            location="W2^R2^B2^TMG^^C^^^Clinic two",
        )
    )
    assert (event.trigger, event.control_id, event.mrn, event.encounter) == (
        "A03",
        "C1",
        "M1",
        "V1",
    )
    assert event.message_datetime == datetime(2024, 3, 5, 8, 15, 2, tzinfo=UTC)
    assert event.event_datetime == datetime(2024, 3, 5, 11, 59, tzinfo=UTC)
    assert event.nhs_number == InterchangeValue.of("943")
    assert event.surname == InterchangeValue.of("O&NEIL")
    assert event.date_of_birth == InterchangeValue.of(date(1980, 1, 1))
    assert event.discharge_datetime == InterchangeValue.of(datetime(2024, 3, 5, 12, 0, tzinfo=UTC))
    assert event.death_datetime.is_unknown
    assert event.discharge_disposition.is_unknown
    assert event.location is not None
    assert event.location.location_string == "W2^R2^B2"
    assert event.location.type_code == InterchangeValue.of("C")
    assert event.location.description == InterchangeValue.of("Clinic two")
    assert event.prior_location is None


def test_the_hl7_null_becomes_delete_and_an_empty_field_unknown():
    event = one(adt("A08", nhs='""', sex="", name='""^ANN', death='""'))
    assert event.nhs_number.is_delete
    assert event.surname.is_delete
    assert event.given_name == InterchangeValue.of("ANN")
    assert event.sex.is_unknown
    assert event.death_datetime.is_delete


def test_event_time_falls_back_from_evn6_to_evn2_to_msh7():
    assert one(adt(event="20240305080000")).event_datetime.hour == 8
    no_evn6 = adt().replace("EVN|A01|20240305081502", "EVN|A01|20240305070000")
    assert one(no_evn6).event_datetime.hour == 7
    no_evn = "\r".join(s for s in adt().split("\r") if not s.startswith("EVN"))
    assert one(no_evn).event_datetime == one(no_evn).message_datetime


def test_the_mr_identifier_wins_over_earlier_repetitions():
    text = adt().replace("M1^^^TMG^MR", "X9^^^OTHER^PI~M7^^^TMG^MR")
    assert one(text).mrn == "M7"


def test_times_without_offset_are_read_in_the_given_zone():
    event = one(adt(when="20240701120000"), default_tz=ZoneInfo("Europe/London"))
    assert event.message_datetime == datetime(2024, 7, 1, 11, 0, tzinfo=UTC)


def test_every_example_file_parses():
    files = example_files()
    assert [f.name for f in files] == [
        "01_admissions.hl7",
        "02_transfers_and_updates.hl7",
        "03_discharges.hl7",
    ]
    triggers = [
        parse_adt(raw).trigger for f in files for raw in split_messages(f.read_bytes(), f.name)
    ]
    assert sorted(set(triggers)) == ["A01", "A02", "A03", "A08"]


@pytest.mark.parametrize(
    ("text", "line", "match"),
    [
        (adt().replace("ADT^A01^ADT_A01", "ORU^R01^ORU_R01"), 1, "unsupported message type ORU"),
        (
            adt().replace("ADT^A01^ADT_A01", "ADT^A28^ADT_A05"),
            1,
            "unsupported message type ADT.A28",
        ),
        (adt(dob="19801332"), 3, "PID-7"),
        (adt(when=""), 1, "MSH-7"),
        (adt(admitted="2024-03-01"), 4, "PV1-44"),
        (adt(encounter=""), 4, "PV1-19"),
        (adt(encounter='""'), 4, "PV1-19"),
        (adt(mrn=""), 3, "PID-3"),
        ("\r".join(s for s in adt().split("\r") if not s.startswith("PV1")), 1, "no PV1 segment"),
        (adt().replace("\rPID|", "\rthis is not a segment\rPID|"), 3, "not an HL7 segment"),
    ],
)
def test_malformed_messages_name_the_line_at_fault(text, line, match):
    error = problem(text)
    assert error.data["line"] == line
    assert error.data["index"] == 1
    assert error.data["source"] == "bad.hl7"
    assert f"(line {line})" in error.detail
    assert re.search(match, error.detail), error.detail


def test_bytes_that_are_not_the_declared_encoding_are_reported():
    data = adt(name="M\u00dcLLER^ANN").encode("latin-1")
    error = problem(data)
    assert "not valid utf-8" in error.detail
    assert error.data["line"] == 3
    [raw] = list(split_messages(data))
    assert parse_adt(raw, encoding="latin-1").surname == InterchangeValue.of("M\u00dcLLER")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("A\\F\\B", "A|B"),
        ("A\\S\\B\\T\\C\\R\\D\\E\\", "A^B&C~D\\"),
        ("\\X4D\\\\X4c\\", "ML"),
        ("line\\.br\\two", "line\ntwo"),
        ("\\H\\bold\\N\\", "bold"),
    ],
)
def test_escape_sequences_are_resolved(raw, expected):
    assert one(adt(name=f"{raw}^ANN")).surname == InterchangeValue.of(expected)


@pytest.mark.parametrize("raw", ["A\\F", "A\\\\B", "A\\Q\\B", "\\X4\\"])
def test_malformed_escape_sequences_are_reported(raw):
    error = problem(adt(name=f"{raw}^ANN"))
    assert "PID-5" in error.detail and error.data["line"] == 3


def test_custom_delimiters_declared_in_msh_are_honoured():
    text = adt(name="DOE^JANE").replace("|", "!").replace("^~\\&", "$*/%").replace("^", "$")
    event = one(text)
    assert (event.surname, event.given_name) == (
        InterchangeValue.of("DOE"),
        InterchangeValue.of("JANE"),
    )


@pytest.mark.parametrize("msh2", ["^^\\&", "^~|&", "a~\\&", "^"])
def test_unusable_encoding_characters_are_reported(msh2):
    error = problem(adt().replace("^~\\&", msh2, 1))
    assert error.data["line"] == 1


def test_mangled_messages_raise_only_data_validation_errors():
    # Random damage to a valid message must never escape as anything but a reported problem.
    rng = random.Random(20240305)
    base = adt("A02", prior="W^R^B^^^N", admitted="20240101", discharged="20240102").encode()
    alphabet = b'|^~\\&\r\nMSHPIDVEN01"9 '
    for _ in range(300):
        data = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            position = rng.randrange(len(data))
            choice = rng.random()
            if choice < 0.4:
                data[position] = rng.choice(alphabet)
            elif choice < 0.7:
                del data[position : position + rng.randint(1, 12)]
            else:
                data[position:position] = bytes(rng.choice(alphabet) for _ in range(3))
        for raw in split_messages(bytes(data)):
            try:
                parse_adt(raw)
            except DataValidationError as exc:
                assert exc.data.get("line", 1) >= 1
