"""The README section of tidemark.tracking runs as written."""

from __future__ import annotations

import re
import sys
import tomllib
import types

import pytest

from tests.support import REPO_ROOT
from tidemark.core import Settings
from tidemark.tracking import TypeCaches

from .models import DeviceKind


def section() -> str:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Tracked entity updates (`tidemark.tracking`)")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section(), re.DOTALL)


@pytest.mark.parametrize("index", range(5))
def test_python_examples_run(index, tmp_path, monkeypatch, capsys):
    code = blocks("python")
    assert len(code) == 5
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TIDEMARK_TYPE_CACHE_ENABLED", raising=False)
    module = types.ModuleType(f"readme_block_{index}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    # dont_inherit: this test file's "from __future__ import annotations" must not leak in.
    program = compile(code[index], f"README.md python block {index + 1}", "exec", dont_inherit=True)
    exec(program, module.__dict__)


def test_the_settings_example_is_valid_configuration():
    [toml] = blocks("toml")
    settings = Settings(tomllib.loads(toml), env={})
    caches = TypeCaches(settings)
    location = caches.register(DeviceKind, "code", name="location")
    other = caches.register(DeviceKind, "label", name="other")
    assert (location.settings.maximum_size, other.settings.maximum_size) == (500, 10000)
    assert other.settings.expire_after_write == 600
