from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import Point, box

from unigeo.core import reasons
from unigeo.sources.pois import read_pois
from unigeo.synth.osm import helsinki_pbf


def test_geojson_points_polygons_and_rejects(tmp_path: Path) -> None:
    gdf = gpd.GeoDataFrame({
        "name": ["Aurora Cafe", "Central Park", "", "Nameless"],
        "category": ["cafe", "park", "bank", None],
        "neighbourhood": ["Brighton", "", "", ""],
    }, geometry=[Point(-71.1, 42.35), box(-71.2, 42.3, -71.19, 42.31), None, Point(-71.0, 42.0)], crs=4326)
    gdf.to_file(tmp_path / "p.geojson")
    t = read_pois(str(tmp_path / "p.geojson"))
    assert t.pois["name"].tolist() == ["Aurora Cafe", "Central Park"]
    assert t.pois["neighbourhood"].tolist() == ["Brighton", ""]
    park = t.pois.iloc[1]
    assert -71.2 < park["lon"] < -71.19 and 42.3 < park["lat"] < 42.31  # a point inside the polygon
    assert t.rejects[["row", "reason"]].values.tolist() == [
        [2, reasons.POI_BAD_GEOMETRY], [3, reasons.POI_MISSING_CATEGORY]]
    assert t.pois["poi_id"].is_unique


def test_geoparquet_in_a_projected_crs_and_osm_style_tags(tmp_path: Path) -> None:
    gdf = gpd.GeoDataFrame({"name": ["Shop"], "shop": ["supermarket"], "osm_id": [42]},
                           geometry=[Point(-7910000, 5214000)], crs=3857)
    gdf.to_parquet(tmp_path / "p.parquet")
    t = read_pois(str(tmp_path / "p.parquet"))
    row = t.pois.iloc[0]
    assert row["category"] == "supermarket" and row["source_id"] == "42"
    assert row["lon"] == pytest.approx(-71.056, abs=1e-3) and row["lat"] == pytest.approx(42.36, abs=1e-2)


def test_real_osm_extract() -> None:
    t = read_pois(helsinki_pbf())
    assert len(t.pois) > 1500
    cats = set(t.pois["category"])
    assert {"cafe", "restaurant", "pub"} <= cats
    assert t.pois["lat"].between(60.16, 60.18).all() and t.pois["lon"].between(24.93, 24.96).all()
    assert (t.pois["name"] != "").sum() > 800
    assert t.pois["source_id"].str.match(r"^(node|way|relation)/\d+$").all()
