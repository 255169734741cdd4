"""The launcher's steps at the paper's scale: manifest counts, report and audit over a 60M-row ledger.

Builds the tiny synthetic world once (real shards, rejects and manifest, so the report's gallery reads
real samples), then replaces its tables with synthetic ones in the build's schemas: ``--cells`` cells
over ``--metros`` metro outlines, a sample per cell and split (``bench_report``'s generator: 1 to 120
kept panoramas each), and a ledger of ``--rows`` rows (row groups of 1M rows over 8 files, in a
shuffled row order): every sample's kept panoramas, the rest not selected or rejected. Shard plans and
shard stats that agree with the ledger are written too, so the build's self-check has real work; each
synthetic shard is a link to a real shard of its split.

Each step then runs in a process of its own, and the bench samples the resident memory of that process
(``bench_memory.measure``):

  - ``manifest``: ``collect_manifest`` (one streamed pass over the ledger for every count and the
    self-check against the plans and shard stats);
  - ``report``: ``build_report``;
  - ``audit``: the audit's ledger checks (``audit_ledger``: one row per input row, the manifest's sums,
    kept panoramas against the shards, plans, panoramas per cell), given the row-to-sample index the
    audit's shard pass builds (4 bytes per input row), here made from the synthetic samples; reading
    60M panoramas' shards is a worker's job, not the launcher's.

Usage: python -m bench.bench_ledger [--rows 60000000] [--cells 800000] [--metros 14] [--out /tmp/unigeo-bench-ledger]
                                    [--reuse] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.bench_report import synthetic_cells, synthetic_samples, tiny_build, write_table
from bench.record import emit, measure
from unigeo.core.sample import CELLS_SCHEMA, LEDGER_SCHEMA, SAMPLES_SCHEMA, keys_sha256, sample_key
from unigeo.pipeline.options import BuildOptions
from unigeo.pipeline.shards import PLAN_FOLDER, plan_record, plan_shards
from unigeo.pipeline.staging import stage_inputs

LEDGER_FILES = 8
ROW_GROUP = 1 << 20
REASONS = np.array(["outside_metros", "year_out_of_range", "bad_date", "duplicate_id"])


def write_ledger(out: str, samples: Any, rows: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """The synthetic ledger under ``out/ledger``; returns the owner of each row (sample number, -1 where
    not kept) and the sample keys by number."""
    kept_of = np.repeat(np.arange(len(samples), dtype=np.int32), samples["panoramas"].to_numpy())
    if len(kept_of) > rows:
        raise SystemExit(f"{len(kept_of):,} kept panoramas need more than --rows {rows:,}")
    rest = rows - len(kept_of)
    sample_of = np.concatenate([kept_of, rng.integers(0, len(samples), rest).astype(np.int32)])
    status = np.concatenate([np.zeros(len(kept_of), np.int8), rng.choice([1, 2], rest, p=[0.6, 0.4]).astype(np.int8)])
    row_no = rng.permutation(rows)  # where each ledger line's panorama sits in the index
    owner = np.full(rows, -1, dtype=np.int32)
    owner[row_no[: len(kept_of)]] = kept_of
    order = rng.permutation(rows)  # the order the job happened to write the lines in
    metro = pa.array(samples["metro"].to_numpy(), pa.string())
    cell = pa.array(samples["cell"].to_numpy(), pa.string())
    split = pa.array(samples["split"].to_numpy(), pa.string())
    statuses = pa.array(["kept", "not_selected", "rejected"])
    keys = [sample_key(c, s) for c, s in zip(samples["cell"], samples["split"])]
    os.makedirs(os.path.join(out, "ledger"), exist_ok=True)
    per_file = -(-rows // LEDGER_FILES)
    for f in range(LEDGER_FILES):
        path = os.path.join(out, "ledger", f"ledger-{f:05d}-of-{LEDGER_FILES:05d}.parquet")
        with pq.ParquetWriter(path, LEDGER_SCHEMA) as writer:
            for start in range(f * per_file, min(rows, (f + 1) * per_file), ROW_GROUP):
                idx = order[start:min(rows, (f + 1) * per_file, start + ROW_GROUP)]
                s, st, r = sample_of[idx], status[idx], row_no[idx]
                rejected = st == 2
                unknown_metro = rejected & (rng.random(len(idx)) < 0.3)
                metro_col = pc.if_else(pa.array(unknown_metro), "", metro.take(s))
                reason = pa.array(np.where(rejected, REASONS[rng.integers(0, len(REASONS), len(idx))], ""))
                writer.write_table(pa.table({
                    "row": pa.array(r, pa.int64()),
                    "pano_id": pc.binary_join_element_wise("p", pa.array(r).cast(pa.string()), ""),
                    "metro": metro_col, "cell": pc.if_else(pa.array(unknown_metro), "", cell.take(s)),
                    "split": pc.if_else(pa.array(rejected), "", split.take(s)),
                    "status": statuses.take(pa.array(st)), "reason": reason, "detail": pa.nulls(len(idx), pa.string()),
                    "year": pa.array(np.where(split.take(s).to_numpy(zero_copy_only=False) == "test", 2023,
                                              rng.integers(2017, 2023, len(idx))), pa.int64()),
                }, schema=LEDGER_SCHEMA))
    return owner, keys


def write_plans_and_stats(out: str, samples: Any, max_samples: int = 1000) -> list[dict[str, Any]]:
    """Shard plans and shard stats that agree with the samples, as the job would write them."""
    stats = []
    for (metro, split), group in samples.groupby(["metro", "split"], sort=True):
        keys = [sample_key(c, split) for c in group["cell"]]
        panos = dict(zip(keys, group["panoramas"].tolist()))
        sizes = sorted((k, 400_000) for k in keys)
        shards = plan_shards(sizes, max_samples, 10**12)
        record = plan_record(str(metro), str(split), sizes, shards)
        os.makedirs(os.path.join(out, PLAN_FOLDER), exist_ok=True)
        with open(os.path.join(out, PLAN_FOLDER, f"{metro}-{split}.json"), "w") as f:
            json.dump(record, f)
        for entry, shard_keys in zip(record["shards"], shards):
            s = {"shard": entry["shard"], "metro": metro, "split": split, "number": entry["number"],
                 "samples": len(shard_keys), "bytes": entry["bytes"], "sha256": "0" * 64,
                 "panoramas": sum(panos[k] for k in shard_keys), "members": {"json": len(shard_keys)},
                 "member_bytes": {"json": 1000 * len(shard_keys)}, "first_key": shard_keys[0],
                 "last_key": shard_keys[-1], "keys_sha256": keys_sha256(shard_keys)}
            path = os.path.join(out, entry["shard"].replace(".tar", ".stats.json"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                json.dump(s, f)
            stats.append(s)
    return stats


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    out, built = tiny_build(args.out)
    real = {}  # a real shard per split, that every synthetic shard of the split links to (the report's gallery)
    for s in built["shards"]:
        real.setdefault(s["split"], os.path.join(args.out, f"real-{s['split']}.tar"))
        shutil.copyfile(os.path.join(out, s["shard"]), real[s["split"]])
    for folder in ("ledger", "cells", "samples", PLAN_FOLDER, "shards", "report"):
        shutil.rmtree(os.path.join(out, folder), ignore_errors=True)
    metros, cells = synthetic_cells(args.metros, args.cells, rng)
    samples = synthetic_samples(cells, len(cells), rng)
    os.makedirs(os.path.join(out, "cells"))
    os.makedirs(os.path.join(out, "samples"))
    write_table(cells, CELLS_SCHEMA, os.path.join(out, "cells", "cells-00000-of-00001.parquet"))
    write_table(samples, SAMPLES_SCHEMA, os.path.join(out, "samples", "samples-00000-of-00001.parquet"))
    stage_inputs(out, metros, None, None)
    owner, keys = write_ledger(out, samples, args.rows, rng)
    np.save(os.path.join(args.out, "owner.npy"), owner)
    with open(os.path.join(args.out, "keys.json"), "w") as f:
        json.dump(keys, f)
    for s in write_plans_and_stats(out, samples):
        os.symlink(real[s["split"]], os.path.join(out, s["shard"]))
    return {"ledger_rows": args.rows, "kept": int((owner >= 0).sum()), "samples": len(samples), "cells": len(cells),
            "metros": args.metros, "ledger_mb": round(sum(os.path.getsize(os.path.join(out, "ledger", p))
                                                           for p in os.listdir(os.path.join(out, "ledger"))) / 1e6)}


def step(name: str, root: str) -> None:
    """One measured step, in this process."""
    out = os.path.join(root, "build")
    if name == "manifest":
        from unigeo.outputs.manifest import collect_manifest, write_manifest
        from unigeo.pipeline.staging import METROS, load_metros
        from unigeo.sources.config import load_config
        from unigeo.sources.metros import Metro

        cfg = dataclasses.replace(load_config(os.path.join(root, "world", "sources.yaml")),
                                  panoramas=os.path.join(root, "no-index.parquet"))  # the audit counts the ledger
        metros = [Metro(n, g, "synthetic") for n, g in load_metros(os.path.join(out, METROS))]
        rows = pq.ParquetDataset(os.path.join(out, "ledger")).files
        n = sum(pq.ParquetFile(p).metadata.num_rows for p in rows)
        write_manifest(out, collect_manifest(out, cfg, metros, BuildOptions().as_dict(), {"ingest/rows_in": n},
                                             {"duration_s": 0.0}))
    elif name == "report":
        from unigeo.outputs.report import build_report

        build_report(out)
    elif name == "audit":
        from unigeo.core.build_files import read_manifest
        from unigeo.outputs.audit import RowOwners, audit_ledger

        with open(os.path.join(root, "keys.json")) as f:
            owners = RowOwners.from_index(np.load(os.path.join(root, "owner.npy")), json.load(f))
        problems: list[str] = []
        _, n_inputs = audit_ledger(out, read_manifest(out), owners, problems.append)
        if problems:
            raise SystemExit("audit: " + "; ".join(problems[:10]))
        print(json.dumps({"input_rows": n_inputs}))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=60_000_000)
    parser.add_argument("--cells", type=int, default=800_000)
    parser.add_argument("--metros", type=int, default=14)
    parser.add_argument("--out", default="/tmp/unigeo-bench-ledger")
    parser.add_argument("--reuse", action="store_true", help="measure the tables an earlier run prepared in --out")
    parser.add_argument("--step", choices=("manifest", "report", "audit"), help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args(argv)
    if args.step:
        step(args.step, args.out)
        return
    started = time.perf_counter()
    result: dict[str, Any] = {}
    if not (args.reuse and os.path.exists(os.path.join(args.out, "owner.npy"))):
        result["tables"] = prepare(args)
    result["prepare_s"] = round(time.perf_counter() - started, 1)
    result["steps"] = {}
    for name in ("manifest", "report", "audit"):
        run = measure([sys.executable, "-m", "bench.bench_ledger", "--step", name, "--out", args.out], 0.2)
        result["steps"][name] = run
        print(f"{name:9s} peak RSS {run['peak_rss_mb']:6d} MB  {run['wall_s']:7.1f} s", file=sys.stderr)
    result["total_s"] = round(sum(r["wall_s"] for r in result["steps"].values()), 1)
    result["peak_rss_mb"] = max(r["peak_rss_mb"] for r in result["steps"].values())
    emit(result, args.json)


if __name__ == "__main__":
    main(sys.argv[1:])
