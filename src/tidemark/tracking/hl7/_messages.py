"""HL7 v2 ADT messages → :class:`AdtEvent`: splitting files into messages and reading the fields.

Pure and synchronous: no database, no files. Every problem raises
:class:`~tidemark.core.DataValidationError` whose ``data`` holds the ``line`` (1-based, in the
source) of the segment at fault, so a caller can point a user at it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any, TypeVar

import hl7

from tidemark.core import DataValidationError
from tidemark.tracking import InterchangeValue

from ._values import hl7_value, parse_hl7_date, parse_hl7_datetime

T = TypeVar("T")

#: The ADT trigger events the example understands.
SUPPORTED_TRIGGERS = frozenset(("A01", "A02", "A03", "A08"))

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
# MLLP framing (vertical tab before, file separator after) survives in captured feeds.
_FRAMING = b" \t\x0b\x1c"
_ENVELOPE = (b"FHS", b"FTS", b"BHS", b"BTS")
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")


@dataclass(frozen=True, slots=True)
class _Encoding:
    """The delimiters a message declares in MSH-1 and MSH-2 (HL7 defaults for missing ones)."""

    field: str
    component: str
    repetition: str
    escape: str
    subcomponent: str

    @classmethod
    def of(cls, msh: str) -> _Encoding:
        """Read and check the delimiters; raises ``ValueError`` when they are unusable."""
        field = msh[3]
        end = msh.find(field, 4)
        declared = msh[4:end] if end > 0 else msh[4:]
        defaults = "^~\\&"
        chars = declared[:4] + defaults[len(declared[:4]) :]
        encoding = cls(field, chars[0], chars[1], chars[2], chars[3])
        used = [field, *chars]
        if not 2 <= len(declared) <= 5 or len(set(used)) != len(used):
            raise ValueError(f"MSH-1/MSH-2 encoding characters {field + declared!r} are not usable")
        if any(c.isalnum() or c.isspace() for c in used):
            raise ValueError(f"MSH-1/MSH-2 encoding characters {field + declared!r} are not usable")
        return encoding

    def unescape(self, text: str) -> str:
        """Resolve HL7 escape sequences (``\\F\\`` ``\\S\\`` ``\\T\\`` ``\\R\\`` ``\\E\\`` ``\\Xhh\\``;
        highlighting, formatting and character-set sequences are dropped). Raises ``ValueError``
        on an unterminated or malformed sequence.
        """
        escape = self.escape
        out: list[str] = []
        position = 0
        while True:
            start = text.find(escape, position)
            if start < 0:
                out.append(text[position:])
                return "".join(out)
            end = text.find(escape, start + 1)
            if end < 0:
                raise ValueError(f"unterminated escape sequence in {text!r}")
            out.append(text[position:start])
            out.append(self._sequence(text[start + 1 : end], text))
            position = end + 1

    def _sequence(self, code: str, text: str) -> str:
        simple = {
            "F": self.field,
            "S": self.component,
            "T": self.subcomponent,
            "R": self.repetition,
            "E": self.escape,
        }
        if code in simple:
            return simple[code]
        if code[:1] == "X" and len(code) > 1 and len(code) % 2 == 1:
            try:
                return bytes.fromhex(code[1:]).decode("latin-1")
            except ValueError:
                pass
        elif code == ".br":
            return "\n"
        elif code[:1] in ("H", "N", ".", "C", "M", "Z") and code:
            return ""
        raise ValueError(f"bad escape sequence {code!r} in {text!r}")


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One message cut out of a source: its segments (bytes) and the line each starts on."""

    source: str
    index: int
    line: int
    segments: tuple[bytes, ...]
    segment_lines: tuple[int, ...]


def split_messages(data: bytes, source: str = "<bytes>") -> Iterator[RawMessage]:
    """Cut ``data`` into messages: segments end with CR, LF or CRLF; a message starts at MSH.

    Blank lines, MLLP framing bytes and batch envelopes (FHS/BHS/BTS/FTS) are skipped. Lines
    before the first MSH form a message of their own, which fails to parse: nothing is
    silently dropped. ``index`` counts messages from 1.
    """
    segments: list[bytes] = []
    lines: list[int] = []
    index = 0
    for number, raw_line in enumerate(_LINE_BREAK.split(data), start=1):
        line = raw_line.strip(_FRAMING)
        if not line or line[:3] in _ENVELOPE:
            continue
        if line.startswith(b"MSH") and segments:
            index += 1
            yield RawMessage(source, index, lines[0], tuple(segments), tuple(lines))
            segments, lines = [], []
        segments.append(line)
        lines.append(number)
    if segments:
        index += 1
        yield RawMessage(source, index, lines[0], tuple(segments), tuple(lines))


