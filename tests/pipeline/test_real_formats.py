"""The tiny world in the services' own formats builds the same samples as the native world: rasters cut into
COG tiles on their own pixel grid, listed as a STAC ItemCollection (aerial) and a stac-geoparquet file (DSM);
panoramas as Mapillary image objects and Panoramax STAC items; POIs as Overture places."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import TINY_BUILD_ARGS
from unigeo.cli import cli
from unigeo.synth.formats import write_service_world


def members(build: Path) -> dict[str, bytes]:
    out = {}
    for shard in sorted((build / "shards").glob("*/*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                f = tar.extractfile(m)
                assert f is not None
                out[m.name] = f.read()
    return out


# Tiles at the aerial's own 0.3 m, where files on one pixel grid read as one raster (at 0.6 m each 0.3 m
# tile file would be decimated on its own, and seams would show; tests/sources/test_stac.py covers both).
ARGS = (*TINY_BUILD_ARGS, "--gsd", "0.3")


def build(config: Path, out: Path) -> Path:
    r = CliRunner().invoke(cli, ["-q", "build", "--config", str(config), "--out", str(out), *ARGS])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def stac_build(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    world = tmp_path_factory.mktemp("stac_world") / "world"
    shutil.copytree(tiny_world, world)
    summary = write_service_world(str(world), tiles_per_side=4)
    assert summary["rasters"]["aerial"]["items"] == 32 and summary["rasters"]["dsm"]["items"] == 16
    return build(world / "sources.yaml", world.parent / "build")


@pytest.fixture(scope="module")
def native_build(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tiny_world / "sources.yaml", tmp_path_factory.mktemp("native_03") / "build")


@pytest.mark.slow
def test_stac_tiles_build_the_native_samples_byte_for_byte(stac_build: Path, native_build: Path) -> None:
    ours, native = members(stac_build), members(native_build)
    assert ours.keys() == native.keys() and native
    differ = sorted(k for k in native if ours[k] != native[k])
    # The json names other source files; a text lacks the neighbourhood, which Overture places do not carry.
    assert all(k.endswith((".json", ".txt")) for k in differ), differ[:5]
    places = json.loads((stac_build.parent / "world" / "pois.geojson").read_text())["features"]
    for key in (k for k in differ if k.endswith(".txt")):  # the same places are named
        theirs, mine = native[key].decode(), ours[key].decode()
        named = [p["properties"]["name"] for p in places if p["properties"]["name"] in theirs]
        assert named and all(n in mine for n in named), (theirs, mine)
    kinds = {k.split(".", 1)[1] for k in native}
    assert {"aerial.png", "dsm.npy", "txt", "sv.000.jpg"} <= kinds
    metas = [json.loads(v) for k, v in ours.items() if k.endswith(".json")]
    files = [f for m in metas for kind in ("aerial", "dsm") if m[kind] for f in m[kind]["files"]]
    assert files and all(f.startswith("stac/") for f in files)
    assert max(len(m["aerial"]["files"]) for m in metas if m["aerial"]) <= 9  # the files it read, of 16
    manifest = json.loads((stac_build / "manifest.json").read_text())
    assert manifest["config"]["aerial"] == [{"stac": str(stac_build.parent / "world" / "stac" / "aerial.json"),
                                             "asset": "image"}]


@pytest.mark.slow
def test_records_of_services_are_accounted_for(stac_build: Path) -> None:
    manifest = json.loads((stac_build / "manifest.json").read_text())
    by_kind = manifest["counts"]["overall"]["rejects_by_kind"]
    assert by_kind["panorama"]["not_panorama"] == 3 and by_kind["panorama"]["not_equirectangular"] == 1
    assert by_kind["poi"] == {"poi_low_confidence": 2}  # the far places were never read
    assert [s["format"] for s in manifest["config"]["panorama_sources"]] == ["mapillary", "panoramax"]
    assert manifest["config"]["panorama_sources"][0]["license"] == "CC-BY-SA-4.0"  # licences reach the manifest
    assert manifest["config"]["poi_sources"][0]["attribution"] == "Overture Maps Foundation"
    from unigeo.outputs.audit import _input_rows

    # The audit counts the rows of every source (the services' as staged in the build) against the ledger.
    world = stac_build.parent / "world"
    mly = json.loads((world / "mapillary.json").read_text())
    records = sum(len(p["data"]) for p in (mly if isinstance(mly, list) else [mly]))
    records += len(json.loads((world / "panoramax.json").read_text())["features"])
    assert _input_rows(str(stac_build), manifest["config"]) == manifest["counts"]["overall"]["inputs"] == records
    r = CliRunner().invoke(cli, ["audit", str(stac_build)])
    assert r.exit_code == 0, r.output
