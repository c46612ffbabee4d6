"""What FHIRPath needs to know of the FHIR R4 type system: primitive type names."""

from __future__ import annotations

#: Primitive type names of FHIR R4 (their StructureDefinitions have kind ``primitive-type``).
PRIMITIVE_TYPES = frozenset(
    (
        "base64Binary",
        "boolean",
        "canonical",
        "code",
        "date",
        "dateTime",
        "decimal",
        "id",
        "instant",
        "integer",
        "markdown",
        "oid",
        "positiveInt",
        "string",
        "time",
        "unsignedInt",
        "uri",
        "url",
        "uuid",
        "xhtml",
    )
)


#: Complex datatype names of FHIR R4 (kind ``complex-type``, plus the profiled quantities).
COMPLEX_TYPES = frozenset(
    """
    Address Age Annotation Attachment BackboneElement CodeableConcept Coding ContactDetail
    ContactPoint Contributor Count DataRequirement Distance Dosage Duration ElementDefinition
    Expression Extension HumanName Identifier MarketingStatus Meta Money MoneyQuantity Narrative
    ParameterDefinition Period Population ProdCharacteristic ProductShelfLife Quantity Range Ratio
    Reference RelatedArtifact SampledData Signature SimpleQuantity SubstanceAmount Timing
    TriggerDefinition UsageContext
    """.split()
)

#: The names of every choice element (``value[x]`` → ``value``) of FHIR R4's types: a JSON key
#: ``<name><Type>`` is the choice element ``<name>`` only for these names.
CHOICE_NAMES = frozenset(
    """
    abatement additive age allowed amount answer asNeeded author born bounds characteristic
    chargeItem code collected content created date deceased defaultValue definingSubstance
    definition detail diagnosis dose doseNumber due effective entity event example fastingStatus
    fixed identified indication item legallyBinding location manufacturer maxValue medication
    minValue minimumVolume module multipleBirth name occurred occurrence offset onset
    participantEffective pattern performed probability procedure product quantity rate reported
    scheduled seriesDoses serviced source start statusReason studyEffective subject substance
    target time timing topic used value when
    """.split()
)

#: Each type's parent where FHIRPath's ``is``/``as``/``ofType`` must see a subtype (FHIR R4
#: specialisations of primitives, and the quantities profiled from Quantity).
SUPERTYPES = {
    "code": "string",
    "id": "string",
    "markdown": "string",
    "canonical": "uri",
    "url": "uri",
    "oid": "uri",
    "uuid": "uri",
    "positiveInt": "integer",
    "unsignedInt": "integer",
    "Age": "Quantity",
    "Count": "Quantity",
    "Distance": "Quantity",
    "Duration": "Quantity",
    "MoneyQuantity": "Quantity",
    "SimpleQuantity": "Quantity",
}
