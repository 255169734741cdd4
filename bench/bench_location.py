"""Location stages at scale: 1,000,000 panorama rows over a metro-sized polygon, on the DirectRunner.

Writes a synthetic index (no images: the location stages never open them), then:
  1. times the pure functions of each stage alone, in one process (the floor of each stage);
  2. runs the location stages alone on Beam (ingest, duplicates, cells, split, farthest-point sampling,
     covering, with the ledger, rejects and cells sinks) and reports their wall time and its ratio to
     the sum of the pure functions of step 1;
  3. runs the whole build with ``--no-imagery`` (JSON-only shards, samples table, manifest, report)
     and reports wall time (the Beam job's alone, and the command's) and peak memory;
  4. compares s2sphere's per-point cells and covering with s2geometry's when that is installed.

Usage: python -m bench.bench_location [--rows 1000000] [--out /tmp/unigeo-bench] [beam flags...]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from typing import Any

import apache_beam as beam
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from bench.record import save
from unigeo.cli.build import run_build
from unigeo.pipeline.cells import cell_token, cell_tokens, cover
from unigeo.pipeline.fps import farthest_point_sample, first_index, local_metres
from unigeo.pipeline.job import add_location_stages, pipeline_options, read_inputs, write_ledger_and_rejects
from unigeo.pipeline.metrics import counters, inc_counter
from unigeo.pipeline.options import BuildOptions
from unigeo.pipeline.split import split_of
from unigeo.pipeline.staging import stage_inputs
from unigeo.pipeline.transforms import LEDGER, rejects_to_ledger
from unigeo.sources.panoramas import check_rows, drop_duplicates

CENTRE = (-71.06, 42.36)


def metro_polygon(seed: int = 0) -> shapely.Polygon:
    """An irregular ~900 km2 polygon around Boston (a wobbly disk of ~17 km radius)."""
    rng = np.random.default_rng(seed)
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    radius_km = 17 * (1 + 0.15 * np.sin(3 * angles) + rng.uniform(-0.05, 0.05, angles.size))
    lat = CENTRE[1] + radius_km / 111.2 * np.sin(angles)
    lon = CENTRE[0] + radius_km / (111.2 * np.cos(np.radians(CENTRE[1]))) * np.cos(angles)
    return shapely.Polygon(np.column_stack([lon, lat]))


def write_inputs(folder: str, rows: int, seed: int = 0) -> str:
    os.makedirs(folder, exist_ok=True)
    poly = metro_polygon(seed)
    gpd.GeoDataFrame({"name": ["bench"]}, geometry=[poly], crs=4326).to_file(os.path.join(folder, "metro.geojson"))
    rng = np.random.default_rng(seed)
    w, s, e, n = poly.bounds
    # Panoramas cluster along "streets": 40% of them on a few thousand hot spots, the rest uniform.
    hot = rng.integers(0, 3000, rows)
    hot_lat, hot_lon = rng.uniform(s, n, 3000), rng.uniform(w, e, 3000)
    clustered = rng.random(rows) < 0.4
    lat = np.where(clustered, hot_lat[hot] + rng.normal(0, 2e-4, rows), rng.uniform(s, n, rows))
    lon = np.where(clustered, hot_lon[hot] + rng.normal(0, 2e-4, rows), rng.uniform(w, e, rows))
    years = rng.integers(2015, 2026, rows)
    df = pd.DataFrame({
        "pano_id": [f"b{i:08x}" for i in range(rows)], "lat": lat.round(7), "lon": lon.round(7),
        "heading_deg": rng.uniform(0, 360, rows).round(2),
        "captured_at": [f"{y}-06-01T12:00:00Z" for y in years], "uri": [f"panos/b{i:08x}.jpg" for i in range(rows)],
    })
    bad = rng.choice(rows, rows // 100, replace=False)  # 1% bad rows
    df.loc[bad[: len(bad) // 2], "captured_at"] = "unknown"
    df.loc[bad[len(bad) // 2:], "lat"] = 95.0
    df.to_parquet(os.path.join(folder, "panos.parquet"), row_group_size=100_000, index=False)
    with open(os.path.join(folder, "sources.yaml"), "w") as f:
        f.write("metros:\n  - name: bench\n    boundary: metro.geojson\npanoramas: panos.parquet\n")
    return os.path.join(folder, "sources.yaml")


def time_functions(folder: str, level: int, max_panos: int) -> dict[str, float]:
    """Each stage's pure function alone, over the whole index, in this process."""
    out: dict[str, float] = {}
    df = pd.read_parquet(os.path.join(folder, "panos.parquet"))
    t = time.perf_counter()
    table = drop_duplicates(check_rows(df, folder))
    out["validate_s"] = time.perf_counter() - t
    good = table.good
    poly = metro_polygon()
    shapely.prepare(poly)
    t = time.perf_counter()
    inside = shapely.contains_xy(poly, good["lon"].to_numpy(), good["lat"].to_numpy())
    out["point_in_metro_s"] = time.perf_counter() - t
    good = good[inside]
    t = time.perf_counter()
    splits = [split_of(int(y), 2023, (2017, 2024)) for y in good["year"]]
    out["split_s"] = time.perf_counter() - t
    good = good[[s is not None for s in splits]]
    t = time.perf_counter()
    cells = cell_tokens(good["lat"].to_numpy(), good["lon"].to_numpy(), level)
    out["cell_ids_s"] = time.perf_counter() - t
    t = time.perf_counter()
    [cell_token(la, lo, level) for la, lo in zip(good["lat"].to_numpy()[:100_000], good["lon"].to_numpy()[:100_000])]
    out["cell_ids_100k_point_by_point_s"] = time.perf_counter() - t  # s2sphere, one point at a time: not summed
    good = good.assign(cell=cells)
    t = time.perf_counter()
    for cell, g in good.groupby("cell", sort=False):
        pts = local_metres(g["lat"].to_numpy(), g["lon"].to_numpy(), float(g["lat"].iloc[0]), float(g["lon"].iloc[0]))
        farthest_point_sample(pts, max_panos, first_index(0, str(cell), len(g)))
    out["fps_s"] = time.perf_counter() - t
    t = time.perf_counter()
    out["cells_covered"] = len(cover(poly, level))
    out["cover_s"] = time.perf_counter() - t
    out["rows_valid_in_range"] = len(good)
    return out


