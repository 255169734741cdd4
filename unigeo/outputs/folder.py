"""A build's output folder as a transaction: check it, build aside, publish at the end.

A build writes only into a new or empty folder, or into one that holds an earlier UniGeo build
(recognised by its ``manifest.json``), and there it replaces only files whose names UniGeo writes
(``OWNED``). Anything else in the folder stops the build before any work, naming the files, so a
user's own files are never touched. A folder equal to or above an input is refused too.

Two layouts (``--layout``, chosen by ``layout_for``):

- **in-place** (a local folder's default): the build's files sit in ``DIR`` itself. The job writes under
  ``DIR/.unigeo-staging``; ``publish`` moves the earlier build aside (its manifest first), moves the new
  outputs in, the new manifest last, and deletes the earlier build. It keeps a journal
  (``DIR/.unigeo-publish.json``) of the step it is in, written only once the staged build is complete
  (reconciled, its manifest staged last), so a publish killed at any step is finished by ``recover``. A
  folder left by a publish killed without a journal (UniGeo before the journal) is rolled forward when its
  staged manifest is there and back to the earlier build otherwise.
- **versioned** (the default on ``gs://``, ``s3://`` and other object stores, where a move is a copy and a
  delete per object): the job writes into a fresh prefix ``DIR/builds/<build-id>/`` that it never moves.
  ``publish`` writes one object, ``DIR/manifest.json``: a copy of the prefix's manifest, whose ``prefix``
  names the folder of the build's files (``build_root`` follows it). Then the earlier builds' prefixes
  are deleted. ``recover`` publishes a complete prefix newer than the published one (a publish killed
  before its pointer was written) and finishes a killed clean-up; a newer prefix without its manifest is
  a build still running or killed before it finished, left to the next build, which removes it.

Either way the staged manifest is the last file a build writes before it publishes, and neither build's
data is deleted before the other is whole in the folder. One build at a time may write into a folder.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
from collections.abc import Sequence
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from unigeo.core.build_files import MANIFEST, read_json
from unigeo.core.errors import ConfigError
from unigeo.core.fileio import is_url, join, relative

STAGING = ".unigeo-staging"
PREVIOUS = ".unigeo-previous"
JOURNAL = ".unigeo-publish.json"
BUILDS = "builds"
POINTER_TMP = ".unigeo-manifest.tmp"
LAYOUTS = ("auto", "in-place", "versioned")
_ID = r"\d{8}T\d{6}Z-[0-9a-f]{8}"
_ID_TIME = "%Y%m%dT%H%M%SZ"
_LOCAL_PROTOCOLS = ("file", "local")
# Top-level entries a build writes, in publishing order (the manifest goes last).
ENTRIES = ("inputs", "cells", "samples", "ledger", "rejects", "plan", "shards", "report", MANIFEST)
FORMAT_PREFIX = "unigeo-build/"

_SPLIT = r"(train|test)"
_PART = r"-\d{5}-of-\d{5}"
# Relative paths (with '/') of the files and folders a build writes.
OWNED = tuple(re.compile(p) for p in (
    r"manifest\.json",
    r"(inputs|cells|samples|ledger|rejects|plan|shards|report)",
    rf"shards/{_SPLIT}",
    rf"shards/{_SPLIT}/[a-z0-9_]+-{_SPLIT}-\d{{6}}\.(tar|stats\.json)",
    rf"shards/{_SPLIT}/[a-z0-9_]+-{_SPLIT}-\d{{6}}\.tar\.tmp-[0-9a-f]{{32}}",
    rf"cells/cells{_PART}\.parquet",
    rf"samples/samples{_PART}\.parquet",
    rf"ledger/ledger{_PART}\.parquet",
    rf"rejects/rejects{_PART}\.jsonl",
    rf"plan/[a-z0-9_]+-{_SPLIT}\.json",
    r"(cells|samples|ledger|rejects)/beam-temp-[^/]+(/.*)?",
    r"inputs/(metros\.geojson|pois\.parquet|poi_rejects\.parquet)",
    r"report/(report\.json|index\.html|hist_[a-z_]+\.png|map_(split|panoramas)_[a-z0-9_]+\.png)",
    rf"report/gallery_[0-9a-f]+_{_SPLIT}_(sv\.\d{{3}}\.jpg|aerial\.jpg|dsm\.(jpg|png))",
    rf"({re.escape(STAGING)}|{re.escape(PREVIOUS)})(/.*)?",
    rf"{BUILDS}(/{_ID}(/.*)?)?",
    re.escape(JOURNAL),
    re.escape(POINTER_TMP),
))


def _fs(out: str) -> tuple[Any, str]:
    fs, root = fsspec.core.url_to_fs(out)
    return fs, root.rstrip("/")


def listing(out: str) -> list[str]:
    """Every file and folder under ``out`` as a path relative to it, sorted (empty when ``out`` is absent)."""
    if not is_url(out):
        found: list[str] = []
        for folder, dirs, files in os.walk(out):
            rel = os.path.relpath(folder, out)
            for name in dirs + files:
                found.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
        return sorted(found)
    fs, root = _fs(out)
    if not fs.exists(root):
        return []
    return sorted(p[len(root) + 1:] for p in fs.find(root, withdirs=True) if p.rstrip("/") != root)


def owned(rel: str) -> bool:
    """True for a relative path that a build writes."""
    return any(p.fullmatch(rel) for p in OWNED)


def _inside(path: str, folder: str) -> bool:
    """True when ``path`` is ``folder`` or lies under it (URLs compared as text, local paths resolved)."""
    if is_url(path) or is_url(folder):
        return path.rstrip("/") == folder.rstrip("/") or path.startswith(folder.rstrip("/") + "/")
    p, f = os.path.realpath(path), os.path.realpath(folder)
    return p == f or p.startswith(f.rstrip(os.sep) + os.sep)


def check_not_a_file(out: str) -> None:
    """Raises ConfigError when ``out`` is an existing file."""
    if not is_url(out) and os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out {out} is a file; give a folder (new, or one a previous build wrote)")


def _parent(path: str) -> str:
    """The folder that holds ``path`` (a URL's prefix up to its last slash)."""
    if is_url(path):  # a bucket's root is no input folder: a build may write anywhere else in the bucket
        head = path.rstrip("/").rpartition("/")[0]
        return head if "/" in head.partition("://")[2] else ""
    return os.path.dirname(os.path.abspath(path))


def check_output_folder(out: str, config: str, data: Sequence[str], list_remote: bool = True) -> None:
    """Refuse an output folder a build must not write into; changes nothing.

    Args:
        config, data: the config file and every input file it names. The config's own folder may hold the
            output (a project folder with ``sources.yaml`` and the build beside it); a data file's may not.

    Raises:
        ConfigError: ``out`` is a file; it holds an input; it lies inside a folder that holds an input
            data file (a world folder with the build inside); it holds files but no UniGeo manifest; or it
            holds files a build does not write (up to ten are named). ``list_remote=False`` skips
            listing a URL folder (a dry run checks everything it can offline).
    """
    check_not_a_file(out)
    for path in (config, *data):
        if _inside(path, out):
            raise ConfigError(f"--out {out} holds the input {path}; a build must not write where its inputs are "
                              "(give a new folder, e.g. next to the inputs)")
    for path in data:
        parent = _parent(path)
        if parent and _inside(out, parent):
            raise ConfigError(f"--out {out} lies inside {parent}, the folder of the input {path}; a build must not "
                              "write among its inputs (give a folder outside it, e.g. next to it)")
    if is_url(out) and not list_remote:
        return
    found = listing(out)
    if not found:
        return
    leftovers = all(rel.split("/")[0] in (STAGING, PREVIOUS, JOURNAL, BUILDS, POINTER_TMP) for rel in found)
    if MANIFEST not in found and not leftovers:
        raise ConfigError(f"--out {out} is not empty and holds no UniGeo build (no {MANIFEST}); a build writes only "
                          f"into a new folder or one a previous build wrote. First entries: {found[:10]}")
    if MANIFEST in found:
        try:
            fmt = str(read_json(join(out, MANIFEST)).get("format", ""))
        except (ValueError, OSError, AttributeError) as e:
            raise ConfigError(f"--out {out}: {MANIFEST} is not a UniGeo manifest ({e}); refusing to replace "
                              "that folder's files") from e
        if not fmt.startswith(FORMAT_PREFIX):
            raise ConfigError(f"--out {out}: {MANIFEST} has format {fmt!r}, not a UniGeo build; refusing to replace "
                              "that folder's files")
    foreign = [rel for rel in found if not owned(rel)]
    if foreign:
        more = f" and {len(foreign) - 10} more" if len(foreign) > 10 else ""
        raise ConfigError(f"--out {out} holds files a UniGeo build did not write: {foreign[:10]}{more}. Move them "
                          "away or choose another folder; a build replaces only its own outputs")


def _remove(fs: Any, path: str) -> None:
    if fs.exists(path):
        fs.rm(path, recursive=True)


def layout_for(out: str, choice: str = "auto") -> str:
    """``in-place`` or ``versioned``: ``choice`` itself, or for ``auto`` versioned on an object store (any
    URL but ``file://``) and in-place on a local disk."""
    if choice not in LAYOUTS:
        raise ConfigError(f"--layout must be one of {', '.join(LAYOUTS)}, got {choice!r}")
    if choice != "auto":
        return choice
    protocol = fsspec.core.split_protocol(out)[0] if is_url(out) else None
    return "versioned" if protocol and protocol not in _LOCAL_PROTOCOLS else "in-place"


def new_build_id(after: str | None = None) -> str:
    """A prefix name that sorts by creation time (``20261201T220000Z-1a2b3c4d``) and after ``after``, the
    newest one in the folder, even where this machine's clock is behind the one that wrote it: recovery
    takes the newest complete prefix for the newest build."""
    when = dt.datetime.now(dt.timezone.utc).replace(microsecond=0, tzinfo=None)
    if after:
        when = max(when, dt.datetime.strptime(after[:16], _ID_TIME) + dt.timedelta(seconds=1))
    return f"{when:{_ID_TIME}}-{secrets.token_hex(4)}"


def start(out: str, layout: str = "in-place") -> str:
    """Clear what a build killed before it published left and return the folder the new build writes into:
    ``DIR/.unigeo-staging`` (in-place) or a new ``DIR/builds/<build-id>`` (versioned). Call ``recover``
    first: a staging folder with a journal is a publish to finish."""
    fs, root = _fs(out)
    if fs.exists(f"{root}/{JOURNAL}"):
        raise RuntimeError(f"{out} holds an unfinished publish: recover it first")
    _remove(fs, f"{root}/{STAGING}")
    _remove(fs, f"{root}/{PREVIOUS}")
    ids = _build_ids(fs, root)
    unfinished = _unfinished(fs, root, ids)  # a published or complete build is never newer than these
    for build_id in unfinished:
        _remove(fs, f"{root}/{BUILDS}/{build_id}")
    kept = [i for i in ids if i not in unfinished]
    if layout == "versioned":
        return join(out, f"{BUILDS}/{new_build_id(kept[-1] if kept else None)}")
    fs.makedirs(f"{root}/{STAGING}", exist_ok=True)
    return join(out, STAGING)


def prefix_of(out: str, staging: str) -> str:
    """The prefix a build's manifest names: where its files lie relative to ``out`` after it is published
    (empty for an in-place build)."""
    rel = relative(out, staging)
    return rel if rel.startswith(f"{BUILDS}/") else ""


def abandon(out: str, staging: str | None = None) -> None:
    """Delete the staging folder (or prefix) of a failed build; the earlier build stays as it was."""
    fs, root = _fs(out)
    prefix = prefix_of(out, staging) if staging else ""
    _remove(fs, f"{root}/{prefix or STAGING}")


def _journal(fs: Any, root: str, step: str) -> None:
    fs.pipe(f"{root}/{JOURNAL}", json.dumps({"publish": step}).encode())


def publish(out: str, staging: str | None = None) -> None:
    """Replace the earlier build with the staged one (which must be complete, its manifest written last):
    for a versioned build by writing one object, the top-level manifest, then deleting the earlier builds."""
    fs, root = _fs(out)
    prefix = prefix_of(out, staging) if staging else ""
    if prefix:
        _point(fs, root, prefix)
        _clean_versioned(fs, root, prefix)
        return
    _journal(fs, root, "aside")
    _finish(fs, root, "aside")


def _finish(fs: Any, root: str, step: str) -> None:
    """Publish from ``step`` on; every step may have been done in part before (a killed publish)."""
    staging, previous = f"{root}/{STAGING}", f"{root}/{PREVIOUS}"
    if step == "aside":  # the earlier build's entries go aside, its manifest first
        fs.makedirs(previous, exist_ok=True)
        for name in (MANIFEST, *ENTRIES[:-1]):
            if fs.exists(f"{root}/{name}"):
                _move(fs, f"{root}/{name}", f"{previous}/{name}")
        _journal(fs, root, step := "in")
    if step == "in":  # the staged entries come in, the manifest last
        for name in ENTRIES:
            if fs.exists(f"{staging}/{name}"):
                _move(fs, f"{staging}/{name}", f"{root}/{name}")
        _journal(fs, root, step := "clean")
    if step == "clean":
        _remove(fs, previous)
        _remove(fs, staging)
        _remove(fs, f"{root}/{BUILDS}")  # versioned builds an in-place one replaced
        _remove(fs, f"{root}/{POINTER_TMP}")
        _remove(fs, f"{root}/{JOURNAL}")


def _point(fs: Any, root: str, prefix: str) -> None:
    """Publish the build at ``prefix``: its manifest becomes the top-level one, in one object write (on a
    local disk through a temporary file and a rename, so that a reader never sees half a manifest)."""
    data = fs.cat_file(f"{root}/{prefix}/{MANIFEST}")
    if isinstance(fs, LocalFileSystem):
        fs.pipe_file(f"{root}/{POINTER_TMP}", data)
        fs.mv(f"{root}/{POINTER_TMP}", f"{root}/{MANIFEST}")
    else:
        fs.pipe_file(f"{root}/{MANIFEST}", data)


def _build_ids(fs: Any, root: str) -> list[str]:
    """The build ids under ``DIR/builds``, oldest first."""
    if not fs.isdir(f"{root}/{BUILDS}"):
        return []
    names = (p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(f"{root}/{BUILDS}", detail=False))
    return sorted(n for n in names if re.fullmatch(_ID, n))


def published_prefix(fs: Any, root: str) -> str | None:
    """The prefix the top-level manifest names (``""`` for an in-place build; None without a readable one)."""
    try:
        return str(json.loads(fs.cat_file(f"{root}/{MANIFEST}")).get("prefix") or "")
    except (FileNotFoundError, ValueError, AttributeError):
        return None


def _clean_versioned(fs: Any, root: str, prefix: str) -> int:
    """Delete what the published build at ``prefix`` replaced: older prefixes and an in-place build's
    entries; returns how many builds went."""
    current = prefix.rsplit("/", 1)[-1]
    _remove(fs, f"{root}/{POINTER_TMP}")
    in_place = [f"{root}/{name}" for name in (*ENTRIES[:-1], STAGING, PREVIOUS) if fs.exists(f"{root}/{name}")]
    for path in in_place:
        fs.rm(path, recursive=True)
    gone = 1 if in_place else 0
    for build_id in _build_ids(fs, root):
        if build_id < current:
            _remove(fs, f"{root}/{BUILDS}/{build_id}")
            gone += 1
    return gone


def _move(fs: Any, src: str, dst: str) -> None:
    """Move ``src`` to ``dst``; where a killed move left part of ``src`` at ``dst`` already (an object store
    moves object by object), the rest joins it."""
    if not fs.exists(dst):
        fs.mv(src, dst, recursive=True)
        return
    if fs.isdir(src):
        for path in sorted(fs.find(src)):
            target = dst + path[len(src):]
            if fs.exists(target):
                fs.rm(target)
            fs.mv(path, target)
        _remove(fs, src)
    else:
        fs.rm(dst)
        fs.mv(src, dst)


def recover(out: str) -> str | None:
    """Finish or undo a publish that was killed; returns one line saying what was done (None: nothing)."""
    fs, root = _fs(out)
    said = _recover_in_place(out, fs, root)
    return _recover_versioned(out, fs, root) if said is None else said


def _recover_versioned(out: str, fs: Any, root: str) -> str | None:
    """Publish the newest complete prefix newer than the published build (its publish was killed before
    the pointer was written), then delete the builds it replaced (a clean-up that was killed)."""
    ids = _build_ids(fs, root)
    if not ids:
        return None
    current = published_prefix(fs, root)
    newest = current.rsplit("/", 1)[-1] if current else ""
    done = []
    complete = [i for i in ids if i > newest and fs.exists(f"{root}/{BUILDS}/{i}/{MANIFEST}")]
    if complete:
        current = f"{BUILDS}/{complete[-1]}"
        _point(fs, root, current)
        done.append(f"published the build {complete[-1]} whose publish was interrupted")
        if not fs.exists(f"{root}/{current}/report/index.html"):
            done.append(f"its report was not finished (`unigeo report {out}` writes it)")
    if current:
        gone = _clean_versioned(fs, root, current)
        if gone:
            done.append(f"removed {gone} earlier build{'s' if gone > 1 else ''} a publish left behind")
    return f"{out}: {'; '.join(done)}" if done else None


def _unfinished(fs: Any, root: str, ids: list[str]) -> list[str]:
    """Of the build ids ``ids``, those not published and without their manifest (running, or killed before
    they finished)."""
    current = published_prefix(fs, root)
    return [i for i in ids if f"{BUILDS}/{i}" != current and not fs.exists(f"{root}/{BUILDS}/{i}/{MANIFEST}")]


def unfinished_builds(out: str) -> list[str]:
    """Prefixes of builds that have not published (running, or killed before they finished), oldest first."""
    fs, root = _fs(out)
    return [f"{BUILDS}/{i}" for i in _unfinished(fs, root, _build_ids(fs, root))]


def _recover_in_place(out: str, fs: Any, root: str) -> str | None:
    journal, staging, previous = f"{root}/{JOURNAL}", f"{root}/{STAGING}", f"{root}/{PREVIOUS}"
    if fs.exists(journal):
        try:
            step = str(json.loads(fs.cat(journal)).get("publish"))
        except ValueError:  # cut short while written: the step before it was done
            step = "aside"
        if step not in ("aside", "in", "clean"):
            step = "aside"
        _finish(fs, root, step)
        return f"{out}: finished a publish that was interrupted ({step} step): the new build is in place"
    if not fs.exists(previous):
        return None
    if fs.exists(f"{root}/{MANIFEST}") and not fs.exists(f"{previous}/{MANIFEST}"):
        _remove(fs, previous)  # only the clean-up was left
        _remove(fs, staging)
        return f"{out}: removed the earlier build a finished publish left aside"
    if fs.exists(f"{staging}/{MANIFEST}"):  # an interrupted publish without a journal: the staged build is whole
        _finish(fs, root, "aside")
        return f"{out}: finished a publish that was interrupted: the new build is in place"
    for name in (*ENTRIES[:-1], MANIFEST):  # the staged build is not whole: the earlier one comes back
        if fs.exists(f"{previous}/{name}"):
            _move(fs, f"{previous}/{name}", f"{root}/{name}")
    _remove(fs, previous)
    _remove(fs, staging)
    return (f"{out}: rolled back a publish that was interrupted before the new build was whole: the earlier "
            "build is back")
