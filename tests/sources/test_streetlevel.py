"""Panoramas from Mapillary (Graph API v4 image objects) and Panoramax (STAC items): fields mapped onto the native
index, corrected values preferred, records that are no 360-degree equirectangular panorama rejected with a
reason, and the order of records never changing which panoramas a cell keeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unigeo.core import reasons
from unigeo.core.errors import ConfigError, SourceError
from unigeo.core.sample import SampleKey
from unigeo.pipeline.cells import cell_token
from unigeo.pipeline.locate import panos_of, select
from unigeo.sources.config import parse_config
from unigeo.sources.panoramas import check_rows
from unigeo.sources.streetlevel import read_mapillary, read_panoramax

LAT, LON = 42.3505, -71.0800


def image(i: int, **kw: object) -> dict[str, object]:
    point = {"type": "Point", "coordinates": [LON + i * 1e-5, LAT]}
    return {"id": str(1000 + i), "geometry": point, "compass_angle": 90.0, "captured_at": 1_688_212_800_000 + i,
            "is_pano": True, "camera_type": "equirectangular", "width": 2048, "height": 1024,
            "thumb_original_url": f"https://example.invalid/{i}.jpg", **kw}


def test_mapillary_fields_prefer_the_corrected_values_and_local_images(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "1000.jpg").write_bytes(b"")
    fixed = {"type": "Point", "coordinates": [LON + 0.001, LAT + 0.001]}
    records = [image(0, computed_geometry=fixed, computed_compass_angle=93.5), image(1)]
    (tmp_path / "mly.json").write_text(json.dumps({"data": records}))
    df = read_mapillary(str(tmp_path / "mly.json"), str(tmp_path / "img"))
    assert df["pano_id"].tolist() == ["1000", "1001"]
    assert (df.loc[0, "lat"], df.loc[0, "lon"], df.loc[0, "heading_deg"]) == (LAT + 0.001, LON + 0.001, 93.5)
    assert df.loc[1, "heading_deg"] == 90.0
    assert df.loc[0, "captured_at"] == "2023-07-01T12:00:00+00:00"  # milliseconds since the epoch, in UTC
    assert df.loc[0, "uri"] == str(tmp_path / "img" / "1000.jpg")
    assert df.loc[1, "uri"] == "https://example.invalid/1.jpg"  # not downloaded: the record's thumbnail
    table = check_rows(df)
    assert len(table.good) == 2 and table.good["year"].tolist() == [2023, 2023]


@pytest.mark.parametrize("layout", ["list", "page", "pages", "geojson"])
def test_mapillary_files_as_the_api_and_tools_save_them(tmp_path: Path, layout: str) -> None:
    records = [image(i) for i in range(5)]
    data: object = {"list": records, "page": {"data": records},
                    "pages": [{"data": records[:2]}, {"data": records[2:]}],
                    "geojson": {"type": "FeatureCollection", "features": [
                        {"type": "Feature", "geometry": r["geometry"],
                         "properties": {k: v for k, v in r.items() if k != "geometry"}} for r in records]}}[layout]
    (tmp_path / "m.json").write_text(json.dumps(data))
    assert read_mapillary(str(tmp_path / "m.json"))["pano_id"].tolist() == [str(1000 + i) for i in range(5)]


def test_records_that_are_no_equirectangular_panorama_are_rejected_with_a_reason(tmp_path: Path) -> None:
    records = [image(0), image(1, is_pano=False), image(2, camera_type="perspective"),
               image(3, camera_type="fisheye"), image(4, width=4000, height=3000), image(5, camera_type="spherical")]
    (tmp_path / "m.json").write_text(json.dumps(records))
    table = check_rows(read_mapillary(str(tmp_path / "m.json")))
    assert table.good["pano_id"].tolist() == ["1000", "1005"]
    got = dict(zip(table.rejects["pano_id"], table.rejects["reason"]))
    assert got == {"1001": reasons.NOT_PANORAMA, "1002": reasons.NOT_PANORAMA, "1003": reasons.NOT_PANORAMA,
                   "1004": reasons.NOT_EQUIRECTANGULAR}
    assert "4000x3000 is not 2:1" in table.rejects.set_index("pano_id").loc["1004", "detail"]


def test_panoramax_items_map_azimuth_datetime_and_the_hd_asset(tmp_path: Path) -> None:
    def item(i: int, fov: float = 360) -> dict[str, object]:
        return {"type": "Feature", "id": f"a1b2-{i}", "geometry": {"type": "Point", "coordinates": [LON, LAT]},
                "properties": {"datetime": "2021-05-04T10:00:00Z", "view:azimuth": 12.5 + i,
                               "pers:interior_orientation": {"field_of_view": fov}},
                "assets": {"hd": {"href": f"pics/{i}.jpg"}, "thumb": {"href": f"t/{i}.jpg"}}}
    (tmp_path / "items.json").write_text(json.dumps({"type": "FeatureCollection",
                                                     "features": [item(0), item(1, fov=180)]}))
    table = check_rows(read_panoramax(str(tmp_path / "items.json")))
    (row,) = table.good.itertuples()
    assert (row.pano_id, row.heading_deg, row.year) == ("a1b2-0", 12.5, 2021)
    assert row.uri == str(tmp_path / "pics" / "0.jpg")
    assert table.rejects["reason"].tolist() == [reasons.NOT_PANORAMA]
    (tmp_path / "bad.json").write_text(json.dumps({"type": "Catalog"}))
    with pytest.raises(SourceError, match="not a STAC ItemCollection of Panoramax pictures"):
        read_panoramax(str(tmp_path / "bad.json"))


def test_the_order_of_records_does_not_change_what_a_cell_keeps(tmp_path: Path) -> None:
    records = [image(i) for i in range(12)]
    chosen = []
    for order in (records, records[::-1], records[5:] + records[:5]):
        (tmp_path / "m.json").write_text(json.dumps(order))
        good = check_rows(read_mapillary(str(tmp_path / "m.json"))).good
        key = SampleKey("boston", cell_token(LAT, LON, 16), "train")
        sample, _ = select(key, panos_of(good), 4, 0, 16)
        chosen.append([p["pano_id"] for p in sample["panoramas"]])
    assert chosen[0] == chosen[1] == chosen[2]


def test_panorama_sources_in_the_config(tmp_path: Path) -> None:
    cfg = parse_config({"metros": [{"name": "a", "boundary": "a.geojson"}],
                        "panoramas": [{"format": "mapillary", "path": "m.json", "images": "m/",
                                       "license": "CC-BY-SA-4.0"}, "panos.parquet"]}, str(tmp_path / "s.yaml"))
    mly, native = cfg.panorama_sources
    assert (mly.format, mly.images, mly.licence.license) == ("mapillary", str(tmp_path / "m"), "CC-BY-SA-4.0")
    assert native.format == "native" and cfg.panoramas == str(tmp_path / "m.json")
    with pytest.raises(ConfigError, match=r"format 'streetview' is not one of \['mapillary', 'native', 'panoramax'\]"):
        parse_config({"metros": [{"name": "a", "boundary": "a.geojson"}],
                      "panoramas": {"format": "streetview", "path": "x"}}, "s.yaml")
    unknown = r"panoramas\[0\] \('p.json', format panoramax\) has unknown keys \['images'\]"
    with pytest.raises(ConfigError, match=unknown):
        parse_config({"metros": [{"name": "a", "boundary": "a.geojson"}],
                      "panoramas": [{"format": "panoramax", "path": "p.json", "images": "x"}]}, "s.yaml")
