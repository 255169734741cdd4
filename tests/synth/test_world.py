"""The tiny synthetic world: every file is real and readable, and its modalities agree.

Agreement is measured from the written files alone (DSM, aerial, panoramas, buildings.geojson), not
from the generator's internals.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from PIL import Image
from pyproj import Geod, Transformer
from shapely import STRtree
from shapely.geometry import Point

from unigeo.sources.config import load_config
from unigeo.sources.panoramas import read_panorama_index
from unigeo.sources.pois import read_pois
from unigeo.sources.rasters import open_raster
from unigeo.synth.scene import ROOF_PALETTE
from unigeo.synth.world import write_world

GEOD = Geod(ellps="WGS84")
FACADE_SHADE = 0.82  # facades are drawn a little darker than roofs


def sample(path: Path, lons: np.ndarray, lats: np.ndarray) -> np.ndarray:
    """Raster values (bands last) at lon/lat points; NaN where nodata or outside."""
    with rasterio.open(path) as ds:
        xs, ys = Transformer.from_crs(4326, ds.crs, always_xy=True).transform(lons, lats)
        rows, cols = rasterio.transform.rowcol(ds.transform, xs, ys)
        data = ds.read().astype(np.float64)
        if ds.nodata is not None:
            data[data == ds.nodata] = np.nan
    rows, cols = np.asarray(rows), np.asarray(cols)
    ok = (rows >= 0) & (rows < data.shape[1]) & (cols >= 0) & (cols < data.shape[2])
    out = np.full((len(rows), data.shape[0]), np.nan)
    out[ok] = data[:, rows[ok], cols[ok]].T
    return out


def dsm_min_around(path: Path, lon: float, lat: float, radius_m: float) -> float:
    """Lowest DSM value within ``radius_m``: the terrain height near a point."""
    with rasterio.open(path) as ds:
        x, y = Transformer.from_crs(4326, ds.crs, always_xy=True).transform(lon, lat)
        window = rasterio.windows.from_bounds(x - radius_m, y - radius_m, x + radius_m, y + radius_m, ds.transform)
        return float(np.nanmin(ds.read(1, window=window, masked=True).filled(np.nan)))


@pytest.fixture(scope="module")
def buildings(tiny_world: Path) -> gpd.GeoDataFrame:
    b = gpd.read_file(tiny_world / "buildings.geojson")
    b["rgb"] = [tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in b["colour"]]
    return b


def interior_points(b: gpd.GeoDataFrame, inset_m: float) -> gpd.GeoSeries:
    metric = b.geometry.to_crs(b.estimate_utm_crs())
    return metric.buffer(-inset_m).representative_point().to_crs(4326)


def test_every_file_is_written_and_readable(tiny_world: Path, tiny_world_info: dict) -> None:
    cfg = load_config(str(tiny_world / "sources.yaml"))
    assert [m.name for m in cfg.metros] == [tiny_world_info["metro"]]
    for path in [cfg.metros[0].boundary, cfg.panoramas, cfg.pois] + [r.path for r in cfg.aerial + cfg.dsm]:
        assert Path(path).is_file() and Path(path).stat().st_size > 0
    aerial = [open_raster(r, "aerial") for r in cfg.aerial]
    dsm = open_raster(cfg.dsm[0], "dsm")
    assert [a.date.year for a in aerial] == [2021, 2023]
    for a in aerial:
        assert a.epsg == 3857 and a.count == 3 and a.overviews  # a COG with overviews
        ground_gsd = a.res[0] * np.cos(np.radians((a.bounds_lonlat[1] + a.bounds_lonlat[3]) / 2))
        assert ground_gsd == pytest.approx(0.3, abs=0.01)
    assert dsm.epsg not in (3857, None) and dsm.epsg != aerial[0].epsg  # reprojection is exercised
    assert not (32601 <= dsm.epsg <= 32660 or 32701 <= dsm.epsg <= 32760)
    assert dsm.dtype == "float32" and dsm.nodata is not None and 0.5 <= dsm.res[0] <= 1.0
    assert dsm.date.year == 2020 and dsm.date_source == "config"
    with rasterio.open(cfg.dsm[0].path) as ds:
        heights = ds.read(1, masked=True)
    assert heights.mask.any() and not heights.mask.all()  # nodata over water
    with rasterio.open(cfg.aerial[0].path) as ds:
        assert ds.profile["tiled"] and ds.profile["compress"] == "jpeg"


def test_panorama_index_years_and_images(tiny_world: Path) -> None:
    table = read_panorama_index(str(tiny_world / "panos.parquet"))
    years = set(table.good["year"])
    assert 2023 in years
    assert years & (set(range(2017, 2025)) - {2023})
    assert years - set(range(2017, 2025))  # out-of-range years occur
    for uri in table.good["uri"][:5]:
        with Image.open(uri) as img:
            assert img.format == "JPEG" and img.size == (1024, 512)
    assert table.good["heading_deg"].nunique() > 10


def test_injected_faults_are_rejected_with_their_reasons(tiny_world: Path, tiny_world_info: dict) -> None:
    table = read_panorama_index(str(tiny_world / "panos.parquet"))
    rejected = dict(zip(table.rejects["row"], table.rejects["reason"]))
    for fault in tiny_world_info["faults"]:
        if fault["kind"] in ("corrupt_jpeg", "missing_file"):  # valid rows; the image stage rejects them
            assert fault["row"] in set(table.good["row"])
        else:
            assert rejected[fault["row"]] == fault["kind"]
    with pytest.raises(OSError):
        Image.open(tiny_world / "panos" / "corrupt0000000000.jpg").load()


def test_dsm_at_panorama_positions_is_street_level(tiny_world: Path) -> None:
    good = read_panorama_index(str(tiny_world / "panos.parquet")).good
    dsm = tiny_world / "dsm_2020.tif"
    at = sample(dsm, good["lon"].to_numpy(), good["lat"].to_numpy())[:, 0]
    for z, lon, lat in zip(at, good["lon"], good["lat"]):
        assert z - dsm_min_around(dsm, lon, lat, 8.0) < 0.5


def test_roofs_in_the_aerial_are_high_in_the_dsm(tiny_world: Path, buildings: gpd.GeoDataFrame) -> None:
    stands = (buildings["built"] == 0) & ((buildings["removed"] == 0) | (buildings["removed"] > 2021))
    early = buildings[stands]
    early = early[early.to_crs(early.estimate_utm_crs()).area > 120]
    pts = interior_points(early, 2.0)
    rgb = sample(tiny_world / "aerial_2021.tif", pts.x.to_numpy(), pts.y.to_numpy())
    colour_err = np.abs(rgb - np.array(early["rgb"].tolist())).mean(axis=1)
    assert np.mean(colour_err < 20) > 0.95
    dsm = tiny_world / "dsm_2020.tif"
    z = sample(dsm, pts.x.to_numpy(), pts.y.to_numpy())[:, 0]
    ground = np.array([dsm_min_around(dsm, x, y, 30.0) for x, y in zip(pts.x, pts.y)])
    height_err = np.abs(z - ground - early["height_m"].to_numpy())
    assert np.mean(height_err < 1.0) > 0.9, np.sort(height_err)[-10:]


def test_aerial_epochs_show_the_changed_buildings(tiny_world: Path, buildings: gpd.GeoDataFrame) -> None:
    changed = buildings[(buildings["built"] > 0) | (buildings["removed"] > 0)]
    assert len(changed) >= 3
    pts = interior_points(changed, 2.0)
    a21 = sample(tiny_world / "aerial_2021.tif", pts.x.to_numpy(), pts.y.to_numpy())
    a23 = sample(tiny_world / "aerial_2023.tif", pts.x.to_numpy(), pts.y.to_numpy())
    roof = np.array(changed["rgb"].tolist())
    err21, err23 = np.abs(a21 - roof).mean(axis=1), np.abs(a23 - roof).mean(axis=1)
    removed = (changed["removed"] > 0).to_numpy()
    matches = np.where(removed, (err21 < 20) & (err23 > 25), (err23 < 20) & (err21 > 25))
    assert matches.mean() > 0.9


def palette_class(rgb: np.ndarray, shade: float) -> int:
    return int(np.argmin(np.linalg.norm(np.array(ROOF_PALETTE) * shade - rgb, axis=1)))


@pytest.mark.slow
def test_panoramas_show_the_buildings_the_dsm_and_aerial_see(tiny_world: Path, buildings: gpd.GeoDataFrame) -> None:
    """March each bearing through the DSM; the first tall thing that is a building must appear in
    the panorama column of that bearing, in that building's colour."""
    good = read_panorama_index(str(tiny_world / "panos.parquet")).good
    good = good[good["year"] < 2022]  # the DSM (2020) shows the scene as it stood before 2022
    dsm = tiny_world / "dsm_2020.tif"
    tree = STRtree(list(buildings.geometry))
    dists = np.arange(1.0, 60.0, 0.25)
    checked = agree = 0
    for _, p in good.head(15).iterrows():
        img = np.asarray(Image.open(p["uri"]).convert("RGB"), dtype=np.float64)
        h, w = img.shape[:2]
        cam_ground = sample(dsm, np.array([p["lon"]]), np.array([p["lat"]]))[0, 0]
        for bearing in np.arange(0, 360, 10.0):
            lons, lats, _ = GEOD.fwd(np.full(dists.size, p["lon"]), np.full(dists.size, p["lat"]),
                                     np.full(dists.size, bearing), dists)
            z = sample(dsm, lons, lats)[:, 0]
            high = np.nonzero(z > cam_ground + 3.0)[0]
            if not high.size or dists[high[0]] < 3:
                continue
            k = high[0]
            hits = tree.query(Point(lons[k], lats[k]), predicate="intersects")
            if len(hits) != 1:
                continue  # a tree, or a footprint edge
            d = dists[k]
            col = int(((bearing - p["heading_deg"]) / 360.0 + 0.5) % 1.0 * w)
            elev = np.degrees(np.arctan2(3.8 - 2.5, d))  # 3.8 m up the facade: between shop and windows
            row = int((90.0 - elev) / 180.0 * h)
            pixel = np.median(img[row - 1:row + 2, col], axis=0)
            expected = np.array(buildings.iloc[hits[0]]["rgb"])
            checked += 1
            agree += palette_class(pixel, FACADE_SHADE) == palette_class(expected, 1.0)
    assert checked >= 40
    assert agree / checked > 0.85


