"""Readers of a build's rejects, shard stats and shards, local or remote, through fsspec: no Beam
needed to read a dataset. The manifest and the Parquet tables are read by ``unigeo.core.build_files``."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from typing import Any

from unigeo.core.build_files import read_json
from unigeo.core.fileio import glob, open_binary, read_bytes


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
