"""tidemark.fhir.fhirpath: a FHIRPath evaluator over FHIR JSON (used by search and validation).

- :func:`evaluate` evaluates an expression on a JSON value and returns a collection of
  :class:`Item`; :func:`evaluate_invariant` the boolean of an invariant; :func:`parse` parses
  (and caches) an expression. Anything the evaluator does not implement, or cannot decide from
  the JSON alone, raises :class:`FhirPathUnsupported`: callers skip instead of guessing.
- :data:`SUPPORTED_FUNCTIONS` lists the functions implemented; :data:`PRIMITIVE_TYPES` and
  :data:`COMPLEX_TYPES` the type names of FHIR R4, :data:`CHOICE_NAMES` its choice elements.
"""

from ._evaluator import (
    SUPPORTED_FUNCTIONS,
    FhirPathUnsupported,
    Item,
    evaluate,
    evaluate_invariant,
    parse,
)
from ._model import CHOICE_NAMES, COMPLEX_TYPES, PRIMITIVE_TYPES

__all__ = [
    "CHOICE_NAMES",
    "COMPLEX_TYPES",
    "PRIMITIVE_TYPES",
    "SUPPORTED_FUNCTIONS",
    "FhirPathUnsupported",
    "Item",
    "evaluate",
    "evaluate_invariant",
    "parse",
]