def test_pois_stand_in_buildings(tiny_world: Path, buildings: gpd.GeoDataFrame) -> None:
    pois = read_pois(str(tiny_world / "pois.geojson")).pois
    assert pois["neighbourhood"].ne("").all()
    shops = pois[pois["category"] != "park"]
    pts = gpd.GeoSeries(gpd.points_from_xy(shops["lon"], shops["lat"]), crs=4326)
    inside = gpd.sjoin(gpd.GeoDataFrame(geometry=pts), buildings[["geometry"]], predicate="within")
    assert inside.index.nunique() / len(shops) > 0.95
    assert {"cafe", "restaurant", "grocery"} <= set(pois["category"])


@pytest.mark.slow
def test_same_seed_same_bytes(tmp_path: Path, tiny_world: Path) -> None:
    write_world(str(tmp_path), size="tiny", seed=0)

    def digest(folder: Path) -> dict[str, str]:
        names = ["panos.parquet", "dsm_2020.tif", "aerial_2023.tif"] + [
            f"panos/{p.name}" for p in sorted((folder / "panos").glob("*.jpg"))[:5]]
        return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names}

    assert digest(tmp_path) == digest(tiny_world)


@pytest.mark.slow
def test_helsinki_world_is_real_geography(tmp_path: Path) -> None:
    summary = write_world(str(tmp_path), size="tiny", seed=1, world="helsinki")
    assert summary["metro"] == "helsinki" and summary["scene_crs"] == "EPSG:3067"
    assert summary["counts"]["buildings"] >= 450
    cfg = load_config(str(tmp_path / "sources.yaml"))
    assert cfg.pois and cfg.pois.endswith(".osm.pbf")
    assert len(read_pois(cfg.pois).pois) > 1500
    table = read_panorama_index(cfg.panoramas)
    assert len(table.good) >= summary["panoramas"]["count"] - 2
    w, s, e, n = gpd.read_file(tmp_path / "boundary.geojson").total_bounds
    assert 24.93 < w < e < 24.96 and 60.16 < s < n < 60.18


