"""Local paths and remote URLs (``gs://``, ``s3://``, ...) behind one small interface, through fsspec.

Readers of inputs and of a build's outputs, and the shard writer, use these functions, so nothing
but the Beam sinks needs Beam to touch a file. Remote filesystems come from fsspec's optional
backends: ``gcsfs`` for ``gs://`` (the ``gcp`` extra), ``s3fs`` for ``s3://`` (the ``s3`` extra).
"""

from __future__ import annotations

import glob as _glob
import hashlib
import os
import re
import threading
from typing import IO, Any

import fsspec

from unigeo.core.errors import AccessError, ConfigError

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_url(path: str) -> bool:
    """True for ``scheme://...`` paths."""
    return bool(_SCHEME.match(path))


def resolve(path: str, base_dir: str) -> str:
    """Resolve ``path`` against ``base_dir`` unless it is absolute or a URL."""
    if is_url(path) or os.path.isabs(path):
        return path
    if is_url(base_dir):
        return base_dir.rstrip("/") + "/" + path
    return os.path.normpath(os.path.join(base_dir, path))


# Relative paths whose join with a folder needs no normalisation: no '.', '..' or empty segment, no trailing '/'.
_PLAIN_RELATIVE = re.compile(r"^(?![a-zA-Z][a-zA-Z0-9+.-]*://)(?!/)(?!.*(?:^|/)\.{1,2}(?:/|$))(?!.*//)(?!.*/$).+$")


def resolve_all(paths: list[str], base_dir: str) -> list[str]:
    """``resolve`` for many paths against one folder, fast for plain relative paths (an index of a million
    panoramas resolves in well under a second)."""
    if is_url(base_dir):
        prefix = base_dir.rstrip("/") + "/"
    else:
        base = os.path.normpath(base_dir)
        prefix = "" if base == "." else base.rstrip("/") + "/"
    match = _PLAIN_RELATIVE.match
    return [prefix + p if match(p) else resolve(p, base_dir) for p in paths]


def parent(path: str) -> str:
    """The folder holding ``path`` (works for URLs too)."""
    if is_url(path):
        return path.rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(path))


def join(folder: str, rel: str) -> str:
    return f"{folder.rstrip('/')}/{rel}"


def source_path(path: str, root: str | None) -> str:
    """How a sample records an input file: relative to ``root`` (the config's folder) when both are local
    (``../imagery/a.tif`` too), relative when a URL lies under a URL ``root``, else as it is, so that a
    sample never carries the build machine's absolute paths of files beside its config."""
    if root is None:
        return path
    if is_url(path) or is_url(root):
        return relative(root, path)
    return os.path.relpath(path, root)


def relative(folder: str, path: str) -> str:
    """``path`` relative to ``folder`` when it lies inside it, else unchanged."""
    prefix = folder.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else path


def gdal_path(path: str) -> str:
    """A path GDAL can open: ``gs://b/k`` -> ``/vsigs/b/k``, ``s3://b/k`` -> ``/vsis3/b/k``."""
    if path.startswith("gs://"):
        return "/vsigs/" + path[len("gs://"):]
    if path.startswith("s3://"):
        return "/vsis3/" + path[len("s3://"):]
    if path.startswith(("http://", "https://")):
        return "/vsicurl/" + path
    return path


# Bucket names of Cloud Storage and S3: 3-63 lowercase letters, digits, dots, hyphens (and underscores on
# Cloud Storage), starting and ending with a letter or digit.
_BUCKET = re.compile(r"^[a-z0-9][-_a-z0-9.]{1,61}[a-z0-9]$")
_CREDENTIALS = {"gs": "`gcloud auth application-default login` or GOOGLE_APPLICATION_CREDENTIALS",
                "s3": "AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"}
REMOTE_TIMEOUT_S = 10.0  # how long the first access of a remote URL may take (UNIGEO_REMOTE_TIMEOUT_S overrides)


def check_bucket(url: str) -> None:
    """Refuse a ``gs://`` or ``s3://`` URL whose bucket name the store would refuse, before any network access.

    Raises:
        ConfigError: naming the URL and the rule.
    """
    scheme, _, rest = url.partition("://")
    if scheme not in ("gs", "s3"):
        return
    bucket = rest.split("/", 1)[0]
    if not _BUCKET.match(bucket):
        raise ConfigError(f"{url}: {bucket!r} is not a valid {scheme}:// bucket name (3-63 lowercase letters, "
                          "digits, dots and hyphens, starting and ending with a letter or digit)")


