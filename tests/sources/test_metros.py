from __future__ import annotations

import os
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import Polygon, box

from unigeo.core.errors import EmptyGeometryError, MissingCRSError, SourceError
from unigeo.sources.metros import read_boundary

# A square in Web Mercator around (-71.06, 42.36).
MERC = box(-7910000, 5214000, -7909000, 5215000)


@pytest.mark.parametrize(("suffix", "driver"), [(".geojson", "GeoJSON"), (".gpkg", "GPKG"),
                                                 (".shp", "ESRI Shapefile"), (".parquet", None)])
def test_any_format_any_crs_to_wgs84(tmp_path: Path, suffix: str, driver: str | None) -> None:
    gdf = gpd.GeoDataFrame({"name": ["x"]}, geometry=[MERC], crs="EPSG:3857")
    path = tmp_path / f"b{suffix}"
    if driver is None:
        gdf.to_parquet(path)
    else:
        gdf.to_file(path, driver=driver)
    metro = read_boundary(str(path), "boston")
    w, s, e, n = metro.geometry.bounds
    assert -71.07 < w < e < -71.04 and 42.35 < s < n < 42.37
    assert metro.repairs == ()


def test_features_are_merged(tmp_path: Path) -> None:
    gdf = gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1), box(2, 0, 3, 1)], crs="EPSG:4326")
    gdf.to_file(tmp_path / "two.geojson")
    metro = read_boundary(str(tmp_path / "two.geojson"), "m")
    assert metro.geometry.geom_type == "MultiPolygon" and metro.geometry.area == pytest.approx(2.0)


def test_invalid_geometry_is_repaired_and_recorded(tmp_path: Path) -> None:
    bowtie = Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])
    assert not bowtie.is_valid
    gpd.GeoDataFrame(geometry=[bowtie], crs="EPSG:4326").to_file(tmp_path / "bow.geojson")
    metro = read_boundary(str(tmp_path / "bow.geojson"), "m")
    assert metro.geometry.is_valid and metro.geometry.area == pytest.approx(0.5)
    assert len(metro.repairs) == 1 and "Self-intersection" in metro.repairs[0]


def test_empty_geometry_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.geojson"
    feature = '{"type": "Feature", "properties": {}, "geometry": null}'
    path.write_text('{"type": "FeatureCollection", "features": [' + feature + "]}")
    with pytest.raises(EmptyGeometryError, match="empty.geojson"):
        read_boundary(str(path), "m")


def test_lines_only_is_an_error(tmp_path: Path) -> None:
    from shapely.geometry import LineString

    gpd.GeoDataFrame(geometry=[LineString([(0, 0), (1, 1)])], crs="EPSG:4326").to_file(tmp_path / "l.geojson")
    with pytest.raises(EmptyGeometryError, match="no polygon"):
        read_boundary(str(tmp_path / "l.geojson"), "m")


def test_shapefile_without_crs_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nocrs.shp"
    gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)], crs="EPSG:4326").to_file(path)
    os.remove(tmp_path / "nocrs.prj")
    with pytest.raises(MissingCRSError, match="nocrs.shp.*coordinate reference system"):
        read_boundary(str(path), "m")


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "junk.geojson").write_text("not json")
    with pytest.raises(SourceError, match="junk.geojson"):
        read_boundary(str(tmp_path / "junk.geojson"), "m")