def test_the_medium_capture_plan_surveys_places_in_both_splits_and_a_new_district() -> None:
    """The medium world's knobs on a small scene: the eastern district is 2023 only, re-captures
    come from the other split, points outside the metro are mostly drawn again."""
    from shapely.geometry import Point

    from unigeo.synth.raster import rasterize_scene
    from unigeo.synth.scene import procedural_scene
    from unigeo.synth.world import MEDIUM_YEAR_WEIGHTS, plan_panoramas

    scene = procedural_scene(900, 0)
    grids = rasterize_scene(scene, 2022, 1.0, 0)
    plans = plan_panoramas(scene, grids, 600, 0, MEDIUM_YEAR_WEIGHTS, new_district=0.2, outside_keep=0.1,
                           recapture_other_split=True)
    plain = plan_panoramas(scene, grids, 600, 0, MEDIUM_YEAR_WEIGHTS)
    xmin, _, xmax, _ = scene.bounds
    east = [p for p in plans if p.x > xmax - 0.2 * (xmax - xmin)]
    assert east and all(p.year == 2023 for p in east)
    west = [p for p in plans if p.x <= xmax - 0.2 * (xmax - xmin)]
    assert any(p.year != 2023 for p in west)

    def outside(ps: list) -> float:
        return sum(not scene.boundary.contains(Point(p.x, p.y)) for p in ps) / len(ps)

    assert outside(plans) < 0.5 * outside(plain)

    def both_splits(ps: list) -> int:  # places (5 m grid) captured in 2023 and in a training year
        years: dict[tuple[int, int], set[bool]] = {}
        for p in ps:
            years.setdefault((int(p.x // 5), int(p.y // 5)), set()).add(p.year == 2023)
        return sum(len(v) == 2 for v in years.values())

    assert both_splits(plans) > both_splits(plain)