def run_location_stages(config: str, out: str, opts: BuildOptions, beam_args: list[str]) -> dict[str, Any]:
    """The build's location stages alone on Beam: ingest, duplicates, cells and splits, farthest-point
    selection, covering, with their sinks (ledger rows of the not-selected and rejected panoramas,
    rejects, cells); the selected samples are counted, not rendered. Wall seconds and counters."""
    inputs = read_inputs(config)
    staged = stage_inputs(out, inputs.metros, None, None)
    p = beam.Pipeline(options=pipeline_options(beam_args))
    located = add_location_stages(p, inputs.config, staged, opts, out)
    located.selected.samples | "Count" >> beam.Map(lambda kv: inc_counter("bench", "samples"))
    write_ledger_and_rejects(out, ledger=(located.selected[LEDGER],
                                          located.rejects | "RejectsToLedger" >> beam.Map(rejects_to_ledger)),
                             rejects=(located.rejects,))
    t = time.perf_counter()
    result = p.run()
    result.wait_until_finish()
    return {"wall_s": round(time.perf_counter() - t, 1), "partitions": located.parts, "counters": counters(result)}


def compare_s2geometry(level: int) -> dict[str, object]:
    try:
        import s2geometry as s2
    except ImportError:
        return {"s2geometry": "not installed"}
    poly = metro_polygon()
    rng = np.random.default_rng(1)
    w, s, e, n = poly.bounds
    lat, lon = rng.uniform(s, n, 100_000), rng.uniform(w, e, 100_000)
    t = time.perf_counter()
    ours = [cell_token(a, b, level) for a, b in zip(lat, lon)]
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    theirs = [s2.S2CellId(s2.S2LatLng.FromDegrees(float(a), float(b))).parent(level).ToToken()
              for a, b in zip(lat, lon)]
    t_theirs = time.perf_counter() - t
    t = time.perf_counter()
    covered = set(cover(poly, level))
    t_cover = time.perf_counter() - t
    t = time.perf_counter()
    loop = s2.S2Loop([s2.S2LatLng.FromDegrees(y, x).ToPoint() for x, y in list(poly.exterior.coords)[:-1]])
    loop.Normalize()
    coverer = s2.S2RegionCoverer()
    coverer.set_min_level(level)
    coverer.set_max_level(level)
    coverer.set_max_cells(10_000_000)
    s2_cells = {c.ToToken() for c in coverer.GetCovering(s2.S2Polygon(loop))}
    t_s2cover = time.perf_counter() - t
    return {"cell_ids_100k_s2sphere_s": round(t_ours, 2), "cell_ids_100k_s2geometry_s": round(t_theirs, 2),
            "cell_ids_agree": ours == theirs, "cover_s2sphere_s": round(t_cover, 2),
            "cover_s2geometry_s": round(t_s2cover, 2), "cover_cells_s2sphere": len(covered),
            "cover_cells_s2geometry": len(s2_cells), "cover_only_s2sphere": len(covered - s2_cells),
            "cover_only_s2geometry": len(s2_cells - covered)}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", default="/tmp/unigeo-bench")
    parser.add_argument("--level", type=int, default=16)
    parser.add_argument("--max-panos", type=int, default=120)
    args, beam_args = parser.parse_known_args(argv)
    t = time.perf_counter()
    config = write_inputs(os.path.join(args.out, "inputs"), args.rows)
    report: dict[str, object] = {"rows": args.rows, "write_inputs_s": round(time.perf_counter() - t, 1)}
    report["functions"] = {k: round(v, 2) for k, v in time_functions(os.path.join(args.out, "inputs"), args.level,
                                                                      args.max_panos).items()}
    report["s2"] = compare_s2geometry(args.level)
    opts = BuildOptions(level=args.level, max_panos=args.max_panos, shard_max_samples=5000, no_imagery=True)
    stages = run_location_stages(config, os.path.join(args.out, "stages"), opts, beam_args)
    c = stages.pop("counters")
    stages["samples"] = c.get("bench/samples", 0)
    stages["not_selected"] = c.get("select/not_selected", 0)
    report["location_stages"] = stages
    floor = sum(v for k, v in report["functions"].items()  # type: ignore[union-attr]
                if k.endswith("_s") and "point_by_point" not in k)
    report["location_stages"]["vs_pure_functions"] = round(stages["wall_s"] / floor, 2)
    t = time.perf_counter()
    manifest = run_build(config, os.path.join(args.out, "build"), opts, beam_args)
    report["beam_build_s"] = round(time.perf_counter() - t, 1)
    report["beam_job_s"] = manifest["run"]["duration_s"]
    report["beam_args"] = beam_args or ["--runner=DirectRunner"]
    report["counts"] = manifest["counts"]["overall"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    report["peak_rss_mb"] = {"launcher": round(peak), "largest_child": round(peak_children)}
    save("bench_location", report)


if __name__ == "__main__":
    main(sys.argv[1:])
