"""The synthetic world in the formats of real services: rasters cut into COG tiles listed as STAC items,
panoramas as Mapillary image objects and Panoramax STAC items.

``write_stac_rasters`` cuts each raster of a written world into tiles on its own pixel grid (as NAIP
quarter-quads of one state-year, or LiDAR tiles, share one grid), writes each as a lossless COG, and lists
them as STAC items: the aerial epochs as an ItemCollection (GeoJSON), the DSM as a stac-geoparquet file. The
item's ``datetime`` is the acquisition date the native world gives the raster, and ``sources.yaml`` is
rewritten to read them: a build of it has the same samples, byte for byte, as the native world's.
"""

from __future__ import annotations

import datetime as dt
import json
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


MAPILLARY = "mapillary.json"
MAPILLARY_IMAGES = "mapillary"
PANORAMAX = "panoramax.json"
PAGE = 100  # Mapillary image objects per {"data": [...]} page, as the Graph API returns them


def _ms(iso: str) -> int:
    when = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp() * 1000)


def write_service_panoramas(world: str) -> dict[str, Any]:
    """The world's valid panoramas as Mapillary image objects (every other one whose file exists; pages of
    ``PAGE``, the images linked as ``mapillary/<id>.jpg``) and Panoramax STAC items (the rest, asset ``hd``;
    sizes where the file decodes), plus records that are
    not 360-degree panoramas (a perspective camera, ``is_pano`` false, a 2:1-less size, a field of view of
    90 degrees) that a build must reject. ``sources.yaml`` is rewritten to read both."""
    from PIL import Image

    from unigeo.sources.panoramas import read_panorama_index

    config_path = os.path.join(world, "sources.yaml")
    cfg = load_config(config_path)
    good = read_panorama_index(cfg.panoramas).good
    images = os.path.join(world, MAPILLARY_IMAGES)
    os.makedirs(images, exist_ok=True)
    mapillary: list[dict[str, Any]] = []
    panoramax: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = good.to_dict("records")  # type: ignore[assignment]
    for i, row in enumerate(rows):
        point = {"type": "Point", "coordinates": [float(row["lon"]), float(row["lat"])]}
        size: tuple[int, int] | tuple[None, None]
        try:
            with Image.open(row["uri"]) as im:
                size = im.size
        except OSError:  # the world's missing and corrupt panoramas stay so: the build rejects them as before
            size = (None, None)
        width, height = size
        if i % 2 == 0 and os.path.exists(row["uri"]):
            target = os.path.join(images, str(row["pano_id"]) + ".jpg")
            if not os.path.exists(target):
                os.link(row["uri"], target)
            mapillary.append({"id": row["pano_id"], "geometry": point, "computed_geometry": point,
                              "compass_angle": (float(row["heading_deg"]) + 3.0) % 360,
                              "computed_compass_angle": float(row["heading_deg"]),
                              "captured_at": _ms(row["captured_at"]),
                              "is_pano": True, "camera_type": "equirectangular", "width": width, "height": height,
                              "thumb_original_url": "https://images.invalid/" + row["pano_id"]})
        else:
            panoramax.append({"type": "Feature", "stac_version": "1.0.0", "id": row["pano_id"], "geometry": point,
                              "bbox": [row["lon"], row["lat"], row["lon"], row["lat"]],
                              "properties": {"datetime": row["captured_at"], "view:azimuth": float(row["heading_deg"]),
                                             "pers:interior_orientation": {
                                                 "field_of_view": 360,
                                                 **({"sensor_array_dimensions": [width, height]} if width else {})}},
                              "links": [], "assets": {"hd": {"href": os.path.relpath(row["uri"], world),
                                                             "type": "image/jpeg", "roles": ["data"]}}})
    first = rows[0]
    point = {"type": "Point", "coordinates": [float(first["lon"]), float(first["lat"])]}
    base: dict[str, Any] = {"geometry": point, "captured_at": _ms(first["captured_at"]), "compass_angle": 10.0,
            "thumb_original_url": "https://images.invalid/x"}
    mapillary += [{**base, "id": "9000000001", "is_pano": False, "camera_type": "perspective", "width": 4000,
                   "height": 3000},
                  {**base, "id": "9000000002", "is_pano": True, "camera_type": "fisheye", "width": 4000,
                   "height": 4000},
                  {**base, "id": "9000000003", "is_pano": True, "camera_type": "spherical", "width": 4000,
                   "height": 3000}]
    panoramax.append({**panoramax[0], "id": "pmx-flat",
                      "properties": {**panoramax[0]["properties"],
                                     "pers:interior_orientation": {"field_of_view": 90}}})
    pages = [{"data": mapillary[i:i + PAGE]} for i in range(0, len(mapillary), PAGE)]
    with open(os.path.join(world, MAPILLARY), "w") as f:
        json.dump(pages if len(pages) > 1 else pages[0], f)
    with open(os.path.join(world, PANORAMAX), "w") as f:
        json.dump({"type": "FeatureCollection", "features": panoramax}, f)
    with open(config_path) as f:
        raw = yaml.safe_load(f)
    raw["panoramas"] = [{"format": "mapillary", "path": MAPILLARY, "images": f"{MAPILLARY_IMAGES}/",
                         "license": "CC-BY-SA-4.0", "attribution": "Mapillary contributors"},
                        {"format": "panoramax", "path": PANORAMAX, "license": "CC-BY-SA-4.0"}]
    with open(config_path, "w") as f:
        yaml.safe_dump(raw, f, sort_keys=False)
    return {"mapillary": len(mapillary), "panoramax": len(panoramax), "not_panoramas": 4}


