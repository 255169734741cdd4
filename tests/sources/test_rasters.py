from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_geotiff
from unigeo.core.errors import MissingCRSError, MissingDateError, SourceError
from unigeo.sources.config import RasterSpec
from unigeo.sources.rasters import date_from_tags, open_raster

UTM_BOUNDS = (330000.0, 4690000.0, 330064.0, 4690064.0)


def test_header_date_and_lonlat_bounds(tmp_path: Path, rgb_64: np.ndarray) -> None:
    path = write_geotiff(tmp_path / "a.tif", rgb_64, UTM_BOUNDS, "EPSG:32619",
                         tags={"TIFFTAG_DATETIME": "2021:06:15 11:00:00"})
    r = open_raster(RasterSpec(str(path)), "aerial")
    assert r.epsg == 32619 and r.count == 3 and r.dtype == "uint8"
    assert r.res == (1.0, 1.0) and r.width == r.height == 64
    assert r.date == dt.date(2021, 6, 15) and r.date_source == "TIFFTAG_DATETIME"
    w, s, e, n = r.bounds_lonlat
    assert -71.1 < w < e < -70.9 and 42.3 < s < n < 42.4


def test_config_date_wins_over_tags(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "d.tif", np.zeros((8, 8), np.float32), UTM_BOUNDS, "EPSG:32619",
                         nodata=-9999, tags={"ACQUISITION_DATE": "2019-01-02"})
    assert open_raster(RasterSpec(str(path)), "dsm").date == dt.date(2019, 1, 2)
    r = open_raster(RasterSpec(str(path), dt.date(2020, 5, 1)), "dsm")
    assert r.date == dt.date(2020, 5, 1) and r.date_source == "config" and r.nodata == -9999


def test_raster_without_crs_is_an_error_naming_the_file(tmp_path: Path, rgb_64: np.ndarray) -> None:
    path = write_geotiff(tmp_path / "nocrs.tif", rgb_64, (0, 0, 64, 64), None, tags={"ACQUISITION_DATE": "2021-01-01"})
    with pytest.raises(MissingCRSError, match="nocrs.tif"):
        open_raster(RasterSpec(str(path)), "aerial")


def test_raster_without_any_date_says_how_to_give_one(tmp_path: Path, rgb_64: np.ndarray) -> None:
    path = write_geotiff(tmp_path / "nodate.tif", rgb_64, UTM_BOUNDS, "EPSG:32619")
    with pytest.raises(MissingDateError, match="nodate.tif.*dates:"):
        open_raster(RasterSpec(str(path)), "aerial")


def test_single_band_aerial_and_unreadable_files(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "grey.tif", np.zeros((8, 8), np.uint8), UTM_BOUNDS, "EPSG:32619")
    with pytest.raises(SourceError, match="grey.tif.*1 band"):
        open_raster(RasterSpec(str(path), dt.date(2021, 1, 1)), "aerial")
    (tmp_path / "junk.tif").write_bytes(b"II*\x00junk")
    with pytest.raises(SourceError, match="junk.tif"):
        open_raster(RasterSpec(str(tmp_path / "junk.tif")), "aerial")


@pytest.mark.parametrize(("tags", "expected"), [
    ({"TIFFTAG_DATETIME": "2021:06:15 11:00:00"}, dt.date(2021, 6, 15)),
    ({"acquisition_date": "2018-03-04"}, dt.date(2018, 3, 4)),
    ({"TIFFTAG_DATETIME": "2021:99:15 11:00:00", "DATE_ACQUIRED": "2017/07/08"}, dt.date(2017, 7, 8)),
    ({"OTHER": "2021-01-01"}, None),
])
def test_date_tags(tags: dict[str, str], expected: dt.date | None) -> None:
    found = date_from_tags(tags)
    assert (found[0] if found else None) == expected
