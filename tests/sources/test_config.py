from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from unigeo.core.errors import ConfigError
from unigeo.sources.config import load_config, parse_config

GOOD = """
metros:
  - name: boston
    boundary: b/boston.geojson
panoramas: panos.parquet
aerial: [naip_2021.tif, {path: gs://bucket/naip_2023.tif, date: 2023-07-01}]
dsm: /abs/dsm.tif
pois: pois.geojson
dates:
  naip_2021.tif: 2021-06-15
"""


def test_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "sources.yaml").write_text(GOOD)
    cfg = load_config(str(tmp_path / "sources.yaml"))
    assert cfg.metros[0].name == "boston"
    assert cfg.metros[0].boundary == str(tmp_path / "b" / "boston.geojson")
    assert cfg.panoramas == str(tmp_path / "panos.parquet")
    assert cfg.aerial[0].path == str(tmp_path / "naip_2021.tif")
    assert cfg.aerial[0].date == dt.date(2021, 6, 15)  # from `dates:`
    assert cfg.aerial[1].path == "gs://bucket/naip_2023.tif"  # URLs are kept
    assert cfg.aerial[1].date == dt.date(2023, 7, 1)
    assert cfg.dsm[0].path == "/abs/dsm.tif" and cfg.dsm[0].date is None
    assert cfg.pois == str(tmp_path / "pois.geojson")


def test_url_config_resolves_relative_paths_to_urls() -> None:
    cfg = parse_config({"metros": [{"name": "a", "boundary": "a.geojson"}], "panoramas": "p.csv"},
                       "gs://bucket/run/sources.yaml")
    assert cfg.metros[0].boundary == "gs://bucket/run/a.geojson"
    assert cfg.panoramas == "gs://bucket/run/p.csv"


@pytest.mark.parametrize(("data", "match"), [
    ({"metros": [], "panoramas": "p.csv"}, "non-empty list"),
    ({"metros": [{"name": "Boston", "boundary": "b.geojson"}], "panoramas": "p.csv"}, "lowercase"),
    ({"metros": [{"name": "a" * 250, "boundary": "b.geojson"}], "panoramas": "p.csv"}, "250 characters; at most 64"),
    ({"metros": [{"name": "a", "boundry": "b"}], "panoramas": "p"},
     r"metros\[0\] \('a'\) has unknown keys \['boundry'\]; allowed keys are \['boundary', 'name'\]"),
    ({"metros": [{"name": "a", "boundary": "x"}], "panoramas": "p", "dsm": [{"path": "d.tif", "dat": "2020"}]},
     r"dsm\[0\] \('d.tif'\) has unknown keys \['dat'\]; allowed keys are \['attribution', 'date', 'license', 'path'\]"),
    ({"metros": [{"name": "a", "boundary": "x"}, {"name": "a", "boundary": "y"}], "panoramas": "p"}, "unique"),
    ({"metros": [{"name": "a", "boundary": "x"}], "panoramas": "p", "aerail": []}, "unknown keys.*aerail"),
    ({"metros": [{"name": "a", "boundary": "x"}]}, "panoramas"),
    ({"metros": [{"name": "a", "boundary": "x"}], "panoramas": "p", "dates": {"x.tif": "June"}}, "YYYY-MM-DD"),
    ({"metros": [{"name": "a", "boundary": "x"}], "panoramas": "p", "aerial": [3]}, r"aerial\[0\]"),
    ([1, 2], "mapping"),
])
def test_bad_configs_name_the_problem(data: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_config(data, "/x/sources.yaml")


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "nope.yaml"))
    (tmp_path / "bad.yaml").write_text("metros: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(tmp_path / "bad.yaml"))
