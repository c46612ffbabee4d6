"""The README section on query filters and the search index runs as written."""

from __future__ import annotations

import re
import sys
import types

from tests.support import REPO_ROOT


def blocks() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("### Query filters and the search index")
    end = text.index("\n### ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], re.DOTALL)


def test_the_search_index_example_runs_and_prints_what_it_says(tmp_path, monkeypatch, capsys):
    [code] = blocks()
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType("readme_search_index")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code, "README.md search index block", "exec", dont_inherit=True), module.__dict__)
    printed = capsys.readouterr().out.splitlines()
    expected = re.findall(r"# (\[.*?\])$", code, re.MULTILINE)
    assert printed == expected == ["['Lakeside']", "['ada']"]
