"""Readers of the files a build writes that every layer above the core needs: the manifest and the
Parquet tables (ledger, cells, samples), local or remote through fsspec. The outputs (audit, report,
manifest) and the trainer both read a build through these."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from unigeo.core.fileio import exists, glob, join, open_binary, read_bytes
from unigeo.core.sample import CELLS_SCHEMA, LEDGER_SCHEMA, SAMPLES_SCHEMA

MANIFEST = "manifest.json"


def read_json(path: str) -> Any:
    return json.loads(read_bytes(path))


def read_manifest(out: str) -> dict[str, Any]:
    """``DIR/manifest.json``.

    Raises:
        FileNotFoundError: ``out`` holds no manifest.
    """
    return dict(read_json(join(out, MANIFEST)))


def build_root(out: str, manifest: dict[str, Any] | None = None) -> str:
    """The folder that holds a build's files: ``out`` itself, or ``out/<prefix>`` where its manifest names a
    prefix (a versioned build: ``builds/<build-id>``, the layout of object stores). The prefix holds the same
    manifest, so a prefix is a build folder too. ``out`` without a readable manifest is returned as it is."""
    if manifest is None:
        try:
            manifest = read_manifest(out)
        except (OSError, ValueError):
            return out
    prefix = str(manifest.get("prefix") or "").strip("/") if isinstance(manifest, dict) else ""
    if not prefix or out.rstrip("/") == prefix or out.rstrip("/").endswith("/" + prefix):
        return out
    return join(out, prefix)


def read_parquet_files(paths: list[str], schema: pa.Schema | None = None, columns: list[str] | None = None
                       ) -> pd.DataFrame:
    """One frame of several Parquet files (only ``columns`` when given); with no file, an empty frame of
    ``schema``'s columns."""
    frames = []
    for path in paths:
        with open_binary(path) as f:
            frames.append(pq.read_table(f, columns=columns).to_pandas())
    if frames:
        return pd.concat(frames, ignore_index=True)
    if schema is None:
        return pd.DataFrame(columns=columns)
    empty = schema.empty_table().to_pandas()
    return empty[columns] if columns else empty


def read_ledger(out: str) -> pd.DataFrame:
    return read_parquet_files(glob(out, "ledger/*.parquet"), LEDGER_SCHEMA)


def read_cells(out: str, columns: list[str] | None = None) -> pd.DataFrame:
    return read_parquet_files(glob(out, "cells/*.parquet"), CELLS_SCHEMA, columns)


def read_samples(out: str, columns: list[str] | None = None) -> pd.DataFrame:
    """The samples table: one row per sample, where it is and which members it has."""
    return read_parquet_files(glob(out, "samples/*.parquet"), SAMPLES_SCHEMA, columns)


def missing_files(out: str, manifest: dict[str, Any], kinds: tuple[str, ...] | None = None) -> dict[str, list[str]]:
    """The files the manifest lists (``files``: ledger, rejects, cells, samples) that are not under ``out``,
    per kind; only ``kinds`` when given. Kinds with nothing missing are left out."""
    gone = {kind: [f for f in files if not exists(join(out, f))]
            for kind, files in manifest.get("files", {}).items() if kinds is None or kind in kinds}
    return {kind: files for kind, files in gone.items() if files}