@dataclass(frozen=True, slots=True)
class LocationRef:
    """An HL7 PL (person location): ``point of care^room^bed`` plus what the message says of it."""

    location_string: str
    facility: InterchangeValue[str]
    type_code: InterchangeValue[str]
    description: InterchangeValue[str]


@dataclass(frozen=True, slots=True)
class AdtEvent:
    """What one ADT message says, field by field, as :class:`InterchangeValue` where optional."""

    trigger: str
    control_id: str
    message_datetime: datetime
    event_datetime: datetime
    mrn: str
    nhs_number: InterchangeValue[str]
    surname: InterchangeValue[str]
    given_name: InterchangeValue[str]
    date_of_birth: InterchangeValue[date]
    sex: InterchangeValue[str]
    death_datetime: InterchangeValue[datetime]
    encounter: str
    patient_class: InterchangeValue[str]
    hospital_service: InterchangeValue[str]
    admission_datetime: InterchangeValue[datetime]
    discharge_datetime: InterchangeValue[datetime]
    discharge_disposition: InterchangeValue[str]
    location: LocationRef | None
    prior_location: LocationRef | None


class _Reader:
    """Field access on a parsed message that knows the source line of every segment."""

    def __init__(
        self, raw: RawMessage, text_segments: list[str], message: Any, encoding: _Encoding
    ) -> None:
        self.raw = raw
        self.encoding = encoding
        self.lines: dict[str, int] = {}
        self.segments: dict[str, Any] = {}
        for position, segment in enumerate(message):
            name = text_segments[position][:3]
            self.segments.setdefault(name, segment)
            self.lines.setdefault(name, raw.segment_lines[position])

    def fail(self, segment: str | None, reason: str, **data: Any) -> DataValidationError:
        line = self.lines.get(segment, self.raw.line) if segment else self.raw.line
        return _problem(self.raw, line, reason, **data)

    def has(self, segment: str) -> bool:
        return segment in self.segments

    def text(self, segment: str, field: int, repeat: int = 1, component: int = 1) -> str:
        """The unescaped text at ``segment-field[repeat].component`` ("" when absent)."""
        found = self.segments.get(segment)
        if found is None or field >= len(found):
            return ""
        node: Any = found[field]
        for index in (repeat, component, 1):
            node = _child(node, index)
        text = node if isinstance(node, str) else str(node)
        if self.encoding.escape in text:
            try:
                return self.encoding.unescape(text)
            except ValueError as exc:
                raise self.fail(
                    segment,
                    f"{segment}-{field}: bad escape sequence: {exc}",
                    field=f"{segment}-{field}",
                ) from None
        return text

    def repeats(self, segment: str, field: int) -> int:
        found = self.segments.get(segment)
        if found is None or field >= len(found):
            return 0
        return len(found[field])

    def value(
        self,
        segment: str,
        field: int,
        convert: Callable[[str], T] | None = None,
        *,
        repeat: int = 1,
        component: int = 1,
    ) -> InterchangeValue[Any]:
        value = hl7_value(self.text(segment, field, repeat, component))
        if convert is None:
            return value
        try:
            return value.map(convert)
        except ValueError as exc:
            name = f"{segment}-{field}" + (f".{component}" if component > 1 else "")
            raise self.fail(segment, f"{name}: {exc}", field=name) from None

    def required(self, segment: str, field: int, label: str, component: int = 1) -> str:
        if not self.has(segment):
            raise self.fail(None, f"no {segment} segment (needed for {label})")
        value = self.text(segment, field, 1, component)
        if not value or value == '""':
            raise self.fail(
                segment, f"{segment}-{field} ({label}) is empty", field=f"{segment}-{field}"
            )
        return value


def _problem(raw: RawMessage, line: int, reason: str, **data: Any) -> DataValidationError:
    # ``detail`` names the position for people; ``data`` carries it, and the bare reason, for code.
    return DataValidationError(
        f"{raw.source} message {raw.index} (line {line}): {reason}",
        data={"source": raw.source, "index": raw.index, "line": line, "reason": reason, **data},
    )


