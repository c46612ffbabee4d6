"""tidemark.fhir: FHIR services shared by the capabilities.

``tidemark.fhir.client`` (async REST client), ``tidemark.fhir.packages`` (FHIR packages and
registries), ``tidemark.fhir.fhirpath`` (FHIRPath evaluation) and ``tidemark.fhir.schema``
(StructureDefinition → FHIRSchema, validation).
"""