OVERTURE = "places.parquet"
SERVICE_FILES = (STAC_DIR, MAPILLARY, MAPILLARY_IMAGES, PANORAMAX, OVERTURE)  # what a world in these formats adds


def overture_places(pois: Any, confidence: float = 0.9) -> Any:
    """A pyarrow table in the Overture places schema (``id``, WKB ``geometry``, ``bbox``, ``names``,
    ``categories``, ``confidence``) of a GeoDataFrame of points with ``poi_id``, ``name``, ``category``; each
    category written as an Overture category that ``OVERTURE_CATEGORIES`` maps back to it."""
    import pyarrow as pa
    import shapely

    from unigeo.sources.pois import OVERTURE_CATEGORIES

    inverse = {ours: theirs for theirs, ours in OVERTURE_CATEGORIES.items()}
    xy = shapely.get_coordinates(pois.geometry.values)
    n = len(pois)
    return pa.table({
        "id": pa.array([str(v) for v in pois["poi_id"]]),
        "geometry": pa.array(shapely.to_wkb(pois.geometry.values), pa.binary()),
        "bbox": pa.array([{"xmin": x, "xmax": x, "ymin": y, "ymax": y} for x, y in xy.tolist()],
                         pa.struct([("xmin", pa.float32()), ("xmax", pa.float32()), ("ymin", pa.float32()),
                                    ("ymax", pa.float32())])),
        "names": pa.array([{"primary": str(v)} for v in pois["name"]], pa.struct([("primary", pa.string())])),
        "categories": pa.array([{"primary": inverse.get(str(c), str(c)), "alternate": []} for c in pois["category"]],
                               pa.struct([("primary", pa.string()), ("alternate", pa.list_(pa.string()))])),
        "confidence": pa.array([confidence] * n, pa.float64()),
    })


def write_overture_pois(world: str) -> dict[str, Any]:
    """The world's POIs as Overture places GeoParquet (small row groups, so a read filtered to the metro skips
    the rest), with places far away that a build never reads and two below ``min_confidence`` that it
    rejects; ``sources.yaml`` is rewritten to read it."""
    import geopandas as gpd
    import pyarrow as pa
    import pyarrow.parquet as pq
    import shapely

    config_path = os.path.join(world, "sources.yaml")
    cfg = load_config(config_path)
    assert cfg.pois is not None
    pois = gpd.read_file(cfg.pois).to_crs("EPSG:4326")
    far = gpd.GeoDataFrame({"poi_id": [f"far{i}" for i in range(40)], "name": [f"Far {i}" for i in range(40)],
                            "category": ["cafe"] * 40},
                           geometry=[shapely.Point(10 + i * 1e-3, 50) for i in range(40)], crs="EPSG:4326")
    doubtful = pois.head(2).assign(poi_id=lambda d: d["poi_id"] + "-dup", name=lambda d: d["name"] + " (closed)")
    table = pa.concat_tables([overture_places(pois), overture_places(far),
                              overture_places(doubtful, confidence=0.2)])
    pq.write_table(table, os.path.join(world, OVERTURE), row_group_size=16)
    with open(config_path) as f:
        raw = yaml.safe_load(f)
    raw["pois"] = [{"format": "overture", "path": OVERTURE, "min_confidence": 0.5, "license": "CDLA-Permissive-2.0",
                    "attribution": "Overture Maps Foundation"}]
    with open(config_path, "w") as f:
        yaml.safe_dump(raw, f, sort_keys=False)
    return {"places": len(pois), "far": len(far), "low_confidence": len(doubtful)}


def write_service_world(world: str, tiles_per_side: int = TILES_PER_SIDE,
                        progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """The whole world in the services' formats: STAC rasters over COG tiles, Mapillary and Panoramax
    panoramas, Overture places."""
    summary = {"rasters": write_stac_rasters(world, tiles_per_side, progress)}
    summary["panoramas"] = write_service_panoramas(world)
    summary["pois"] = write_overture_pois(world)
    progress(f"panoramas: {summary['panoramas']}; POIs: {summary['pois']}")
    return summary
