"""Server settings: secure defaults refuse what would expose the server."""

from __future__ import annotations

import pytest

from tidemark.api import ServerSettings, is_loopback
from tidemark.core import ConfigurationError


def test_non_loopback_without_credentials_is_refused():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    with pytest.raises(ConfigurationError, match="non-loopback"):
        ServerSettings(host="0.0.0.0").check()
    ServerSettings(host="0.0.0.0", clients=["key:secret"]).check()
