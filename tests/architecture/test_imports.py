"""The import checker itself, on small package trees written for each test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.architecture.imports import (
    ImportGraph,
    find_cycles,
    layer_violations,
    private_violations,
    scan,
)
from tests.architecture.test_layers import RULES


def _tree(root: Path, files: dict[str, str]) -> Path:
    """Write ``tidemark/<path>`` for each entry (with every package's ``__init__.py``)."""
    package = root / "tidemark"
    for relative, text in {"__init__.py": "", **files}.items():
        path = package / relative
        for folder in [path.parent, *path.parent.parents]:
            if folder == root:
                break
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "__init__.py").touch()
        path.write_text(text)
    return package


def _graph(tmp_path: Path, files: dict[str, str]) -> ImportGraph:
    return scan(_tree(tmp_path, files))


def test_relative_from_imports_resolve_to_the_module_they_load(tmp_path: Path):
    graph = _graph(
        tmp_path,
        {
            "store/__init__.py": "from ._model import Model\nfrom . import _paths\n",
            "store/_model.py": "from .._version import number\nfrom . import Model2\n",
            "store/_paths.py": "",
            "_version.py": "number = 1\n",
        },
    )
    found = {(e.importer, e.module, e.name) for e in graph.edges}
    assert found == {
        ("tidemark.store", "tidemark.store._model", "tidemark.store._model.Model"),
        ("tidemark.store", "tidemark.store._paths", "tidemark.store._paths"),
        ("tidemark.store._model", "tidemark._version", "tidemark._version.number"),
        ("tidemark.store._model", "tidemark.store", "tidemark.store.Model2"),
    }


def test_a_core_module_importing_a_capability_is_reported_with_file_and_line(tmp_path: Path):
    graph = _graph(
        tmp_path,
        {
            "core/_errors.py": '"""Errors."""\n\nfrom ..store import Store\nfrom .. import __version__\n',
            "store/__init__.py": "Store = object\n",
        },
    )
    assert layer_violations(graph, RULES) == [
        "tidemark/core/_errors.py:3: tidemark.core._errors imports tidemark.store "
        "(tidemark.core may import only its own modules and: nothing of tidemark)",
        "tidemark/core/_errors.py:4: tidemark.core._errors imports tidemark "
        "(tidemark.core may import only its own modules and: nothing of tidemark)",
    ]


def test_imports_inside_functions_and_type_checking_blocks_count(tmp_path: Path):
    graph = _graph(
        tmp_path,
        {
            "store/_writer.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from tidemark.api import App\n"
                "def sync():\n"
                "    import tidemark.sync.engine as engine\n"
                "    return engine\n"
            ),
            "sync/engine.py": "",
            "api/__init__.py": "App = object\n",
        },
    )
    problems = layer_violations(graph, RULES)
    assert [p.split(": ")[0] for p in problems] == [
        "tidemark/store/_writer.py:3",
        "tidemark/store/_writer.py:5",
    ]
    assert "imports tidemark.api " in problems[0]
    assert "imports tidemark.sync.engine " in problems[1]


def test_the_floors_above_the_capabilities(tmp_path: Path):
    graph = _graph(
        tmp_path,
        {
            "api/__init__.py": "from tidemark.cli import app\nfrom tidemark.store import Store\n",
            "replicate/__init__.py": (
                "from tidemark.store import Store\n"
                "from tidemark.api import create_app\n"
                "from tidemark.cli import app\n"
            ),
            "cli/__init__.py": "from tidemark.api import create_app\nfrom tidemark.replicate import x\n",
            "store/__init__.py": "from tidemark import __version__\n",
        },
    )
    reported = {p.split(" (")[0].split(": ", 1)[1] for p in layer_violations(graph, RULES)}
    assert reported == {
        "tidemark.api imports tidemark.cli",
        "tidemark.replicate imports tidemark.api",
        "tidemark.replicate imports tidemark.cli",
    }


def test_fhir_schema_may_read_packages_but_not_the_reverse(tmp_path: Path):
    graph = _graph(
        tmp_path,
        {
            "fhir/schema/__init__.py": "from tidemark.fhir.packages import Package\n",
            "fhir/packages/__init__.py": "from tidemark.fhir import schema\n",
            "fhir/client/__init__.py": "from ..packages import Package\n",
        },
    )
    reported = {p.split(" (")[0].split(": ", 1)[1] for p in layer_violations(graph, RULES)}
    assert reported == {
        "tidemark.fhir.packages imports tidemark.fhir.schema",
        "tidemark.fhir.client imports tidemark.fhir.packages",
    }