def probe(url: str, timeout_s: float | None = None) -> None:
    """Reach ``url`` once (its metadata; a missing object is fine), within ``timeout_s`` seconds, so that a
    missing credential or network fails in one line instead of after a store client's retries.

    Raises:
        ConfigError: an invalid bucket name.
        AccessError: the store refused or did not answer in time; the message names the URL and what to check.
    """
    if not is_url(url) or url.startswith(("file://", "memory://")):
        return
    check_bucket(url)
    timeout = timeout_s if timeout_s is not None else float(os.environ.get("UNIGEO_REMOTE_TIMEOUT_S",
                                                                            REMOTE_TIMEOUT_S))
    outcome: dict[str, BaseException] = {}

    def reach() -> None:
        try:
            fs, p = _fs(url)
            fs.info(p)
        except FileNotFoundError:
            pass
        except BaseException as e:  # noqa: BLE001 - reported to the caller's thread
            outcome["error"] = e

    worker = threading.Thread(target=reach, name=f"probe {url}", daemon=True)
    worker.start()
    worker.join(timeout)
    scheme = url.split("://", 1)[0]
    check = f"check the network and the credentials ({_CREDENTIALS[scheme]})" if scheme in _CREDENTIALS else \
        "check the network and the credentials"
    if worker.is_alive():
        raise AccessError(f"{url}: no answer in {timeout:g} s; {check}")
    if "error" in outcome:
        e = outcome["error"]
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise AccessError(f"{url}: cannot be read ({type(e).__name__}: {first}); {check}")


def _fs(path: str) -> tuple[Any, str]:
    return fsspec.core.url_to_fs(path)


def open_binary(path: str) -> IO[bytes]:
    """Open a local file or a URL for reading bytes.

    Raises:
        FileNotFoundError: nothing at ``path``.
    """
    if not is_url(path):
        return open(path, "rb")
    fs, p = _fs(path)
    return fs.open(p, "rb")


def read_bytes(path: str) -> bytes:
    with open_binary(path) as f:
        return f.read()


def create(path: str) -> IO[bytes]:
    """Open ``path`` for writing bytes, creating its folder when needed (object stores have none)."""
    if not is_url(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return open(path, "wb")
    fs, p = _fs(path)
    return fs.open(p, "wb")


def write_bytes(path: str, data: bytes) -> None:
    """Write a whole file, creating its folder when needed."""
    with create(path) as f:
        f.write(data)


def write_atomic(path: str, data: bytes) -> None:
    """Write a whole file that no reader sees in part: on a local disk through a temporary file in the same
    folder and a rename; an object store's upload is all-or-nothing already."""
    if is_url(path):
        write_bytes(path, data)
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    write_bytes(tmp, data)
    os.replace(tmp, path)


def exists(path: str) -> bool:
    if not is_url(path):
        return os.path.exists(path)
    fs, p = _fs(path)
    return bool(fs.exists(p))


def size(path: str) -> int | None:
    """Bytes of the file at ``path``; None where there is none."""
    try:
        if not is_url(path):
            return os.path.getsize(path) if os.path.isfile(path) else None
        fs, p = _fs(path)
        return int(fs.size(p))
    except FileNotFoundError:
        return None


def is_dir(path: str) -> bool:
    if not is_url(path):
        return os.path.isdir(path)
    fs, p = _fs(path)
    return bool(fs.isdir(p))


def glob(folder: str, pattern: str) -> list[str]:
    """Paths under ``folder`` matching a glob, sorted, spelled like ``folder`` (URL or local path)."""
    if not is_url(folder):
        return sorted(_glob.glob(join(folder, pattern)))
    fs, root = _fs(folder)
    return sorted(fs.unstrip_protocol(p) for p in fs.glob(f"{root.rstrip('/')}/{pattern}"))


def remove(paths: list[str]) -> None:
    for path in paths:
        fs, p = _fs(path)
        fs.rm(p)


def rename(src: str, dst: str) -> None:
    """Move ``src`` to ``dst``, replacing it (atomic on a local disk)."""
    if not is_url(src) and not is_url(dst):
        os.replace(src, dst)
        return
    fs, s = _fs(src)
    fs.mv(s, _fs(dst)[1])


def sha256_stream(stream: IO[bytes], chunk: int = 1 << 20) -> tuple[int, str]:
    """(bytes, sha256 hex) of everything left in a readable stream."""
    digest = hashlib.sha256()
    size = 0
    while data := stream.read(chunk):
        digest.update(data)
        size += len(data)
    return size, digest.hexdigest()


def sha256_file(path: str) -> tuple[int, str]:
    """(bytes, sha256 hex) of a file."""
    with open_binary(path) as f:
        return sha256_stream(f)
