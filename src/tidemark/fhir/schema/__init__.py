"""tidemark.fhir.schema: StructureDefinition → FHIRSchema, and validation against FHIRSchema."""

from ._convert import ConversionError, FHIRSchema, convert

__all__ = ["ConversionError", "FHIRSchema", "convert"]
