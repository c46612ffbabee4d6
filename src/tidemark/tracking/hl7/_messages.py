"""HL7 v2 ADT messages → :class:`AdtEvent`: reading the fields of one message (pure, no I/O)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, TypeVar

from tidemark.core import DataValidationError, content_hash
from tidemark.tracking import InterchangeValue, order_key

from ._framing import RawMessage
from ._values import HL7_NULL, PartialDate, hl7_value, parse_hl7_date, parse_hl7_datetime

T = TypeVar("T")

#: The ADT trigger events the example applies.
SUPPORTED_TRIGGERS = frozenset(("A01", "A02", "A03", "A04", "A08", "A11", "A12", "A13", "A40"))
#: The events that act on a visit and so need its number (PV1-19).
VISIT_TRIGGERS = frozenset(("A01", "A02", "A03", "A11", "A12", "A13"))

_DEFAULT_DELIMITERS = "^~\\&"
_UNKNOWN: InterchangeValue[Any] = InterchangeValue.unknown()
_DELETE: InterchangeValue[Any] = InterchangeValue.delete()
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
        chars = declared[:4] + _DEFAULT_DELIMITERS[len(declared[:4]) :]
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
class FieldWarning:
    """A field that could not be read and was left unknown; the rest of the message was used."""

    field: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.field} (line {self.line}): {self.reason}"


@dataclass(frozen=True, slots=True)
class LocationRef:
    """An HL7 PL (person location): ``point of care^room^bed`` plus what the message says of it."""

    location_string: str
    facility: InterchangeValue[str]
    type_code: InterchangeValue[str]
    description: InterchangeValue[str]


@dataclass(frozen=True, slots=True)
class PatientMerge:
    """One PID/MRG pair of an A40: the patient ``merged_mrn`` is merged into ``surviving_mrn``."""

    surviving_mrn: str
    merged_mrn: str


@dataclass(frozen=True, slots=True)
class AdtEvent:
    """What one ADT message says, field by field, as :class:`InterchangeValue` where optional.

    ``order_key`` places the message in the total order of messages (see :func:`parse_adt`).
    ``encounter`` is None for an event that carries no visit (an A08 or A04 without PV1-19, an
    A40). ``merges`` lists the PID/MRG pairs of an A40. ``warnings`` lists fields left unknown
    because they could not be read.
    """

    trigger: str
    control_id: str
    message_datetime: datetime
    event_datetime: datetime
    order_key: str
    mrn: str
    nhs_number: InterchangeValue[str]
    surname: InterchangeValue[str]
    given_name: InterchangeValue[str]
    date_of_birth: InterchangeValue[PartialDate]
    sex: InterchangeValue[str]
    death_datetime: InterchangeValue[datetime]
    encounter: str | None
    patient_class: InterchangeValue[str]
    hospital_service: InterchangeValue[str]
    admission_datetime: InterchangeValue[datetime]
    discharge_datetime: InterchangeValue[datetime]
    discharge_disposition: InterchangeValue[str]
    location: LocationRef | None
    prior_location: LocationRef | None
    merges: tuple[PatientMerge, ...] = ()
    warnings: tuple[FieldWarning, ...] = ()


class _Reader:
    """Field access on one message's segments that knows the source line of every segment."""

    def __init__(self, raw: RawMessage, texts: list[str], encoding: _Encoding) -> None:
        self.raw = raw
        self.encoding = encoding
        self.warnings: list[FieldWarning] = []
        self.segments: dict[str, list[str]] = {}
        self.lines: dict[str, int] = {}
        self.all: list[tuple[str, list[str], int]] = []
        separator = encoding.field
        for text, line in zip(texts, raw.segment_lines, strict=True):
            name = text[:3]
            # MSH-1 is the field separator itself: keep the numbering of every other segment.
            fields = [name, separator, *text[4:].split(separator)] if name == "MSH" else None
            if fields is None:
                fields = text.split(separator)
            self.all.append((name, fields, line))
            if name not in self.segments:
                self.segments[name] = fields
                self.lines[name] = line

    def fail(self, segment: str | None, reason: str, **data: Any) -> DataValidationError:
        line = self.lines.get(segment, self.raw.line) if segment else self.raw.line
        return _problem(self.raw, line, reason, **data)

    def has(self, segment: str) -> bool:
        return segment in self.segments

    def text(
        self,
        segment: str,
        field: int,
        repeat: int = 1,
        component: int = 1,
        *,
        key: bool = False,
        fields: list[str] | None = None,
        line: int | None = None,
    ) -> str | None:
        """The unescaped text at ``segment-field[repeat].component`` ("" when absent).

        A bad escape sequence raises for a ``key`` field and otherwise returns None (unknown)
        with a warning.
        """
        found = fields if fields is not None else self.segments.get(segment)
        if found is None or field >= len(found):
            return ""
        text = found[field]
        if not text:
            return ""
        encoding = self.encoding
        if repeat > 1 or encoding.repetition in text:
            parts = text.split(encoding.repetition)
            text = parts[repeat - 1] if repeat <= len(parts) else ""
        if component > 1 or encoding.component in text:
            parts = text.split(encoding.component)
            text = parts[component - 1] if component <= len(parts) else ""
        if encoding.subcomponent in text:
            text = text.split(encoding.subcomponent, 1)[0]
        if encoding.escape not in text:
            return text
        try:
            return encoding.unescape(text)
        except ValueError as exc:
            name = _name(segment, field, component)
            reason = f"bad escape sequence: {exc}"
            if key:
                raise self.fail(segment, f"{name}: {reason}", field=name) from None
            where = line if line is not None else self.lines.get(segment, self.raw.line)
            self.warnings.append(FieldWarning(name, where, f"{reason}; the field was ignored"))
            return None

    def repeats(self, fields: list[str] | None, field: int) -> int:
        if fields is None or field >= len(fields) or not fields[field]:
            return 0
        return fields[field].count(self.encoding.repetition) + 1

    def value(
        self,
        segment: str,
        field: int,
        convert: Callable[[str], T] | None = None,
        *,
        component: int = 1,
    ) -> InterchangeValue[Any]:
        text = self.text(segment, field, 1, component)
        if not text:
            return _UNKNOWN
        if text == HL7_NULL:
            return _DELETE
        if convert is None:
            return InterchangeValue.of(text)
        try:
            return InterchangeValue.of(convert(text))
        except ValueError as exc:
            name = _name(segment, field, component)
            raise self.fail(segment, f"{name}: {exc}", field=name) from None

    def required(self, segment: str, field: int, label: str, component: int = 1) -> str:
        if not self.has(segment):
            raise self.fail(None, f"no {segment} segment (needed for {label})")
        value = self.text(segment, field, 1, component, key=True)
        if not value or value == HL7_NULL:
            name = f"{segment}-{field}"
            raise self.fail(segment, f"{name} ({label}) is empty", field=name)
        return value

    def identifier(self, segment: str, field: int, fields: list[str], line: int) -> str:
        """The medical record number of a CX list: the repetition of type MR, else the first."""
        mrn = ""
        for repeat in range(1, self.repeats(fields, field) + 1):
            identifier = self.text(segment, field, repeat, 1, key=True, fields=fields, line=line)
            id_type = self.text(segment, field, repeat, 5, key=True, fields=fields, line=line)
            if identifier and identifier != HL7_NULL and id_type != "NH":
                if id_type == "MR":
                    return identifier
                mrn = mrn or identifier
        return mrn


