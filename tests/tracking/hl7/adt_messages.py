"""Build HL7 v2 ADT messages for tests: by position (``adt``) or with the ``hl7`` package."""

from __future__ import annotations

import hl7


def segment(name: str, fields: dict[int, str]) -> str:
    last = max(fields, default=0)
    return "|".join([name, *(fields.get(i, "") for i in range(1, last + 1))])


def adt(
    trigger: str = "A01",
    *,
    when: str = "20240305081502",
    control: str = "C1",
    mrn: str = "M1",
    nhs: str | None = None,
    name: str = "DOE^JANE",
    dob: str = "19800101",
    sex: str = "F",
    encounter: str = "V1",
    patient_class: str = "I",
    location: str = "WARD1^ROOM1^BED1^TMG^^N^^^Ward one",
    prior: str = "",
    service: str = "MED",
    admitted: str = "",
    discharged: str = "",
    event: str = "",
    death: str = "",
    merged: str | None = None,
) -> str:
    """One ADT message, segments joined by CR; ``merged`` adds an MRG segment (A40)."""
    ids = f"{mrn}^^^TMG^MR" + (f"~{nhs}^^^NHS^NH" if nhs is not None else "")
    structure = {"A08": "A01", "A04": "A01", "A13": "A01", "A40": "A39"}.get(trigger, trigger)
    segments = [
        f"MSH|^~\\&|EPIC|TMG|TIDEMARK|TMG|{when}||ADT^{trigger}^ADT_{structure}|{control}|P|2.5",
        segment("EVN", {1: trigger, 2: when, 6: event}),
        segment("PID", {1: "1", 3: ids, 5: name, 7: dob, 8: sex, 29: death}),
    ]
    if merged is not None:
        segments.append(segment("MRG", {1: f"{merged}^^^TMG^MR"}))
    segments.append(
        segment(
            "PV1",
            {
                1: "1",
                2: patient_class,
                3: location,
                6: prior,
                10: service,
                19: encounter,
                44: admitted,
                45: discharged,
            },
        )
    )
    return "\r".join(segments)


def without(message: str, name: str) -> str:
    """``message`` without its ``name`` segments."""
    return "\r".join(s for s in message.split("\r") if not s.startswith(name))


# Where each named value goes: (segment, field, component).
PLACES = {
    "surname": ("PID", 5, 1),
    "given_name": ("PID", 5, 2),
    "dob": ("PID", 7, 1),
    "sex": ("PID", 8, 1),
    "patient_class": ("PV1", 2, 1),
    "location": ("PV1", 3, 1),
    "room": ("PV1", 3, 2),
    "bed": ("PV1", 3, 3),
    "facility": ("PV1", 3, 4),
    "location_type": ("PV1", 3, 6),
    "location_name": ("PV1", 3, 9),
    "prior_location": ("PV1", 6, 1),
    "prior_room": ("PV1", 6, 2),
    "prior_bed": ("PV1", 6, 3),
    "service": ("PV1", 10, 1),
    "encounter": ("PV1", 19, 1),
    "admitted": ("PV1", 44, 1),
    "discharged": ("PV1", 45, 1),
    "event": ("EVN", 6, 1),
}
# Identifier lists (CX): written as one field, number^^^authority^type.
IDENTIFIERS = {"mrn": ("PID", 3), "merged_mrn": ("MRG", 1)}


def built(trigger: str, when: str, control: str, **values: str) -> str:
    """An ADT message built by the ``hl7`` package from a skeleton and named values (already
    HL7 text: ``""`` is the HL7 null; use :func:`hl7_escaped` for free text). ``mrn`` and
    ``merged_mrn`` are medical record numbers (identifier type MR)."""
    names = ["MSH", "EVN", "PID", *(["MRG"] if "merged_mrn" in values else []), "PV1"]
    skeleton = "\r".join(
        [f"MSH|^~\\&|EPIC|TMG|TIDEMARK|TMG|{when}||ADT^{trigger}|{control}|P|2.5"]
        + [f"{name}|1" if name in ("PID", "PV1") else f"{name}|" for name in names[1:]]
    )
    message = hl7.parse(skeleton)
    message.assign_field(trigger, "EVN", 1, 1)
    message.assign_field(when, "EVN", 1, 2)
    for name, value in values.items():
        if name in IDENTIFIERS:
            segment_name, field = IDENTIFIERS[name]
            message.assign_field(f"{value}^^^TMG^MR", segment_name, 1, field)
            continue
        segment_name, field, component = PLACES[name]
        message.assign_field(value, segment_name, 1, field, 1, component)
    return str(message).rstrip("\r")


def hl7_escaped(text: str) -> str:
    """``text`` with the HL7 delimiters escaped, as the ``hl7`` package writes them."""
    return str(hl7.parse("MSH|^~\\&|\rPID|1").escape(text))
