"""Open a blob tier from a short textual spec (a file, a folder or a server URL)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tidemark.core import ConfigurationError

from ._cloud_tier import CloudTier
from ._folder_tier import FolderTier
from ._sqlite_tier import SqliteTier
from ._tiers import BlobTier


def open_tier(
    spec: str,
    *,
    name: str | None = None,
    token: str | None = None,
    create: bool = True,
    read_only: bool = False,
) -> BlobTier:
    """The tier ``spec`` names.

    * ``http(s)://host:port/<namespace>``: a :class:`CloudTier` (``token`` becomes a bearer
      ``Authorization`` header);
    * an existing folder, or a path ending in ``/``: a :class:`FolderTier`;
    * any other path: a :class:`SqliteTier` file.

    With ``create=False`` a local path that does not exist raises :class:`ConfigurationError`
    instead of being created. ``read_only`` (implies ``create=False``) opens a local tier so
    that reading changes nothing in it (see :class:`FolderTier`, :class:`SqliteTier`).
    """
    if spec.startswith(("http://", "https://")):
        parts = urlsplit(spec)
        base_path, _, namespace = parts.path.rstrip("/").rpartition("/")
        if not namespace:
            raise ConfigurationError(f"{spec}: a cloud tier URL ends with its namespace")
        base = urlunsplit((parts.scheme, parts.netloc, base_path, "", ""))
        headers = {"Authorization": f"Bearer {token}"} if token else None
        return CloudTier(base, namespace, name=name or "cloud", headers=headers)
    local = Path(spec).expanduser()
    if (read_only or not create) and not local.exists():
        raise ConfigurationError(f"{spec}: no such file or folder")
    if local.is_dir() or spec.endswith(("/", "\\")):
        return FolderTier(local, name=name or "folder", read_only=read_only)
    return SqliteTier(local, name=name or "local", read_only=read_only)
