"""The report at the paper's scale: 14 metros, ~800,000 cells, ledger and samples tables of 800,000 rows.

Builds the tiny synthetic world once (real shards, rejects and manifest, so the gallery reads real
samples), then replaces its cells, samples and ledger tables with synthetic ones of ``--rows`` rows over
14 metro outlines and rewrites the manifest's counts to match. Times ``build_report`` on that folder
against reading the three tables alone (the floor of any report over them), and prints the page size.

Usage: python -m bench.bench_report [--rows 800000] [--metros 14] [--out /tmp/unigeo-bench-report]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from bench.record import save
from unigeo.cli.build import run_build
from unigeo.core.build_files import read_cells, read_ledger, read_samples
from unigeo.core.sample import CELLS_SCHEMA, LEDGER_SCHEMA, SAMPLES_SCHEMA
from unigeo.outputs.report import build_report
from unigeo.pipeline.cells import cell_center, cell_tokens
from unigeo.pipeline.options import BuildOptions
from unigeo.pipeline.staging import stage_inputs
from unigeo.sources.metros import Metro
from unigeo.synth.world import write_world

LEVEL = 16
CELL_KM = 0.14  # a level-16 cell's side, roughly


def metro_outline(lat0: float, lon0: float, radius_km: float, rng: np.random.Generator) -> shapely.Polygon:
    angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    r = radius_km * (1 + 0.12 * np.sin(3 * angles + rng.uniform(0, 6)) + rng.uniform(-0.04, 0.04, angles.size))
    return shapely.Polygon(np.column_stack([lon0 + r / (111.2 * np.cos(np.radians(lat0))) * np.cos(angles),
                                            lat0 + r / 111.2 * np.sin(angles)]))


def synthetic_cells(metros: int, cells: int, rng: np.random.Generator) -> tuple[list[Metro], pd.DataFrame]:
    """``metros`` outlines and about ``cells`` level-16 cells inside them (a grid of cell-sized steps)."""
    per = cells // metros
    radius_km = float(np.sqrt(per / np.pi)) * CELL_KM * 1.05
    outlines, frames = [], []
    for m in range(metros):
        lat0, lon0 = float(rng.uniform(-40, 55)), float(rng.uniform(-120, 140))
        poly = metro_outline(lat0, lon0, radius_km, rng)
        w, s, e, n = poly.bounds
        step_lat = CELL_KM / 111.2 * 0.7
        step_lon = step_lat / np.cos(np.radians(lat0))
        lon, lat = np.meshgrid(np.arange(w, e, step_lon), np.arange(s, n, step_lat))
        lon, lat = lon.ravel(), lat.ravel()
        inside = shapely.contains_xy(poly, lon, lat)
        tokens = pd.unique(cell_tokens(lat[inside], lon[inside], LEVEL))[:per]
        centres = np.array([cell_center(t) for t in tokens])
        name = f"metro{m:02d}"
        outlines.append(Metro(name, poly, "synthetic"))
        frames.append(pd.DataFrame({"metro": name, "cell": tokens, "lat": centres[:, 0], "lon": centres[:, 1]}))
    return outlines, pd.concat(frames, ignore_index=True)


def synthetic_samples(cells: pd.DataFrame, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """``rows`` samples: train in 75% of the cells, test in the rest of the rows (some cells in both)."""
    n_train = min(len(cells), int(rows * 0.75))
    train = cells.iloc[rng.choice(len(cells), n_train, replace=False)].assign(split="train")
    test = cells.iloc[rng.choice(len(cells), rows - n_train, replace=False)].assign(split="test")
    df = pd.concat([train, test], ignore_index=True)
    n = len(df)
    panoramas = rng.integers(1, 121, n)
    aerial, dsm = rng.random(n) > 0.02, rng.random(n) > 0.03
    return df.assign(
        panoramas=panoramas, panoramas_in_cell=panoramas + rng.integers(0, 5, n) * (panoramas == 120), crops=panoramas,
        members=panoramas + 4, aerial=aerial, aerial_year=np.where(df["split"] == "test", 2023, 2021),
        aerial_nodata=rng.random(n) * 0.1, dsm=dsm, dsm_year=2020, dsm_nodata=rng.random(n) * 0.1,
        tile_crs="EPSG:32619", tile_gsd=0.6, text="template", text_pois=rng.integers(0, 13, n),
        missing=np.where(aerial, "", "aerial.png:tile_no_coverage"),
        # Member digests as a real build's: the aerial and the text differ between splits, the one DSM epoch not.
        aerial_sha=np.where(aerial, df["cell"] + df["split"], ""), dsm_sha=np.where(dsm, df["cell"], ""),
        text_sha=df["cell"] + df["split"])


def synthetic_ledger(samples: pd.DataFrame, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    pick = samples.iloc[rng.integers(0, len(samples), rows)]
    status = rng.choice(["kept", "not_selected", "rejected"], rows, p=[0.7, 0.1, 0.2])
    reason = np.where(status == "rejected", rng.choice(["outside_metros", "year_out_of_range", "bad_date"], rows), "")
    return pd.DataFrame({"row": np.arange(rows), "pano_id": [f"p{i:08x}" for i in range(rows)],
                         "metro": pick["metro"].to_numpy(), "cell": pick["cell"].to_numpy(),
                         "split": np.where(status == "rejected", "", pick["split"].to_numpy()), "status": status,
                         "reason": reason, "detail": "", "year": rng.integers(2015, 2026, rows)})


def write_table(df: pd.DataFrame, schema: pa.Schema, path: str) -> None:
    pq.write_table(pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False), path)


def tiny_build(root: str) -> tuple[str, dict]:
    """A fresh build of the tiny world (generated once) under ``root/build``: its folder and manifest,
    whose tables the benches replace with synthetic ones."""
    world, out = os.path.join(root, "world"), os.path.join(root, "build")
    if not os.path.exists(os.path.join(world, "sources.yaml")):
        write_world(world, size="tiny", seed=0)
    shutil.rmtree(out, ignore_errors=True)
    return out, run_build(os.path.join(world, "sources.yaml"), out, BuildOptions(), [])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=800_000)
    parser.add_argument("--metros", type=int, default=14)
    parser.add_argument("--out", default="/tmp/unigeo-bench-report")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    out, manifest = tiny_build(args.out)
    t = time.perf_counter()
    metros, cells = synthetic_cells(args.metros, args.rows, rng)
    samples = synthetic_samples(cells, args.rows, rng)
    ledger = synthetic_ledger(samples, args.rows, rng)
    synth_s = time.perf_counter() - t
    for kind, df, schema in (("cells", cells, CELLS_SCHEMA), ("samples", samples, SAMPLES_SCHEMA),
                             ("ledger", ledger, LEDGER_SCHEMA)):
        paths = manifest["files"][kind]
        write_table(df, schema, os.path.join(out, paths[0]))
        for extra in paths[1:]:
            write_table(df.iloc[0:0], schema, os.path.join(out, extra))
    stage_inputs(out, metros, None, None)
    per_metro = {}
    for m in metros:
        lm, sm = ledger[ledger["metro"] == m.name], samples[samples["metro"] == m.name]
        per_metro[m.name] = {**{s: int((lm["status"] == s).sum()) for s in ("kept", "not_selected", "rejected")},
                             "inputs": len(lm), "cells": int((cells["metro"] == m.name).sum()),
                             "samples": {s: int((sm["split"] == s).sum()) for s in ("train", "test")}}
    overall = manifest["counts"]["overall"]
    overall.update({s: int((ledger["status"] == s).sum()) for s in ("kept", "not_selected", "rejected")})
    overall.update(inputs=len(ledger), cells=len(cells),
                   samples={s: int((samples["split"] == s).sum()) for s in ("train", "test")})
    manifest["counts"]["per_metro"] = per_metro
    manifest["config"]["metros"] = [{"name": m.name, "boundary": "synthetic", "repairs": []} for m in metros]
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f)

    t = time.perf_counter()
    read_ledger(out), read_cells(out), read_samples(out)
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    report = build_report(out)
    report_s = time.perf_counter() - t
    page = os.path.getsize(os.path.join(out, "report", "index.html"))
    save("bench_report", {
        "metros": args.metros, "cells_rows": len(cells), "samples_rows": len(samples), "ledger_rows": len(ledger),
        "synthesis_s": round(synth_s, 1), "read_tables_s": round(read_s, 2), "report_s": round(report_s, 1),
        "report_vs_reading_tables": round(report_s / read_s, 1), "page_mb": round(page / 1e6, 2),
        "figures": len(report["figures"]), "gallery_samples": len(report["gallery"]),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    })


if __name__ == "__main__":
    main(sys.argv[1:])