def test_the_root_module_imports_nothing_of_its_subpackages(tmp_path: Path):
    graph = _graph(tmp_path, {"__init__.py": "from tidemark.core import x\n", "core/x.py": ""})
    assert layer_violations(graph, RULES) == [
        "tidemark/__init__.py:1: tidemark imports tidemark.core.x "
        "(tidemark may import only its own modules and: nothing of tidemark)"
    ]


def test_a_package_no_rule_covers_is_reported(tmp_path: Path):
    graph = _graph(tmp_path, {"extra/__init__.py": ""})
    assert layer_violations(graph, RULES) == ["tidemark.extra: no layer rule covers this module"]


def test_private_modules_and_names_are_private_to_their_package(tmp_path: Path):
    graph = _graph(
        tmp_path,
        {
            "store/__init__.py": "from ._model import Model\n",
            "store/_model.py": "from tidemark.store._paths import parse\nModel = object\n",
            "store/_paths.py": "",
            "fhir/schema/_resolve.py": "from tidemark.fhir.packages._cache import PackageCache\n",
            "fhir/packages/_cache.py": "",
            "api/_routes.py": (
                "from tidemark.store._model import Model\n"
                "from tidemark.store import _helper\n"
                "from tidemark import __version__\n"
                "from ._responses import problem\n"
            ),
            "api/_responses.py": "",
        },
    )
    assert private_violations(graph) == [
        "tidemark/api/_routes.py:1: tidemark.api._routes imports tidemark.store._model.Model, "
        "private to tidemark.store",
        "tidemark/api/_routes.py:2: tidemark.api._routes imports tidemark.store._helper, "
        "private to tidemark.store",
        "tidemark/fhir/schema/_resolve.py:1: tidemark.fhir.schema._resolve imports "
        "tidemark.fhir.packages._cache.PackageCache, private to tidemark.fhir.packages",
    ]


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path):
    graph = _graph(
        tmp_path,
        {
            "sync/_orchestrator.py": "from ._repository import Repository\n",
            "sync/_repository.py": (
                "from ._ids import new_id\n"
                "def hydrate():\n"
                "    from ._orchestrator import DataOrchestrator\n"
            ),
            "sync/_ids.py": "from . import _stamps\n",
            "sync/_stamps.py": "from ._stamps import now\n",
        },
    )
    cycles = find_cycles(graph)
    assert len(cycles) == 1
    assert cycles[0].members == {"tidemark.sync._orchestrator", "tidemark.sync._repository"}
    assert [(e.importer, e.line, e.module) for e in cycles[0].edges] == [
        ("tidemark.sync._orchestrator", 1, "tidemark.sync._repository"),
        ("tidemark.sync._repository", 3, "tidemark.sync._orchestrator"),
    ]
    described = cycles[0].describe()
    assert described.startswith(
        "import cycle tidemark.sync._orchestrator -> tidemark.sync._repository"
        " -> tidemark.sync._orchestrator"
    )
    culprit = "tidemark/sync/_repository.py:3: imports tidemark.sync._orchestrator.DataOrchestrator"
    assert culprit in described


def test_an_import_only_for_annotations_still_closes_a_cycle(tmp_path: Path):
    graph = _graph(
        tmp_path,
        {
            "api/_responses.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from ._settings import ServerSettings\n"
            ),
            "api/_settings.py": "from ._responses import problem\n",
        },
    )
    assert [cycle.members for cycle in find_cycles(graph)] == [
        {"tidemark.api._responses", "tidemark.api._settings"}
    ]


def test_one_cycle_is_reported_per_group_of_modules(tmp_path: Path):
    graph = _graph(
        tmp_path,
        {
            "api/_auth.py": "from ._responses import problem\n",
            "api/_responses.py": "from ._settings import ServerSettings\n",
            "api/_settings.py": "from ._auth import parse_clients\nfrom ._app import x\n",
            "api/_app.py": "from ._settings import ServerSettings\n",
            "cli/__init__.py": "from tidemark.cli import _serve\n",
            "cli/_serve.py": "from tidemark.cli import app\n",
        },
    )
    cycles = find_cycles(graph)
    assert [sorted(cycle.members) for cycle in cycles] == [
        [
            "tidemark.api._app",
            "tidemark.api._auth",
            "tidemark.api._responses",
            "tidemark.api._settings",
        ],
        ["tidemark.cli", "tidemark.cli._serve"],
    ]
    assert [e.module for e in cycles[0].edges] == [
        "tidemark.api._settings",
        "tidemark.api._app",
    ]


def test_a_relative_import_above_the_package_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="relative import beyond tidemark"):
        _graph(tmp_path, {"core/__init__.py": "from ... import elsewhere\n"})
