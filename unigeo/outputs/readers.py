"""Readers of a build's own outputs (manifest, ledger, shard stats, cells, shards), local or remote."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

MANIFEST = "manifest.json"


def join(out: str, rel: str) -> str:
    return f"{out.rstrip('/')}/{rel}"


def relative(out: str, path: str) -> str:
    prefix = out.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else path


def match(out: str, pattern: str) -> list[str]:
    """Paths under ``out`` matching a glob, sorted."""
    result = FileSystems.match([join(out, pattern)])[0]
    return sorted(m.path for m in result.metadata_list)


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path) as f:
        return f.read()


def read_json(path: str) -> Any:
    return json.loads(read_bytes(path))


def read_parquet_files(paths: list[str], columns: list[str] | None = None) -> pd.DataFrame:
    frames = []
    for path in paths:
        with FileSystems.open(path) as f:
            frames.append(pq.read_table(f, columns=columns).to_pandas())
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def read_ledger(out: str) -> pd.DataFrame:
    return read_parquet_files(match(out, "ledger/*.parquet"))


def read_cells(out: str) -> pd.DataFrame:
    return read_parquet_files(match(out, "cells/*.parquet"))


def read_rejects(out: str) -> list[dict[str, Any]]:
    """Every rejected record of a build (``DIR/rejects/*.jsonl``)."""
    rows = []
    for path in match(out, "rejects/*.jsonl"):
        rows += [json.loads(line) for line in read_bytes(path).decode().splitlines() if line.strip()]
    return rows


def read_shard_stats(out: str) -> list[dict[str, Any]]:
    return [read_json(p) for p in match(out, "shards/*/*.stats.json")]


def iter_shard(path: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) for each sample of a shard, in file order."""
    with FileSystems.open(path) as f, tarfile.open(fileobj=f, mode="r|") as tar:
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
