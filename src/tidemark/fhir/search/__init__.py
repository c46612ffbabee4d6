"""tidemark.fhir.search: FHIR search parameters, and the values they extract and compare (pure).

- :class:`SearchParameter` is one parameter of one resource type; :class:`SearchParameterSet`
  holds a facade's parameters (R4 core's bundled table plus the SearchParameter resources of
  packages) with a :attr:`~SearchParameterSet.fingerprint`; :func:`parameters_from_resource`
  reads a SearchParameter resource and says which bases it cannot support and why
  (:class:`Unsupported`).
- :func:`extract` evaluates a type's parameters on a resource into index entries
  (:class:`KeyValue`, :class:`RangeValue`).
- :func:`parse_search` turns a search request into a :class:`SearchQuery`: conditions on index
  entries (:class:`KeyIn`, :class:`RangeMatch` …, the shapes of the store's index), ``_id`` and
  ``_lastUpdated`` filters, ``_sort``, ``_include``/``_revinclude``, ``_summary``, ``_total``,
  ``_elements``, paging; :func:`matches` decides a condition on one resource's entries.
- :func:`date_interval`, :func:`number_interval`, :func:`fold` … parse and normalise search
  values the way :func:`extract` indexes them.
"""

from ._criteria import (
    RANGE_OPERATORS,
    AnyOf,
    Condition,
    KeyContains,
    KeyIn,
    KeyPrefix,
    Missing,
    Not,
    RangeMatch,
    approximate,
    condition_names,
    matches,
    range_matches,
    sort_value,
)
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
    summary_elements,
    unsupported_reason,
)
from ._query import (
    IGNORED_PARAMETERS,
    MAX_OFFSET,
    RESULT_PARAMETERS,
    Chain,
    Has,
    Include,
    SearchQuery,
    SortKey,
    parse_search,
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
    "IGNORED_PARAMETERS",
    "MAX_KEY_LENGTH",
    "MAX_OFFSET",
    "OPEN_HIGH",
    "OPEN_LOW",
    "PREFIXES",
    "RANGE_OPERATORS",
    "RESULT_PARAMETERS",
    "SUPPORTED_TYPES",
    "AnyOf",
    "Chain",
    "Condition",
    "Entry",
    "Has",
    "Include",
    "Interval",
    "KeyContains",
    "KeyIn",
    "KeyPrefix",
    "KeyValue",
    "Missing",
    "Not",
    "RangeMatch",
    "RangeValue",
    "SearchParameter",
    "SearchParameterSet",
    "SearchQuery",
    "SortKey",
    "Unsupported",
    "approximate",
    "bundled_parameters",
    "clip",
    "compact_rows",
    "condition_names",
    "date_interval",
    "exact_name",
    "expression_for",
    "extract",
    "fold",
    "identifier_name",
    "instant_of",
    "matches",
    "number_interval",
    "parameters_from_resource",
    "parse_search",
    "range_matches",
    "reference_keys",
    "sort_value",
    "split_bars",
    "split_prefix",
    "split_union",
    "split_values",
    "summary_elements",
    "text_name",
    "unescape",
    "unsupported_reason",
    "value_interval",
]
