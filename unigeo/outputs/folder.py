"""A build's output folder as a transaction: check it, build under a staging folder, publish at the end.

A build writes only into a new or empty folder, or into one that holds an earlier UniGeo build
(recognised by its ``manifest.json``), and there it replaces only files whose names UniGeo writes
(``OWNED``). Anything else in the folder stops the build before any work, naming the files, so a
user's own files are never touched. A folder equal to or above an input is refused too.

The job writes everything under ``DIR/.unigeo-staging``; ``publish`` then moves the earlier build
aside (its manifest first), moves the new outputs in, the new manifest last, and deletes the earlier
build. A build that fails before ``publish`` leaves the earlier build as it was.

``publish`` keeps a journal (``DIR/.unigeo-publish.json``) of the step it is in. It is written only once
the staged build is complete (reconciled, its manifest and report staged), so a publish killed at any
step is finished by ``recover``, which the next build and ``unigeo audit`` call first: it rolls forward
to the staged build. A folder left by a publish killed without a journal (UniGeo before the journal)
is rolled forward when its staged manifest is there and back to the earlier build otherwise. Neither
build's data is deleted before the other is whole in the folder.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from typing import Any

import fsspec

from unigeo.core.build_files import MANIFEST, read_json
from unigeo.core.errors import ConfigError
from unigeo.core.fileio import is_url, join

STAGING = ".unigeo-staging"
PREVIOUS = ".unigeo-previous"
JOURNAL = ".unigeo-publish.json"
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
    rf"report/gallery_[0-9a-f]+_{_SPLIT}_(sv\.\d{{3}}\.jpg|aerial\.jpg|dsm\.jpg)",
    rf"({re.escape(STAGING)}|{re.escape(PREVIOUS)})(/.*)?",
    re.escape(JOURNAL),
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


def check_output_folder(out: str, inputs: Iterable[str], list_remote: bool = True) -> None:
    """Refuse an output folder a build must not write into; changes nothing.

    Raises:
        ConfigError: ``out`` is a file; it holds an input; it holds files but no UniGeo manifest; or it
            holds files a build does not write (up to ten are named). ``list_remote=False`` skips
            listing a URL folder (a dry run checks everything it can offline).
    """
    check_not_a_file(out)
    for path in inputs:
        if _inside(path, out):
            raise ConfigError(f"--out {out} holds the input {path}; a build must not write where its inputs are "
                              "(give a new folder, e.g. next to the inputs)")
    if is_url(out) and not list_remote:
        return
    found = listing(out)
    if not found:
        return
    leftovers = all(rel.split("/")[0] in (STAGING, PREVIOUS, JOURNAL) for rel in found)
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


def start(out: str) -> str:
    """Create an empty staging folder under ``out`` (clearing one a build killed before it published
    left) and return it. Call ``recover`` first: a staging folder with a journal is a publish to finish."""
    fs, root = _fs(out)
    staging = f"{root}/{STAGING}"
    if fs.exists(f"{root}/{JOURNAL}"):
        raise RuntimeError(f"{out} holds an unfinished publish: recover it first")
    _remove(fs, staging)
    _remove(fs, f"{root}/{PREVIOUS}")
    fs.makedirs(staging, exist_ok=True)
    return join(out, STAGING)


def abandon(out: str) -> None:
    """Delete the staging folder of a failed build; the earlier build stays as it was."""
    fs, root = _fs(out)
    _remove(fs, f"{root}/{STAGING}")


def _journal(fs: Any, root: str, step: str) -> None:
    fs.pipe(f"{root}/{JOURNAL}", json.dumps({"publish": step}).encode())


def publish(out: str) -> None:
    """Replace the earlier build's outputs with the staged ones (the staged build must be complete)."""
    fs, root = _fs(out)
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
        _remove(fs, f"{root}/{JOURNAL}")


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
