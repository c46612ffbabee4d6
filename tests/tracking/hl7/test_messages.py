"""Splitting HL7 files into messages and reading ADT fields: pure, no database."""

from __future__ import annotations

import random
import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from tidemark.core import DataValidationError
from tidemark.tracking import InterchangeValue
from tidemark.tracking.hl7 import (
    PartialDate,
    PatientMerge,
    example_files,
    parse_adt,
    split_messages,
)

from .adt_messages import adt, built, hl7_escaped, without


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
    assert event.date_of_birth == InterchangeValue.of(PartialDate(1980, 1, 1))
    assert event.date_of_birth.get().to_date() == date(1980, 1, 1)
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


def test_a_message_built_by_the_hl7_package_reads_back_field_by_field():
    text = built(
        "A01",
        "20240305081502",
        "K1",
        mrn="M5",
        surname=hl7_escaped("O'NEIL|SMYTHE^JR"),
        given_name="ANN",
        dob="1949",
        location="W2",
        room="R2",
        bed="B2",
        location_type="C",
        encounter="V5",
        admitted="202403050800",
    )
    event = one(text)
    assert (event.mrn, event.encounter, event.control_id) == ("M5", "V5", "K1")
    assert event.surname == InterchangeValue.of("O'NEIL|SMYTHE^JR")
    assert event.date_of_birth == InterchangeValue.of(PartialDate(1949))
    assert event.location is not None and event.location.location_string == "W2^R2^B2"
    assert event.admission_datetime.get() == datetime(2024, 3, 5, 8, 0, tzinfo=UTC)


def test_the_order_key_is_message_time_then_control_id_then_a_digest():
    first = one(adt(when="20240305081502", control="C1"))
    same_second = one(adt("A08", when="20240305081502", control="C2", name="DOE^JOAN"))
    assert first.order_key < same_second.order_key
    assert first.order_key.startswith("20240305081502.000000 C1 ")
    resent_with_other_content = one(adt(when="20240305081502", control="C1", sex="M"))
    assert resent_with_other_content.order_key != first.order_key
    assert one(adt(when="20240305081502", control="C1")).order_key == first.order_key
    # An offset is part of the time: 09:15 at +0100 is 08:15 UTC.
    assert (
        one(adt(when="20240305091502+0100", control="C1")).order_key[:21] == (first.order_key[:21])
    )


@pytest.mark.parametrize("trigger", ["A04", "A08"])
def test_events_that_need_no_visit_read_without_pv1(trigger):
    event = one(without(adt(trigger), "PV1"))
    assert event.encounter is None and event.location is None


@pytest.mark.parametrize("trigger", ["A01", "A02", "A03", "A11", "A12", "A13"])
def test_events_that_act_on_a_visit_need_pv1_19(trigger):
    error = problem(adt(trigger, encounter=""))
    assert "PV1-19 (visit number) is empty" in error.detail


def test_a40_names_the_merged_patient_and_needs_no_visit():
    event = one(adt("A40", mrn="M1", merged="M3"))
    assert event.merges == (PatientMerge("M1", "M3"),)
    assert event.encounter is None


def test_a40_with_several_pairs_merges_each_into_the_patient_before_it():
    pairs = adt("A40", mrn="M1", merged="M3").split("\r")
    pid, mrg = pairs[2], pairs[3]
    text = "\r".join([*pairs[:4], pid.replace("M1^", "M2^"), mrg.replace("M3^", "M4^")])
    assert one(text).merges == (PatientMerge("M1", "M3"), PatientMerge("M2", "M4"))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (without(adt("A40", merged="M3"), "MRG"), "no MRG segment"),
        (adt("A40", mrn="M1", merged="M1"), "names the surviving patient"),
        (adt("A40", merged=""), "MRG-1"),
    ],
)
def test_a_merge_that_names_no_other_patient_is_rejected(text, match):
    assert re.search(match, problem(text).detail)


@pytest.mark.parametrize(
    ("text", "message_type"),
    [
        (adt().replace("ADT^A01^ADT_A01", "ORU^R01^ORU_R01"), "ORU^R01"),
        (adt().replace("ADT^A01^ADT_A01", "ADT^A28^ADT_A05"), "ADT^A28"),
        (adt().replace("ADT^A01^ADT_A01", "ADT").replace("EVN|A01|", "EVN||"), "ADT"),
    ],
)
def test_an_unsupported_event_names_its_type(text, message_type):
    assert problem(text).data["unsupported"] == message_type


def test_the_trigger_may_come_from_evn_1():
    assert one(adt("A03").replace("ADT^A03^ADT_A03", "ADT")).trigger == "A03"


def test_a_bad_escape_costs_one_field_with_a_warning():
    event = one(adt(name="O\\NEIL^ANN"))
    assert event.surname.is_unknown
    assert event.given_name == InterchangeValue.of("ANN")
    [warning] = event.warnings
    assert (warning.field, warning.line) == ("PID-5", 3)
    assert "bad escape sequence" in warning.reason and "ignored" in warning.reason


def test_a_bad_escape_in_a_key_field_rejects_the_message():
    error = problem(adt(mrn="M\\1"))
    assert "PID-3: bad escape sequence" in error.detail


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
        (adt("A02", location=""), 4, "PV1-3 .new location"),
        (adt(when=""), 1, "MSH-7"),
        (adt(admitted="2024-03-01"), 4, "PV1-44"),
        (adt(encounter=""), 4, "PV1-19"),
        (adt(encounter='""'), 4, "PV1-19"),
        (adt(mrn=""), 3, "PID-3"),
        (without(adt(), "PV1"), 1, "no PV1 segment"),
        (without(adt(), "PID"), 1, "no PID segment"),
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
def test_malformed_escape_sequences_are_warnings(raw):
    event = one(adt(name=f"{raw}^ANN"))
    assert event.surname.is_unknown and event.given_name.get() == "ANN"
    assert [(w.field, w.line) for w in event.warnings] == [("PID-5", 3)]


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
