"""Build small HL7 v2 ADT messages for tests (segments joined by CR, fields by position)."""

from __future__ import annotations


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
) -> str:
    ids = f"{mrn}^^^TMG^MR" + (f"~{nhs}^^^NHS^NH" if nhs is not None else "")
    structure = {"A08": "A01"}.get(trigger, trigger)
    return "\r".join(
        [
            f"MSH|^~\\&|EPIC|TMG|TIDEMARK|TMG|{when}||ADT^{trigger}^ADT_{structure}|{control}|P|2.5",
            segment("EVN", {1: trigger, 2: when, 6: event}),
            segment("PID", {1: "1", 3: ids, 5: name, 7: dob, 8: sex, 29: death}),
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
            ),
        ]
    )
