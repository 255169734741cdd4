"""Local paths and remote URLs (``gs://``, ``s3://``) behind one small interface."""

from __future__ import annotations

import os
import re
from typing import IO

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_url(path: str) -> bool:
    """True for ``scheme://...`` paths, which are left to Beam FileSystems or GDAL."""
    return bool(_SCHEME.match(path))


def resolve(path: str, base_dir: str) -> str:
    """Resolve ``path`` against ``base_dir`` unless it is absolute or a URL."""
    if is_url(path) or os.path.isabs(path):
        return path
    if is_url(base_dir):
        return base_dir.rstrip("/") + "/" + path
    return os.path.normpath(os.path.join(base_dir, path))


def parent(path: str) -> str:
    """The folder holding ``path`` (works for URLs too)."""
    if is_url(path):
        return path.rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(path))


def open_binary(path: str) -> IO[bytes]:
    """Open a local file or a URL for reading bytes."""
    if is_url(path):
        from apache_beam.io.filesystems import FileSystems  # only needed for remote paths

        return FileSystems.open(path)
    return open(path, "rb")


def gdal_path(path: str) -> str:
    """A path GDAL can open: ``gs://b/k`` -> ``/vsigs/b/k``, ``s3://b/k`` -> ``/vsis3/b/k``."""
    if path.startswith("gs://"):
        return "/vsigs/" + path[len("gs://"):]
    if path.startswith("s3://"):
        return "/vsis3/" + path[len("s3://"):]
    if path.startswith(("http://", "https://")):
        return "/vsicurl/" + path
    return path
