"""The synthetic world in the formats of real services: rasters cut into COG tiles listed as STAC items.

``write_stac_rasters`` cuts each raster of a written world into tiles on its own pixel grid (as NAIP
quarter-quads of one state-year, or LiDAR tiles, share one grid), writes each as a lossless COG, and lists
them as STAC items: the aerial epochs as an ItemCollection (GeoJSON), the DSM as a stac-geoparquet file. The
item's ``datetime`` is the acquisition date the native world gives the raster, and ``sources.yaml`` is
rewritten to read them: a build of it has the same samples, byte for byte, as the native world's.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Callable
from typing import Any

import pystac
import rasterio
import yaml
from rasterio.warp import transform_bounds, transform_geom
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from unigeo.sources.config import RasterSpec, load_config
from unigeo.sources.rasters import open_raster

STAC_DIR = "stac"
ASSETS = {"aerial": "image", "dsm": "data"}  # the asset keys of NAIP's and 3DEP's collections
FILES = {"aerial": "aerial.json", "dsm": "dsm.parquet"}
TILES_PER_SIDE = 20  # 400 tiles per epoch


def cut_raster(path: str, out_dir: str, tiles_per_side: int) -> list[str]:
    """Cut a raster into ``tiles_per_side`` x ``tiles_per_side`` lossless COG tiles on its own pixel grid
    (``STEM-RR-CC.tif``, with overviews); returns their paths, row by row."""
    stem = os.path.splitext(os.path.basename(path))[0]
    os.makedirs(out_dir, exist_ok=True)
    out = []
    with rasterio.open(path) as src:
        tw, th = math.ceil(src.width / tiles_per_side), math.ceil(src.height / tiles_per_side)
        profile = {"driver": "COG", "crs": src.crs, "count": src.count, "dtype": src.dtypes[0], "nodata": src.nodata,
                   "BLOCKSIZE": 256, "OVERVIEWS": "AUTO", "COMPRESS": "DEFLATE"}
        for r in range(tiles_per_side):
            for c in range(tiles_per_side):
                window = Window(c * tw, r * th, min(tw, src.width - c * tw), min(th, src.height - r * th))
                if window.width <= 0 or window.height <= 0:
                    continue
                data = src.read(window=window)
                target = os.path.join(out_dir, f"{stem}-{r:02d}-{c:02d}.tif")
                with rasterio.open(target, "w", width=int(window.width), height=int(window.height),
                                   transform=window_transform(window, src.transform), **profile) as ds:
                    ds.write(data)
                out.append(target)
    return out


def raster_item(path: str, date: dt.date, asset: str, root: str) -> pystac.Item:
    """A STAC item of one COG: footprint, bbox, ``datetime``, the projection fields and one data asset whose
    href is relative to ``root`` (where the item file lies)."""
    with rasterio.open(path) as ds:
        footprint = {"type": "Polygon", "coordinates": [[
            (ds.bounds.left, ds.bounds.bottom), (ds.bounds.right, ds.bounds.bottom),
            (ds.bounds.right, ds.bounds.top), (ds.bounds.left, ds.bounds.top), (ds.bounds.left, ds.bounds.bottom)]]}
        geometry = transform_geom(ds.crs, "EPSG:4326", footprint)
        bbox = list(transform_bounds(ds.crs, "EPSG:4326", *ds.bounds))
        proj = {"proj:code": f"EPSG:{ds.crs.to_epsg()}", "proj:shape": [ds.height, ds.width],
                "proj:transform": list(ds.transform)[:6]}
    when = dt.datetime(date.year, date.month, date.day, 12, tzinfo=dt.timezone.utc)
    item = pystac.Item(os.path.splitext(os.path.basename(path))[0], geometry, bbox, when, {**proj})
    item.stac_extensions.append("https://stac-extensions.github.io/projection/v2.0.0/schema.json")
    item.add_asset(asset, pystac.Asset(os.path.relpath(path, root), media_type=pystac.MediaType.COG, roles=["data"]))
    return item


def write_stac_rasters(world: str, tiles_per_side: int = TILES_PER_SIDE,
                       progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Cut the world's aerial and DSM rasters into tiles, list them as STAC, and point ``sources.yaml`` at the
    STAC sources. Returns per kind the STAC file and its number of items."""
    config_path = os.path.join(world, "sources.yaml")
    cfg = load_config(config_path)
    with open(config_path) as f:
        raw = yaml.safe_load(f)
    root = os.path.join(world, STAC_DIR)
    summary: dict[str, Any] = {}
    for kind in ("aerial", "dsm"):
        items = []
        for spec in cfg.aerial if kind == "aerial" else cfg.dsm:
            assert isinstance(spec, RasterSpec)
            date = open_raster(spec, kind).date
            stem = os.path.splitext(os.path.basename(spec.path))[0]
            tiles = cut_raster(spec.path, os.path.join(root, stem), tiles_per_side)
            items += [raster_item(t, date, ASSETS[kind], root) for t in tiles]
            progress(f"{kind}: {os.path.basename(spec.path)} cut into {len(tiles)} COG tiles")
        target = os.path.join(root, FILES[kind])
        if target.endswith(".json"):
            pystac.ItemCollection(items).save_object(dest_href=target)
        else:
            from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

            to_parquet(parse_stac_items_to_arrow([i.to_dict() for i in items]), target)
        raw[kind] = [{"stac": f"{STAC_DIR}/{FILES[kind]}", "asset": ASSETS[kind]}]
        summary[kind] = {"stac": target, "items": len(items)}
    raw.pop("dates", None)
    with open(config_path, "w") as f:
        yaml.safe_dump(raw, f, sort_keys=False)
    return summary
