"""The house rules of ARCHITECTURE.md, read from the source: imports point down, only at public
names of other packages, and never in a circle."""

from __future__ import annotations

import pytest

from tests.architecture.imports import (
    ImportGraph,
    LayerRule,
    find_cycles,
    layer_violations,
    private_violations,
    scan,
)
from tests.support import REPO_ROOT

SOURCE = REPO_ROOT / "src" / "tidemark"

CORE = "tidemark.core"
SERVICES = ("tidemark.cache", "tidemark.fhir")
CAPABILITIES = (
    "tidemark.store",
    "tidemark.mappings",
    "tidemark.schemas",
    "tidemark.sync",
    "tidemark.tracking",
)
ABOVE_CAPABILITIES = ("tidemark.api", "tidemark.replicate")

#: Who may import whom, floor by floor (ARCHITECTURE.md, "Layers"). Every module of tidemark
#: falls under the most specific rule whose package holds it; a module under no rule fails, so a
#: new top-level package must be placed on a floor here. The root module (``tidemark``, which
#: holds only ``__version__``) may be imported from every floor but ``core``.
RULES = (
    LayerRule("tidemark", ()),
    LayerRule(CORE, (), root_allowed=False),
    LayerRule("tidemark.cache", (CORE,)),
    LayerRule("tidemark.fhir", (CORE,)),
    LayerRule("tidemark.fhir.client", (CORE,)),
    LayerRule("tidemark.fhir.packages", (CORE,)),
    LayerRule("tidemark.fhir.fhirpath", (CORE,)),
    # Search parameters are read from packages and evaluated with FHIRPath.
    LayerRule("tidemark.fhir.search", (CORE, "tidemark.fhir.fhirpath", "tidemark.fhir.packages")),
    # The schema converter reads StructureDefinitions out of FHIR packages; the validator
    # evaluates invariants with FHIRPath.
    LayerRule("tidemark.fhir.schema", (CORE, "tidemark.fhir.packages", "tidemark.fhir.fhirpath")),
    *(LayerRule(capability, (CORE, *SERVICES)) for capability in CAPABILITIES),
    # api and replicate share a floor; like the capabilities, neither imports the other.
    *(LayerRule(package, (CORE, *SERVICES, *CAPABILITIES)) for package in ABOVE_CAPABILITIES),
    LayerRule("tidemark.cli", (CORE, *SERVICES, *CAPABILITIES, *ABOVE_CAPABILITIES)),
)


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    return scan(SOURCE)


def test_the_source_tree_is_where_the_rules_look(graph: ImportGraph):
    assert {CORE, *SERVICES, *CAPABILITIES, "tidemark.api", "tidemark.cli"} <= graph.modules
    assert len(graph.edges) > 100


def test_imports_point_down_the_layers(graph: ImportGraph):
    problems = layer_violations(graph, RULES)
    assert not problems, "imports against the layers:\n" + "\n".join(problems)


def test_no_package_imports_another_packages_private_modules(graph: ImportGraph):
    problems = private_violations(graph)
    assert not problems, "imports of private modules:\n" + "\n".join(problems)


def test_no_import_cycles_between_modules(graph: ImportGraph):
    cycles = find_cycles(graph)
    assert not cycles, "\n".join(cycle.describe() for cycle in cycles)
