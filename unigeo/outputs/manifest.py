"""``DIR/manifest.json``: config, options, code version, counts, and every shard with its checksum."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

import pandas as pd

from unigeo import __version__
from unigeo.core.build_files import MANIFEST, read_cells
from unigeo.core.fileio import glob, join, relative, write_atomic
from unigeo.core.sample import SPLITS
from unigeo.outputs.ledger import LedgerSummary, summarize_ledger
from unigeo.outputs.readers import read_rejects, read_shard_stats
from unigeo.outputs.reconcile import check_build
from unigeo.pipeline.staging import panorama_index

if TYPE_CHECKING:
    from unigeo.sources.config import SourcesConfig
    from unigeo.sources.metros import Metro

FORMAT = "unigeo-build/1"


def reject_kinds(out: str) -> dict[str, dict[str, int]]:
    """Rejected records per kind (panorama, tile, cell, ...) and reason, from ``DIR/rejects``."""
    found: dict[str, dict[str, int]] = {}
    for r in read_rejects(out):
        by_reason = found.setdefault(r["kind"], {})
        by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + 1
    return {k: dict(sorted(v.items())) for k, v in sorted(found.items())}


def collect_manifest(out: str, cfg: SourcesConfig, metros: list[Metro], options: dict[str, Any],
                     counters: dict[str, int], run: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Reconcile the outputs of a finished run (``unigeo.outputs.reconcile``), then collect them into the
    manifest (``write_manifest`` writes it, last). ``prefix``: where the files will lie relative to the
    published top-level manifest (``builds/<build-id>`` for a versioned build; empty in place).

    Raises:
        ReconciliationError: the ledger does not hold exactly one row per input row the job read, or the
            ledger, the shard plan and the shards disagree about a sample; nothing is written.
    """
    input_rows = counters.get("ingest/rows_in", 0)
    ledger = summarize_ledger(out, input_rows)  # one streamed pass: memory grows with samples, not panoramas
    shards = sorted(read_shard_stats(out), key=lambda s: s["shard"])
    reconciliation = check_build(out, ledger, shards, input_rows)
    counts = ledger.counts()
    cells = read_cells(out, ["metro"])
    cells_per_metro = cells["metro"].value_counts() if len(cells) else pd.Series(dtype=int)
    for m in metros:
        counts["per_metro"].setdefault(m.name, {**LedgerSummary().status_counts(),
                                                "samples": dict.fromkeys(SPLITS, 0)})
        counts["per_metro"][m.name]["cells"] = int(cells_per_metro.get(m.name, 0))
    counts["overall"]["cells"] = int(len(cells))
    counts["overall"]["shards"] = len(shards)
    counts["overall"]["shard_bytes"] = int(sum(s["bytes"] for s in shards))
    for field in ("members", "member_bytes"):  # per member kind: how many, and their bytes
        total: dict[str, int] = {}
        for s in shards:
            for kind, n in s.get(field, {}).items():
                total[kind] = total.get(kind, 0) + n
        counts["overall"][field] = dict(sorted(total.items()))
    counts["overall"]["rejects_by_kind"] = reject_kinds(out)
    manifest = {
        "format": FORMAT,
        "unigeo_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": {
            "path": cfg.path,
            "metros": [{"name": m.name, "boundary": m.source, "repairs": list(m.repairs)} for m in metros],
            "panoramas": cfg.panoramas,
            "panorama_sources": [{"path": p.path, "format": p.format, "images": p.images, **p.licence.as_json()}
                                 for p in cfg.panorama_sources],
            # What the ledger's rows number: each source's index, a service's records as staged in the build.
            "panorama_indexes": [p.path if p.format == "native" else panorama_index(n)
                                 for n, p in enumerate(cfg.panorama_sources)],
            "aerial": [r.as_json() for r in cfg.aerial],
            "dsm": [r.as_json() for r in cfg.dsm],
            "pois": cfg.pois,
            "poi_sources": [{"path": p.path, "format": p.format, **p.licence.as_json()} for p in cfg.poi_sources],
        },
        "options": options,
        "seed": options["seed"],
        "counts": counts,
        "shards": [{k: s[k] for k in ("shard", "metro", "split", "samples", "panoramas", "bytes", "sha256")}
                   for s in shards],
        "files": {
            "ledger": [relative(out, p) for p in glob(out, "ledger/*.parquet")],
            "rejects": [relative(out, p) for p in glob(out, "rejects/*.jsonl")],
            "cells": [relative(out, p) for p in glob(out, "cells/*.parquet")],
            "samples": [relative(out, p) for p in glob(out, "samples/*.parquet")],
        },
        "counters": counters,
        "reconciliation": reconciliation,
        "run": run,
        "prefix": prefix,
    }
    return manifest


def write_manifest(out: str, manifest: dict[str, Any]) -> None:
    """``DIR/manifest.json``, whole or not at all: the file that says a staged build is complete."""
    write_atomic(join(out, MANIFEST), json.dumps(manifest, indent=2, sort_keys=False).encode())
