"""The README's FHIR search example runs as written."""

from __future__ import annotations

import re

from tests.support import REPO_ROOT


def test_the_readme_search_example_runs(capsys):
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("### FHIR search (`tidemark.fhir.search`)")
    end = text.index("\n### ", start + 1)
    (code,) = re.findall(r"```python\n(.*?)```", text[start:end], re.DOTALL)
    exec(compile(code, "README.md FHIR search example", "exec", dont_inherit=True), {})
    printed = capsys.readouterr().out
    assert printed.strip() == "Observation.subject.where(resolve() is Patient)"
    expected = re.search(r"^# (Observation\.subject.*)$", code, re.MULTILINE)
    assert expected is not None and expected.group(1) == printed.strip()
