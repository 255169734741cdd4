"""Aerial + DSM tiles: ``RasterStack`` against per-tile ``reproject`` and ``WarpedVRT`` baselines.

Both produce the same tiles (256 px at 0.6 m, north-up UTM, centred on random points of the world) in
the same random order, in one process, from the synthetic world's files: a JPEG COG in EPSG:3857 at
0.3 m (with overviews) and a float32 DSM in EPSG:26986 at 1 m.
  plain baseline      per tile: open both files, ``reproject`` (average for aerial, bilinear for DSM), close;
  reproject, opened   both files opened once, then ``reproject`` per tile (what a competent user writes);
  WarpedVRT, opened   both files opened once, a ``WarpedVRT`` on the tile grid per tile, read;
  ours                ``RasterStack`` opened once: lattice-projected map, one decimated window read, cv2.remap.

Usage: python -m bench.bench_tiles [--tiles 200] [--size small] [--cache /tmp/unigeo-bench-world-small]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.vrt import WarpedVRT
from rasterio.warp import Resampling, reproject

from bench.record import save
from unigeo.pipeline.tiles import tile_grid
from unigeo.sources.tiles import Grid, RasterStack
from unigeo.synth.world import write_world


def reproject_tile(aerial: Any, dsm: Any, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Both tiles of a grid with ``reproject`` from open datasets."""
    transform = Affine(*grid.transform)
    rgb = np.zeros((3, grid.size, grid.size), np.uint8)
    z = np.full((grid.size, grid.size), np.nan, np.float32)
    reproject(rasterio.band(aerial, [1, 2, 3]), rgb, dst_transform=transform, dst_crs=grid.crs,
              resampling=Resampling.average)
    reproject(rasterio.band(dsm, 1), z, dst_transform=transform, dst_crs=grid.crs, dst_nodata=np.nan,
              resampling=Resampling.bilinear)
    return rgb, z


def baseline_tile(aerial: str, dsm: str, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    with rasterio.open(aerial) as a, rasterio.open(dsm) as d:
        return reproject_tile(a, d, grid)


def vrt_tile(aerial: Any, dsm: Any, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Both tiles of a grid through a ``WarpedVRT`` on the grid, from open datasets."""
    shape = {"crs": grid.crs, "transform": Affine(*grid.transform), "width": grid.size, "height": grid.size}
    with WarpedVRT(aerial, resampling=Resampling.average, **shape) as vrt:
        rgb = vrt.read([1, 2, 3])
    with WarpedVRT(dsm, resampling=Resampling.bilinear, nodata=np.nan, **shape) as vrt:
        z = vrt.read(1)
    return rgb, z


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, default=200)
    parser.add_argument("--size", default="small")
    parser.add_argument("--cache", default=None)
    parser.add_argument("--tile-px", type=int, default=256)
    parser.add_argument("--gsd", type=float, default=0.6)
    args = parser.parse_args(argv)
    cache = args.cache or f"/tmp/unigeo-bench-world-{args.size}"
    if not os.path.exists(os.path.join(cache, "world.json")):
        write_world(cache, size=args.size, seed=0)
    aerial, dsm = os.path.join(cache, "aerial_2023.tif"), os.path.join(cache, "dsm_2020.tif")
    with rasterio.open(dsm) as ds:
        w, s, e, n = rasterio.warp.transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    rng = np.random.default_rng(0)
    margin_lat, margin_lon = (n - s) * 0.1, (e - w) * 0.1
    grids = [tile_grid(float(rng.uniform(s + margin_lat, n - margin_lat)),
                       float(rng.uniform(w + margin_lon, e - margin_lon)), args.gsd, args.tile_px)
             for _ in range(args.tiles)]

    t = time.perf_counter()
    base = [baseline_tile(aerial, dsm, g) for g in grids]
    t_base = time.perf_counter() - t

    with rasterio.open(aerial) as a, rasterio.open(dsm) as d:
        t = time.perf_counter()
        [reproject_tile(a, d, g) for g in grids]
        t_opened = time.perf_counter() - t
        t = time.perf_counter()
        [vrt_tile(a, d, g) for g in grids]
        t_vrt = time.perf_counter() - t

    t = time.perf_counter()
    stacks = {"aerial": RasterStack([aerial], "aerial"), "dsm": RasterStack([dsm], "dsm")}
    ours = [(stacks["aerial"].read([aerial], g), stacks["dsm"].read([dsm], g)) for g in grids]
    t_ours = time.perf_counter() - t

    rgb_diff = np.mean([np.abs(o[0][0].astype(int) - np.moveaxis(b[0], 0, -1).astype(int)).mean()  # type: ignore[index]
                        for o, b in zip(ours, base)])
    dsm_diff = np.nanmedian([np.nanmean(np.abs(o[1][0] - b[1])) for o, b in zip(ours, base)])  # type: ignore[index]
    save("bench_tiles", {
        "tiles": len(grids), "tile_px": args.tile_px, "gsd_m": args.gsd, "world": cache,
        "tiles_per_s": {"plain_baseline": round(len(grids) / t_base, 1),
                        "reproject_opened_once": round(len(grids) / t_opened, 1),
                        "warped_vrt_opened_once": round(len(grids) / t_vrt, 1), "ours": round(len(grids) / t_ours, 1)},
        "ours_vs": {"plain_baseline": round(t_base / t_ours, 2), "reproject_opened_once": round(t_opened / t_ours, 2),
                    "warped_vrt_opened_once": round(t_vrt / t_ours, 2)},
        "mean_abs_diff": {"aerial_levels": round(float(rgb_diff), 2), "dsm_m": round(float(dsm_diff), 3)},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    })


if __name__ == "__main__":
    main(sys.argv[1:])
