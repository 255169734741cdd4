"""Tiles on UTM grids from rasters in other CRSs: markers land where they should, mosaics fill."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.warp import Resampling, reproject

from tests.conftest import write_geotiff
from unigeo.pipeline.tiles import tile_grid
from unigeo.sources.tiles import Grid, RasterStack

LAT, LON = 42.3505, -71.0800
MARKER = (LAT + 0.00004, LON + 0.00012)  # ~4.4 m north, ~9.9 m east of the centre


def merc_raster(path: Path, res: float = 0.4, half_m: float = 120.0, marker: bool = True) -> Path:
    """RGB in EPSG:3857 around (LAT, LON): grey, with a 3 x 3 m red square at MARKER."""
    to = Transformer.from_crs(4326, 3857, always_xy=True)
    cx, cy = to.transform(LON, LAT)
    scale = 1 / np.cos(np.radians(LAT))  # mercator units per ground metre
    half = half_m * scale
    n = int(2 * half / (res * scale))
    data = np.full((3, n, n), 120, np.uint8)
    if marker:
        mx, my = to.transform(MARKER[1], MARKER[0])
        xs = cx - half + (np.arange(n) + 0.5) * (2 * half / n)
        ys = cy + half - (np.arange(n) + 0.5) * (2 * half / n)
        inside = (np.abs(ys - my)[:, None] <= 1.5 * scale) & (np.abs(xs - mx)[None, :] <= 1.5 * scale)
        data[0][inside], data[1][inside], data[2][inside] = 250, 10, 10
    return write_geotiff(path, data, (cx - half, cy - half, cx + half, cy + half), "EPSG:3857")


def expected_pixel(grid: Grid, lat: float, lon: float) -> tuple[float, float]:
    x, y = Transformer.from_crs(4326, grid.crs, always_xy=True).transform(lon, lat)
    a, _, c, _, e, f = grid.transform
    return (x - c) / a, (y - f) / e


def red_centroid(rgb: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero((rgb[..., 0] > 180) & (rgb[..., 1] < 90))
    assert xs.size
    return float(xs.mean() + 0.5), float(ys.mean() + 0.5)


def test_grid_is_utm_and_centred() -> None:
    grid = tile_grid(LAT, LON, 0.6, 256)
    assert grid.crs == "EPSG:32619" and grid.size == 256
    assert expected_pixel(grid, LAT, LON) == pytest.approx((128.0, 128.0), abs=1e-6)
    assert tile_grid(-33.9, 151.2, 0.6, 8).crs == "EPSG:32756"


@pytest.mark.parametrize("res", [0.4, 0.15])
def test_marker_lands_on_its_pixel(tmp_path: Path, res: float) -> None:
    path = merc_raster(tmp_path / "a.tif", res=res)
    grid = tile_grid(LAT, LON, 0.6, 128)
    stack = RasterStack([str(path)], "aerial")
    data, valid, *_ = stack.read([str(path)], grid)  # type: ignore[misc]
    assert valid.all() and data.shape == (128, 128, 3) and data.dtype == np.uint8
    assert red_centroid(data) == pytest.approx(expected_pixel(grid, *MARKER), abs=1.0)


def test_matches_gdal_reprojection(tmp_path: Path) -> None:
    path = merc_raster(tmp_path / "a.tif")
    grid = tile_grid(LAT, LON, 0.6, 96)
    ours, *_ = RasterStack([str(path)], "aerial").read([str(path)], grid)  # type: ignore[misc]
    ref = np.zeros((3, 96, 96), np.uint8)
    with rasterio.open(path) as ds:
        reproject(rasterio.band(ds, [1, 2, 3]), ref, dst_transform=rasterio.Affine(*grid.transform),
                  dst_crs=grid.crs, resampling=Resampling.bilinear)
    diff = np.abs(ours.astype(int) - np.moveaxis(ref, 0, -1).astype(int))
    assert diff.mean() < 3.0


def test_dsm_nodata_becomes_nan(tmp_path: Path) -> None:
    to = Transformer.from_crs(4326, 26986, always_xy=True)
    cx, cy = to.transform(LON, LAT)
    z = np.full((200, 200), 15.0, np.float32)
    z[:, :100] = -9999.0  # the western half has no data
    path = write_geotiff(tmp_path / "d.tif", z, (cx - 50, cy - 50, cx + 50, cy + 50), "EPSG:26986", nodata=-9999.0)
    data, valid, *_ = RasterStack([str(path)], "dsm").read([str(path)], tile_grid(LAT, LON, 0.6, 64))  # type: ignore[misc]
    assert data.dtype == np.float32
    assert np.isnan(data[:, :25]).all() and (data[:, 40:] == pytest.approx(15.0)) and valid[:, 40:].all()
    assert not valid[:, :25].any()


def test_mosaic_of_two_halves_and_no_coverage(tmp_path: Path) -> None:
    to = Transformer.from_crs(4326, 26986, always_xy=True)
    cx, cy = to.transform(LON, LAT)
    west = write_geotiff(tmp_path / "w.tif", np.full((100, 100), 1.0, np.float32), (cx - 60, cy - 50, cx, cy + 50),
                         "EPSG:26986", nodata=-9999.0)
    east = write_geotiff(tmp_path / "e.tif", np.full((100, 100), 2.0, np.float32), (cx, cy - 50, cx + 60, cy + 50),
                         "EPSG:26986", nodata=-9999.0)
    stack = RasterStack([str(west), str(east)], "dsm")
    grid = tile_grid(LAT, LON, 0.6, 64)
    one = stack.read([str(west)], grid)
    assert one is not None and 0.3 < one[1].mean() < 0.7
    both, valid, *_ = stack.read([str(west), str(east)], grid)  # type: ignore[misc]
    assert valid.mean() > 0.97
    assert np.nanmean(both[:, :20]) == pytest.approx(1.0) and np.nanmean(both[:, -20:]) == pytest.approx(2.0)
    assert stack.read([str(west)], tile_grid(LAT + 0.01, LON, 0.6, 64)) is None


def test_a_raster_stack_bounds_gdals_block_cache_unless_the_user_did(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """GDAL's default cache (5% of the machine's memory) grew each build worker by GBs."""
    from rasterio.env import get_gdal_config, set_gdal_config

    from unigeo.sources.tiles import BLOCK_CACHE_BYTES

    path = write_geotiff(tmp_path / "a.tif", np.zeros((3, 64, 64), np.uint8), (330000, 4690000, 330032, 4690032),
                         "EPSG:32619")
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    set_gdal_config("GDAL_CACHEMAX", 5 * BLOCK_CACHE_BYTES)
    RasterStack([str(path)], "aerial").close()
    assert int(get_gdal_config("GDAL_CACHEMAX")) == BLOCK_CACHE_BYTES
    monkeypatch.setenv("GDAL_CACHEMAX", "512")
    set_gdal_config("GDAL_CACHEMAX", 512)
    RasterStack([str(path)], "aerial").close()
    assert int(get_gdal_config("GDAL_CACHEMAX")) == 512
    set_gdal_config("GDAL_CACHEMAX", BLOCK_CACHE_BYTES)
