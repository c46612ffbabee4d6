"""tidemark.fhir.search: FHIR search parameters, and the values they extract and compare (pure).

- :class:`SearchParameter` is one parameter of one resource type; :class:`SearchParameterSet`
  holds a facade's parameters (R4 core's bundled table plus the SearchParameter resources of
  packages) with a :attr:`~SearchParameterSet.fingerprint`; :func:`parameters_from_resource`
  reads a SearchParameter resource and says which bases it cannot support and why
  (:class:`Unsupported`).
- :func:`extract` evaluates a type's parameters on a resource into index entries
  (:class:`KeyValue`, :class:`RangeValue`).
- :func:`date_interval`, :func:`number_interval`, :func:`fold` … parse and normalise search
  values the way :func:`extract` indexes them.
"""

from ._extract import (
    Entry,
    KeyValue,
    RangeValue,
    exact_name,
    extract,
    identifier_name,
    reference_keys,
    text_name,
)
from ._parameters import (
    DOCUMENT_PARAMETERS,
    SUPPORTED_TYPES,
    SearchParameter,
    SearchParameterSet,
    Unsupported,
    bundled_parameters,
    compact_rows,
    expression_for,
    parameters_from_resource,
    split_union,
    unsupported_reason,
)
from ._values import (
    MAX_KEY_LENGTH,
    OPEN_HIGH,
    OPEN_LOW,
    PREFIXES,
    Interval,
    clip,
    date_interval,
    fold,
    instant_of,
    number_interval,
    split_bars,
    split_prefix,
    split_values,
    unescape,
    value_interval,
)

__all__ = [
    "DOCUMENT_PARAMETERS",
    "MAX_KEY_LENGTH",
    "OPEN_HIGH",
    "OPEN_LOW",
    "PREFIXES",
    "SUPPORTED_TYPES",
    "Entry",
    "Interval",
    "KeyValue",
    "RangeValue",
    "SearchParameter",
    "SearchParameterSet",
    "Unsupported",
    "bundled_parameters",
    "clip",
    "compact_rows",
    "date_interval",
    "exact_name",
    "expression_for",
    "extract",
    "fold",
    "identifier_name",
    "instant_of",
    "number_interval",
    "parameters_from_resource",
    "reference_keys",
    "split_bars",
    "split_prefix",
    "split_union",
    "split_values",
    "text_name",
    "unescape",
    "unsupported_reason",
    "value_interval",
]