def _decode(raw: RawMessage, encoding: str) -> list[str]:
    texts = []
    for segment, line in zip(raw.segments, raw.segment_lines, strict=True):
        try:
            texts.append(segment.decode(encoding))
        except UnicodeDecodeError as exc:
            raise _problem(
                raw, line, f"not valid {encoding} at byte {exc.start} of the segment"
            ) from None
        except LookupError:
            raise DataValidationError(f"unknown text encoding {encoding!r}") from None
    for text, line in zip(texts, raw.segment_lines, strict=True):
        if not _SEGMENT_ID.match(text[:3]) or (len(text) > 3 and text[3] != texts[0][3:4]):
            raise _problem(raw, line, f"{text[:40]!r} is not an HL7 segment")
    return texts


def parse_adt(raw: RawMessage, *, default_tz: tzinfo = UTC, encoding: str = "utf-8") -> AdtEvent:
    """Read one ADT A01/A02/A03/A08 message. HL7 times without an offset are in ``default_tz``.

    Raises :class:`DataValidationError` (``data`` holds ``source``, ``index``, ``line`` and
    ``reason``) when the message is not HL7,
    is another type or trigger, lacks MSH-7, an MRN (PID-3) or a visit number (PV1-19), or has
    a field that cannot be converted.
    """
    if not raw.segments[0].startswith(b"MSH") or len(raw.segments[0]) < 8:
        raise _problem(raw, raw.line, "does not start with an MSH segment")
    texts = _decode(raw, encoding)
    try:
        delimiters = _Encoding.of(texts[0])
        message = hl7.parse("\r".join(texts))
    except (hl7.ParseException, IndexError, ValueError) as exc:
        raise _problem(raw, raw.line, f"cannot parse: {exc}") from None
    read = _Reader(raw, texts, message, delimiters)

    kind, trigger = read.text("MSH", 9, 1, 1), read.text("MSH", 9, 1, 2)
    if not kind:
        raise read.fail("MSH", "MSH-9 (message type) is empty", field="MSH-9")
    if kind != "ADT" or trigger not in SUPPORTED_TRIGGERS:
        raise read.fail(
            "MSH",
            f"unsupported message type {kind}^{trigger} (supported: ADT "
            f"{', '.join(sorted(SUPPORTED_TRIGGERS))})",
            field="MSH-9",
        )

    def when(text: str) -> datetime:
        return parse_hl7_datetime(text, default_tz)

    message_datetime = read.value("MSH", 7, when)
    if not message_datetime.is_save:
        raise read.fail("MSH", "MSH-7 (message date/time) is empty", field="MSH-7")
    event_datetime = read.value("EVN", 6, when)
    if not event_datetime.is_save:
        event_datetime = read.value("EVN", 2, when)

    read.required("PID", 3, "patient identifier")
    mrn, nhs_number = "", InterchangeValue.unknown()
    for repeat in range(1, read.repeats("PID", 3) + 1):
        identifier = read.text("PID", 3, repeat, 1)
        id_type = read.text("PID", 3, repeat, 5)
        if id_type == "NH":
            nhs_number = hl7_value(identifier)
        elif identifier and identifier != '""' and (id_type == "MR" or not mrn):
            mrn = identifier
    if not mrn:
        raise read.fail("PID", "PID-3 has no medical record number", field="PID-3")

    return AdtEvent(
        trigger=trigger,
        control_id=read.text("MSH", 10),
        message_datetime=message_datetime.get(),
        event_datetime=event_datetime.get_or(message_datetime.get()),
        mrn=mrn,
        nhs_number=nhs_number,
        surname=read.value("PID", 5, component=1),
        given_name=read.value("PID", 5, component=2),
        date_of_birth=read.value("PID", 7, parse_hl7_date),
        sex=read.value("PID", 8),
        death_datetime=read.value("PID", 29, when),
        encounter=read.required("PV1", 19, "visit number"),
        patient_class=read.value("PV1", 2),
        hospital_service=read.value("PV1", 10),
        admission_datetime=read.value("PV1", 44, when),
        discharge_datetime=read.value("PV1", 45, when),
        discharge_disposition=read.value("PV1", 36),
        location=_location(read, 3),
        prior_location=_location(read, 6),
    )


def _child(node: Any, index: int) -> Any:
    # python-hl7 stores a part without separators as a plain string, with them as a list.
    if isinstance(node, str):
        return node if index == 1 else ""
    return node[index - 1] if index <= len(node) else ""


def _location(read: _Reader, field: int) -> LocationRef | None:
    parts = [read.text("PV1", field, 1, component) for component in (1, 2, 3)]
    if not any(parts) or parts[0] == '""':
        return None
    return LocationRef(
        location_string="^".join(parts).rstrip("^"),
        facility=read.value("PV1", field, component=4),
        type_code=read.value("PV1", field, component=6),
        description=read.value("PV1", field, component=9),
    )
