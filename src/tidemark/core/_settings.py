"""The one settings object: a TOML file plus ``TIDEMARK_*`` environment overrides.

Each capability declares its own section as a dataclass and asks for it with
:meth:`Settings.section`; ``core`` knows nothing of their fields. For a section ``storage`` and a
field ``memory_limit_mb`` the file key is ``[storage] memory_limit_mb`` and the environment
variable ``TIDEMARK_STORAGE_MEMORY_LIMIT_MB`` (which wins).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from ._errors import ConfigurationError

T = TypeVar("T")

SETTINGS_FILE_ENV = "TIDEMARK_SETTINGS"
DEFAULT_SETTINGS_FILE = "tidemark.toml"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_duration(text: str | float | int) -> float:
    """Parse a duration to seconds: a number (seconds) or units such as ``90d``, ``1h30m``, ``250ms``.

    Raises ``ValueError`` on anything else, including negative numbers.
    """
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        stripped = text.strip()
        try:
            seconds = float(stripped)
        except ValueError:
            pos, seconds = 0, 0.0
            compact = stripped.replace(" ", "")
            for match in _DURATION_PART.finditer(compact):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
                pos = match.end()
            if pos != len(compact) or not compact:
                raise ValueError(
                    f"not a duration: {text!r} (use e.g. 30s, 5m, 1h30m, 90d)"
                ) from None
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {text!r}")
    return seconds


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        blank = value is None or (isinstance(value, str) and value.strip().lower() in ("", "none"))
        if blank and type(None) in args:
            return None
        last: Exception | None = None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigurationError as exc:
                last = exc
        raise last or ConfigurationError(f"{where}: invalid value {value!r}")
    if origin in (list, tuple, frozenset, set):
        items = (
            [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value
        )
        if not isinstance(items, list | tuple | set | frozenset):
            raise ConfigurationError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else str
        coerced = [_coerce(item, inner, where) for item in items]
        return origin(coerced)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigurationError(f"{where}: expected a boolean, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigurationError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigurationError(f"{where}: expected an integer, got {value!r}") from None
    if hint is float:
        try:
            return parse_duration(value) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"{where}: expected a number or duration, got {value!r}"
            ) from None
    if hint is str:
        if not isinstance(value, str):
            raise ConfigurationError(f"{where}: expected a string, got {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, str | Path):
            raise ConfigurationError(f"{where}: expected a path, got {value!r}")
        return Path(value).expanduser()
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigurationError(f"{where}: expected a table, got {value!r}")
        return value
    return value


class Settings:
    """Immutable view of configuration: file sections plus environment overrides.

    Thread-safe (read-only). Build one with :meth:`load` at start-up and pass it down.
    """

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        source: Path | None = None,
    ) -> None:
        self._data = {k: dict(v) if isinstance(v, Mapping) else v for k, v in (data or {}).items()}
        self._env = dict(os.environ if env is None else env)
        self.source = source

    @classmethod
    def load(
        cls, path: str | Path | None = None, *, env: Mapping[str, str] | None = None
    ) -> Settings:
        """Read ``path``, else ``$TIDEMARK_SETTINGS``, else ``./tidemark.toml`` if it exists.

        Raises :class:`ConfigurationError` when a named file is missing or is not valid TOML.
        """
        environ = dict(os.environ if env is None else env)
        explicit = path or environ.get(SETTINGS_FILE_ENV)
        candidate = Path(explicit).expanduser() if explicit else Path(DEFAULT_SETTINGS_FILE)
        if not candidate.exists():
            if explicit:
                raise ConfigurationError(f"settings file not found: {candidate}")
            return cls({}, environ, None)
        try:
            data = tomllib.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"cannot read settings file {candidate}: {exc}") from exc
        return cls(data, environ, candidate)

    def raw(self, name: str) -> dict[str, Any]:
        """The file's table ``[name]`` as a plain dict (empty when absent), without overrides."""
        value = self._data.get(name, {})
        return dict(value) if isinstance(value, Mapping) else {}

    def section(self, name: str, schema: type[T], **overrides: Any) -> T:
        """Build the dataclass ``schema`` from ``[name]``, environment, then ``overrides``.

        Precedence, lowest first: dataclass defaults < file < ``TIDEMARK_<NAME>_<FIELD>`` <
        keyword overrides whose value is not ``None`` (how CLI options reach a section). Unknown
        file keys and uncoercible values raise :class:`ConfigurationError`.
        """
        if not dataclasses.is_dataclass(schema):
            raise TypeError(f"{schema!r} is not a dataclass")
        hints = typing.get_type_hints(schema)
        fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
        table = self.raw(name)
        unknown = sorted(set(table) - set(fields))
        if unknown:
            raise ConfigurationError(f"unknown key(s) in [{name}]: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for field_name in fields:
            env_key = f"TIDEMARK_{name.upper()}_{field_name.upper()}".replace("-", "_")
            if field_name in overrides and overrides[field_name] is not None:
                raw, where = overrides[field_name], f"{name}.{field_name}"
            elif env_key in self._env:
                raw, where = self._env[env_key], env_key
            elif field_name in table:
                raw, where = table[field_name], f"[{name}] {field_name}"
            else:
                continue
            values[field_name] = _coerce(raw, hints[field_name], where)
        try:
            return schema(**values)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"invalid [{name}] settings: {exc}") from exc
