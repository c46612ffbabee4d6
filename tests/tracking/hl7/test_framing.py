"""Cutting byte streams into HL7 messages: MLLP frames, cut frames, BOMs, chunks; pure."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from tidemark.core import DataValidationError
from tidemark.tracking.hl7 import MessageSplitter, parse_adt, split_messages

from .adt_messages import adt


def frame(message: str) -> bytes:
    return b"\x0b" + message.encode() + b"\r\x1c\r"


def test_mllp_frames_are_one_message_each_and_framing_bytes_never_reach_the_fields():
    data = frame(adt(control="A")) + frame(adt(control="B"))
    messages = list(split_messages(data, "feed"))
    assert [m.defect for m in messages] == [None, None]
    assert [parse_adt(m).control_id for m in messages] == ["A", "B"]
    assert [m.line for m in messages] == [1, 6]
    assert messages[0].end < messages[1].end <= len(data)


def test_a_frame_without_its_end_byte_is_cut_off_and_says_so():
    full = adt("A03", encounter="V123", discharged="20240306115500")
    cut = full[: full.index("V123") + 4]  # cut right after PV1-19
    data = frame(adt(control="A")) + b"\x0b" + cut.encode()
    first, second = split_messages(data, "feed")
    assert first.defect is None
    assert second.defect is not None and "no end byte (0x1C)" in second.defect
    with pytest.raises(DataValidationError, match="cut off") as caught:
        parse_adt(second)
    assert caught.value.data["line"] == second.line == 6


def test_a_new_start_byte_inside_a_frame_cuts_the_frame_before_it():
    data = b"\x0b" + adt(control="A")[:60].encode() + frame(adt(control="B"))
    first, second = split_messages(data, "feed")
    assert first.defect is not None and "new frame started" in first.defect
    assert second.defect is None and parse_adt(second).control_id == "B"


def test_an_end_byte_without_a_start_byte_is_a_defect():
    data = adt(control="A").encode() + b"\x1c\r" + frame(adt(control="B"))
    first, second = split_messages(data, "feed")
    assert first.defect is not None and "without a start byte" in first.defect
    assert second.defect is None


def test_an_empty_cut_frame_is_still_reported():
    [only] = split_messages(b"\x0b", "feed")
    assert only.segments == () and only.defect is not None


@pytest.mark.parametrize("where", ["file", "frame", "message"])
def test_a_utf8_byte_order_mark_is_skipped(where):
    body = adt(name="M\u00dcLLER^ANN").encode()
    data = {
        "file": b"\xef\xbb\xbf" + body,
        "frame": b"\x0b\xef\xbb\xbf" + body + b"\x1c\r",
        "message": adt(control="A").encode() + b"\r\xef\xbb\xbf" + body,
    }[where]
    *_, last = split_messages(data, "feed")
    assert parse_adt(last).surname.get() == "M\u00dcLLER"


def test_feeding_in_any_chunks_gives_the_same_messages_as_the_whole():
    rng = random.Random(16)
    parts = [adt(control=f"C{i}").replace("\r", rng.choice(["\r", "\n", "\r\n"])) for i in range(6)]
    data = (
        parts[0].encode()
        + b"\r\n"
        + frame(parts[1])
        + b"\n"
        + parts[2].encode()
        + b"\r\n"
        + parts[3].encode()
        + frame(parts[4])
        + b"\x0b"
        + parts[5].encode()
    )
    whole = list(split_messages(data, "feed"))
    assert len(whole) == 6 and whole[-1].defect is not None
    for _ in range(50):
        splitter = MessageSplitter("feed")
        chunks, position = [], 0
        while position < len(data):
            size = rng.randint(1, 40)
            chunks.append(data[position : position + size])
            position += size
        pieces = [m for chunk in chunks for m in splitter.feed(chunk)] + splitter.close()
        # ``end`` only says how far the input had been read (for progress): chunks move it.
        assert [replace(m, end=0) for m in pieces] == [replace(m, end=0) for m in whole]
    assert splitter.consumed == len(data)


def test_blank_lines_and_batch_envelopes_are_skipped():
    body = adt().replace("\r", "\n")
    text = f"FHS|^~\\&\nBHS|^~\\&\n\x0b{body}\x1c\n\n\nBTS|1\nFTS|1\n"
    [raw] = list(split_messages(text.encode(), "f"))
    assert raw.line == 3
    assert parse_adt(raw).mrn == "M1"


def test_a_closed_splitter_refuses_more_input():
    splitter = MessageSplitter()
    splitter.close()
    assert splitter.close() == []
    with pytest.raises(RuntimeError, match="closed"):
        splitter.feed(b"MSH")