def _name(segment: str, field: int, component: int) -> str:
    return f"{segment}-{field}" + (f".{component}" if component > 1 else "")


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
    separator = texts[0][3:4]
    for text, line in zip(texts, raw.segment_lines, strict=True):
        if not _SEGMENT_ID.match(text[:3]) or (len(text) > 3 and text[3] != separator):
            raise _problem(raw, line, f"{text[:40]!r} is not an HL7 segment")
    return texts


def parse_adt(raw: RawMessage, *, default_tz: tzinfo = UTC, encoding: str = "utf-8") -> AdtEvent:
    """Read one ADT message. HL7 times without an offset are in ``default_tz``.

    Events: A01 admit, A02 transfer, A03 discharge, A04 register, A08 update, A11 cancel admit,
    A12 cancel transfer, A13 cancel discharge, A40 merge patients. The order key is the message
    time (MSH-7, as UTC to the microsecond), then the control ID (MSH-10), then a digest of the
    message's bytes: a total order in which two messages tie only when they are the same.

    Raises :class:`DataValidationError` (``data`` holds ``source``, ``index``, ``line`` and
    ``reason``) when the framing cut the message, it is not HL7, lacks MSH-7, an MRN (PID-3), a
    visit number (PV1-19) where the event acts on a visit, a new location (PV1-3) in an A02, or
    MRG-1 in an A40, or has a field that cannot be converted. Another message type or trigger
    raises it with ``data["unsupported"]`` (``"ADT^A28"``, ``"ORU^R01"``). A bad escape sequence
    in a field the message can do without costs that field only: it reads as unknown and
    ``AdtEvent.warnings`` says so.
    """
    if raw.defect is not None:
        raise _problem(raw, raw.line, raw.defect)
    if not raw.segments or not raw.segments[0].startswith(b"MSH") or len(raw.segments[0]) < 8:
        raise _problem(raw, raw.line, "does not start with an MSH segment")
    texts = _decode(raw, encoding)
    try:
        delimiters = _Encoding.of(texts[0])
    except (IndexError, ValueError) as exc:
        raise _problem(raw, raw.line, f"cannot parse: {exc}") from None
    read = _Reader(raw, texts, delimiters)

    kind = read.text("MSH", 9, 1, 1, key=True)
    trigger = read.text("MSH", 9, 1, 2, key=True) or read.text("EVN", 1, key=True)
    if not kind:
        raise read.fail("MSH", "MSH-9 (message type) is empty", field="MSH-9")
    if kind != "ADT" or trigger not in SUPPORTED_TRIGGERS:
        message_type = f"{kind}^{trigger}" if trigger else str(kind)
        raise read.fail(
            "MSH",
            f"unsupported message type {message_type} (supported: ADT "
            f"{', '.join(sorted(SUPPORTED_TRIGGERS))})",
            field="MSH-9",
            unsupported=message_type,
        )

    def when(text: str) -> datetime:
        return parse_hl7_datetime(text, default_tz)

    message_datetime = read.value("MSH", 7, when)
    if not message_datetime.is_save:
        raise read.fail("MSH", "MSH-7 (message date/time) is empty", field="MSH-7")
    event_datetime = read.value("EVN", 6, when)
    if not event_datetime.is_save:
        event_datetime = read.value("EVN", 2, when)
    control_id = read.text("MSH", 10, key=True) or ""

    pid_line = read.lines.get("PID", raw.line)
    if not read.has("PID"):
        raise read.fail(None, "no PID segment (needed for patient identifier)")
    mrn = read.identifier("PID", 3, read.segments["PID"], pid_line)
    if not mrn:
        raise read.fail("PID", "PID-3 has no medical record number", field="PID-3")
    nhs_number: InterchangeValue[str] = InterchangeValue.unknown()
    pid = read.segments["PID"]
    for repeat in range(1, read.repeats(pid, 3) + 1):
        if read.text("PID", 3, repeat, 5) == "NH":
            nhs_number = hl7_value(read.text("PID", 3, repeat, 1))

    encounter: str | None
    if trigger in VISIT_TRIGGERS:
        encounter = read.required("PV1", 19, "visit number")
    else:
        number = read.text("PV1", 19, key=True)
        encounter = number if number and number != HL7_NULL and trigger != "A40" else None
    location = _location(read, 3)
    if trigger == "A02" and location is None:
        raise read.fail("PV1", "PV1-3 (new location of the transfer) is empty", field="PV1-3")

    return AdtEvent(
        trigger=trigger,
        control_id=control_id,
        message_datetime=message_datetime.get(),
        event_datetime=event_datetime.get_or(message_datetime.get()),
        order_key=order_key(
            message_datetime.get(), control_id, content_hash(b"\r".join(raw.segments))[:16]
        ),
        mrn=mrn,
        nhs_number=nhs_number,
        surname=read.value("PID", 5, component=1),
        given_name=read.value("PID", 5, component=2),
        date_of_birth=read.value("PID", 7, parse_hl7_date),
        sex=read.value("PID", 8),
        death_datetime=read.value("PID", 29, when),
        encounter=encounter,
        patient_class=read.value("PV1", 2),
        hospital_service=read.value("PV1", 10),
        admission_datetime=read.value("PV1", 44, when),
        discharge_datetime=read.value("PV1", 45, when),
        discharge_disposition=read.value("PV1", 36),
        location=location,
        prior_location=_location(read, 6),
        merges=_merges(read, mrn) if trigger == "A40" else (),
        warnings=tuple(read.warnings),
    )


