"""Readers of a build's rejects, shard stats and shards (``iter_shard``, beside the writer in
``pipeline.shards``), local or remote, through fsspec: no Beam needed to read a dataset. The manifest
and the Parquet tables are read by ``unigeo.core.build_files``."""

from __future__ import annotations

import json
from typing import Any

from unigeo.core.build_files import read_json
from unigeo.core.fileio import glob, read_bytes
from unigeo.pipeline.shards import iter_shard

__all__ = ["iter_shard", "read_rejects", "read_shard_stats"]


def read_rejects(out: str) -> list[dict[str, Any]]:
    """Every rejected record of a build (``DIR/rejects/*.jsonl``)."""
    rows = []
    for path in glob(out, "rejects/*.jsonl"):
        rows += [json.loads(line) for line in read_bytes(path).decode().splitlines() if line.strip()]
    return rows


def read_shard_stats(out: str) -> list[dict[str, Any]]:
    return [read_json(p) for p in glob(out, "shards/*/*.stats.json")]
