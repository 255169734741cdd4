"""``unigeo plan``: what a build would make, from indexes and headers alone, and the refusals it shares with
``unigeo build`` (a modality left empty: exit 1, one line naming the raster's year and the flag)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import rasterio
import yaml
from click.testing import CliRunner

from tests.conftest import TINY_BUILD_ARGS
from unigeo.cli import cli


def test_the_plan_projects_the_builds_samples_from_indexes_alone(tiny_world: Path, tiny_build: Path) -> None:
    r = CliRunner().invoke(cli, ["plan", "--config", str(tiny_world / "sources.yaml"), "--json", *TINY_BUILD_ARGS])
    assert r.exit_code == 0, r.output
    plan = json.loads(r.output)
    manifest = json.loads((tiny_build / "manifest.json").read_text())
    built = manifest["counts"]["overall"]["samples"]
    projected = plan["projection"]["samples"]
    # The build loses the cells whose every panorama fails to decode, which only reading the pixels shows.
    failed = sum(1 for line in (tiny_build / "rejects").glob("*.jsonl") for r in line.read_text().splitlines()
                 if json.loads(r)["reason"] == "no_usable_panorama")
    assert sum(projected.values()) - failed == sum(built.values()) and projected["test"] >= built["test"]
    (metro,) = plan["metros"].values()
    assert sum(metro["panoramas"]["by_split"].values()) == manifest["counts"]["overall"]["kept"] + \
        manifest["counts"]["overall"]["not_selected"] + manifest["counts"]["overall"]["rejected_by_reason"].get(
            "corrupt_jpeg", 0) + manifest["counts"]["overall"]["rejected_by_reason"].get("missing_file", 0)
    assert metro["rasters"]["aerial"]["2021"]["coverage"] > 0.9 and metro["rasters"]["dsm"]["2020"]["files"] == 1
    assert plan["projection"]["shards"] >= 2 and not plan["errors"]
    assert plan["projection"]["rejected_panoramas"]["outside_metros"] > 0


def test_plan_and_build_refuse_a_dsm_that_predates_the_years(tiny_world: Path, tmp_path: Path) -> None:
    args = ["--config", str(tiny_world / "sources.yaml"), "--years", "2021-2024"]  # the only DSM is from 2020
    r = CliRunner().invoke(cli, ["plan", *args])
    assert r.exit_code == 1, r.output
    (line,) = [x for x in r.output.splitlines() if x.startswith("error:")]
    assert "dsm: every dsm raster is from a year outside --years 2021-2024" in line and "dsm_2020.tif (2020)" in line
    r = CliRunner().invoke(cli, ["-q", "build", *args, "--out", str(tmp_path / "out")])
    assert r.exit_code == 1, r.output
    assert r.output.strip().splitlines()[-1] == "Error: " + line[len("error: "):]
    assert not (tmp_path / "out").exists()


def test_a_raster_dated_by_its_creation_time_is_a_warning(tiny_world: Path, tmp_path: Path) -> None:
    world = tmp_path / "w"
    shutil.copytree(tiny_world, world)
    # A producer's creation time, as many write it, and no acquisition date.
    with rasterio.open(world / "aerial_2021.tif", "r+", IGNORE_COG_LAYOUT_BREAK="YES") as ds:
        ds.update_tags(ACQUISITION_DATE="", TIFFTAG_DATETIME="2021:06:15 10:00:00")
    r = CliRunner().invoke(cli, ["plan", "--config", str(world / "sources.yaml")])
    assert r.exit_code == 0, r.output
    assert "warning: aerial: 1 raster(s) dated by TIFFTAG_DATETIME" in r.output and "aerial_2021.tif" in r.output


def test_a_metro_no_raster_or_panorama_reaches_is_a_warning(tiny_world: Path, tmp_path: Path) -> None:
    """A metro of its own without imagery leaves no modality empty (it has no samples); rasters that reach no
    metro at all would, and are an error."""
    world = tmp_path / "w"
    shutil.copytree(tiny_world, world)
    config = yaml.safe_load((world / "sources.yaml").read_text())
    boundary = json.loads((world / config["metros"][0]["boundary"]).read_text())
    far = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {
        "type": "Polygon", "coordinates": [[[10, 50], [10.01, 50], [10.01, 50.01], [10, 50.01], [10, 50]]]}}]}
    (world / "far.geojson").write_text(json.dumps(far))
    config["metros"].append({"name": "far", "boundary": "far.geojson"})
    (world / "sources.yaml").write_text(yaml.safe_dump(config))
    assert boundary["features"]
    r = CliRunner().invoke(cli, ["plan", "--config", str(world / "sources.yaml")])
    assert r.exit_code == 0, r.output
    warnings = [x for x in r.output.splitlines() if x.startswith("warning:")]
    assert any("no aerial raster of a usable year reaches metro far" in w for w in warnings)
    assert any("panoramas: none lies in metro far" in w for w in warnings)
    config["metros"] = [{"name": "far", "boundary": "far.geojson"}]
    (world / "sources.yaml").write_text(yaml.safe_dump(config))
    r = CliRunner().invoke(cli, ["plan", "--config", str(world / "sources.yaml")])
    assert r.exit_code == 1, r.output
    errors = [x for x in r.output.splitlines() if x.startswith("error:")]
    assert any("no dsm raster of a usable year reaches any metro (far)" in e for e in errors)
    assert any("panoramas: none of the" in e and "so there would be no sample" in e for e in errors)