def _merges(read: _Reader, first_mrn: str) -> tuple[PatientMerge, ...]:
    """The PID/MRG pairs of an A40, each MRG applying to the PID before it."""
    merges: list[PatientMerge] = []
    surviving = first_mrn
    for name, fields, line in read.all:
        if name == "PID":
            surviving = read.identifier("PID", 3, fields, line)
            if not surviving:
                raise _problem(read.raw, line, "PID-3 has no medical record number", field="PID-3")
        elif name == "MRG":
            merged = read.identifier("MRG", 1, fields, line)
            if not merged:
                raise _problem(
                    read.raw, line, "MRG-1 (prior patient identifier) is empty", field="MRG-1"
                )
            if merged == surviving:
                raise _problem(
                    read.raw, line, f"MRG-1 names the surviving patient {merged!r}", field="MRG-1"
                )
            merges.append(PatientMerge(surviving, merged))
    if not merges:
        raise read.fail(None, "no MRG segment (needed for the patient to merge)")
    return tuple(merges)


def _location(read: _Reader, field: int) -> LocationRef | None:
    parts = [read.text("PV1", field, 1, component, key=True) for component in (1, 2, 3)]
    if not any(parts) or parts[0] == HL7_NULL:
        return None
    return LocationRef(
        location_string="^".join(part or "" for part in parts).rstrip("^"),
        facility=read.value("PV1", field, component=4),
        type_code=read.value("PV1", field, component=6),
        description=read.value("PV1", field, component=9),
    )
