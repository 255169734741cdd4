"""Readers of a build's own outputs (manifest, ledger, cells, samples, rejects, shard stats, shards),
local or remote, through fsspec: no Beam needed to read a dataset."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from unigeo.core.fileio import glob, join, open_binary, read_bytes
from unigeo.core.sample import CELLS_SCHEMA, LEDGER_SCHEMA, SAMPLES_SCHEMA

MANIFEST = "manifest.json"


def read_json(path: str) -> Any:
    return json.loads(read_bytes(path))


def read_manifest(out: str) -> dict[str, Any]:
    return dict(read_json(join(out, MANIFEST)))


def read_parquet_files(paths: list[str], schema: pa.Schema | None = None) -> pd.DataFrame:
    """One frame of several Parquet files; with no file, an empty frame of ``schema``'s columns."""
    frames = []
    for path in paths:
        with open_binary(path) as f:
            frames.append(pq.read_table(f).to_pandas())
    if frames:
        return pd.concat(frames, ignore_index=True)
    return schema.empty_table().to_pandas() if schema is not None else pd.DataFrame()


def read_ledger(out: str) -> pd.DataFrame:
    return read_parquet_files(glob(out, "ledger/*.parquet"), LEDGER_SCHEMA)


def read_cells(out: str) -> pd.DataFrame:
    return read_parquet_files(glob(out, "cells/*.parquet"), CELLS_SCHEMA)


def read_samples(out: str) -> pd.DataFrame:
    """The samples table: one row per sample, where it is and which members it has."""
    return read_parquet_files(glob(out, "samples/*.parquet"), SAMPLES_SCHEMA)


def read_rejects(out: str) -> list[dict[str, Any]]:
    """Every rejected record of a build (``DIR/rejects/*.jsonl``)."""
    rows = []
    for path in glob(out, "rejects/*.jsonl"):
        rows += [json.loads(line) for line in read_bytes(path).decode().splitlines() if line.strip()]
    return rows


def read_shard_stats(out: str) -> list[dict[str, Any]]:
    return [read_json(p) for p in glob(out, "shards/*/*.stats.json")]


def iter_shard(path: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) for each sample of a shard, in file order."""
    with open_binary(path) as f, tarfile.open(fileobj=f, mode="r|") as tar:
        key: str | None = None
        members: dict[str, bytes] = {}
        for info in tar:
            if not info.isfile():
                continue
            k, _, ext = info.name.partition(".")
            if key is not None and k != key:
                yield key, members
                members = {}
            key = k
            data = tar.extractfile(info)
            members[ext] = data.read() if data else b""
        if key is not None:
            yield key, members
