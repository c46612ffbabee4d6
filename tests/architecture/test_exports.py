"""Every public package's ``__all__`` is its whole public API: each name exists, none is private,
and nothing public sits in the package namespace without being listed."""

from __future__ import annotations
import __future__

import importlib
import types

import pytest

from tests.support import REPO_ROOT

SOURCE = REPO_ROOT / "src" / "tidemark"

#: The command line's ``__all__`` still lists its private command modules while the CLI is being
#: rewritten; it is held to its entry points only (``test_cli_exports_its_entry_points``).
CLI = "tidemark.cli"

_FUTURE_FEATURE = type(__future__.annotations)


def _public_packages() -> list[str]:
    """Every package under ``src/tidemark`` whose dotted name has no ``_`` part."""
    names = []
    for init in sorted(SOURCE.rglob("__init__.py")):
        parts = init.parent.relative_to(SOURCE.parent).parts
        if not any(part.startswith("_") for part in parts):
            names.append(".".join(parts))
    return names


PACKAGES = [name for name in _public_packages() if name != CLI]


def _unlisted_public_names(module: types.ModuleType) -> list[str]:
    """Public attributes that are neither listed in ``__all__`` nor a submodule (subpackages
    appear as attributes of their parent once imported) nor a ``__future__`` feature."""
    listed = set(getattr(module, "__all__", ()))
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and name not in listed
        and not isinstance(value, types.ModuleType | _FUTURE_FEATURE)
    )


def test_unlisted_public_names_are_found():
    module = types.ModuleType("tidemark.example")
    exec(
        "from __future__ import annotations\n"
        "import json\n"
        "from collections import OrderedDict\n"
        "__all__ = ['Listed']\n"
        "class Listed: ...\n"
        "def helper(): ...\n"
        "def _private(): ...\n"
        "LIMIT = 3\n",
        vars(module),
    )
    assert _unlisted_public_names(module) == ["LIMIT", "OrderedDict", "helper"]


def test_the_walk_finds_every_public_package():
    assert {
        "tidemark.core",
        "tidemark.cache",
        "tidemark.fhir.client",
        "tidemark.fhir.packages",
        "tidemark.fhir.schema",
        "tidemark.store",
        "tidemark.mappings",
        "tidemark.schemas",
        "tidemark.sync",
        "tidemark.tracking",
        "tidemark.api",
    } <= set(PACKAGES)


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_existing_public_names_once(name: str):
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        # A package that only holds subpackages (``tidemark``, ``tidemark.fhir``) needs no list.
        assert not _unlisted_public_names(module), f"{name} has public names but no __all__"
        return
    assert [n for n in exported if not hasattr(module, n)] == [], f"{name}.__all__: missing names"
    assert [n for n in exported if n.startswith("_")] == [], f"{name}.__all__: private names"
    assert len(set(exported)) == len(exported), f"{name}.__all__: a name listed twice"


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_of_the_package_is_in_all(name: str):
    module = importlib.import_module(name)
    assert _unlisted_public_names(module) == [], f"{name}: public names not in __all__"


def test_cli_exports_its_entry_points():
    cli = importlib.import_module(CLI)
    assert {"app", "main"} <= set(cli.__all__)
    assert [n for n in cli.__all__ if not hasattr(cli, n)] == []
