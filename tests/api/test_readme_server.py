"""The README's server settings example loads as written."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support import REPO_ROOT
from tidemark.api import ServerSettings
from tidemark.core import Settings


def test_the_server_limits_example_loads_into_server_settings(tmp_path: Path):
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Access control and operation") :]
    [block] = re.findall(r"```toml\n(.*?)```", section[: section.index("\n## ")], re.DOTALL)
    example = tmp_path / "tidemark.toml"
    example.write_text("\n".join(line.strip() for line in block.splitlines()), encoding="utf-8")
    loaded = Settings.load(example)
    assert set(loaded.raw("server")) == {
        "idle_timeout",
        "header_timeout",
        "body_timeout",
        "max_connections",
    }
    settings = loaded.section("server", ServerSettings)
    assert (settings.idle_timeout, settings.header_timeout, settings.body_timeout) == (5, 5, 10)
    assert settings.max_connections == 1000
    settings.check()
