"""tidemark.fhir.schema: StructureDefinition → FHIRSchema, and validation against FHIRSchema.

- :func:`convert` turns a StructureDefinition (its differential) into FHIRSchema as the
  ``@atomic-ehr/fhirschema`` converter emits it, except where that converter is wrong by the
  FHIR specification (see ``docs/fhirschema-decisions.md``). Pure and deterministic.
- A :data:`SchemaResolver` maps a canonical URL to a FHIRSchema (or ``None``);
  :class:`PackageSchemaResolver` is one over loaded packages that converts on demand.
  :func:`schema_dependencies` lists the canonical URLs a schema depends on; :func:`type_url`
  turns a FHIRSchema ``type`` into its canonical URL.
- :class:`Validator` (or :func:`validate`) checks a resource against its type, base chain,
  profiles (``meta.profile``) and extensions; the :class:`ValidationResult` holds
  OperationOutcome-style :class:`ValidationIssue` objects, rendered by :func:`operation_outcome`.
- :class:`Terminology` expands ValueSets from the loaded packages so that the validator can
  enforce required bindings.
"""

from ._convert import ConversionError, FHIRSchema, convert
from ._outcome import Severity, ValidationIssue, ValidationResult, operation_outcome
from ._resolve import (
    FHIR_BASE,
    PackageSchemaResolver,
    SchemaResolver,
    schema_dependencies,
    type_url,
)
from ._terminology import ResourceLookup, Terminology
from ._validate import Validator, validate

__all__ = [
    "FHIR_BASE",
    "ConversionError",
    "FHIRSchema",
    "PackageSchemaResolver",
    "ResourceLookup",
    "SchemaResolver",
    "Severity",
    "Terminology",
    "ValidationIssue",
    "ValidationResult",
    "Validator",
    "convert",
    "operation_outcome",
    "schema_dependencies",
    "type_url",
    "validate",
]
