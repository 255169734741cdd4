"""The output folder as a transaction: a build replaces only an earlier build's files, refuses anything
else before it changes a byte, and a build that fails leaves the earlier one complete."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.corpus.test_bad_inputs import audit_ok, build, copy_world, refused, snapshot
from unigeo.outputs.folder import OWNED, PREVIOUS, STAGING, listing, owned


@pytest.fixture
def earlier(tiny_world: Path, tmp_path: Path) -> Path:
    """A finished build to build over."""
    out = tmp_path / "data"
    r = build(tiny_world, out)
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.parametrize("intruder", ["shards/train/thesis.pdf", "report/my_notes.txt", "samples/panos.parquet",
                                      "notes.md", "ledger/old/ledger.parquet", "mydata/x.csv"])
def test_user_files_in_a_build_folder_make_the_build_refuse(earlier: Path, tiny_world: Path, intruder: str) -> None:
    (earlier / intruder).parent.mkdir(parents=True, exist_ok=True)
    (earlier / intruder).write_text("mine")
    before = snapshot(earlier)
    refused(build(tiny_world, earlier, "--max-panos", "1"), "did not write", intruder)
    assert snapshot(earlier) == before
    assert (earlier / intruder).read_text() == "mine"


def test_a_folder_of_other_files_is_refused(tiny_world: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    (mine / "shards" / "train").mkdir(parents=True)
    (mine / "shards" / "train" / "thesis.pdf").write_text("chapter 1")
    before = snapshot(mine)
    refused(build(tiny_world, mine), "no UniGeo build")
    assert snapshot(mine) == before


def test_a_manifest_that_is_not_unigeos_is_refused(tiny_world: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"format": "someone-else/3"}))
    refused(build(tiny_world, other), "not a UniGeo build")
    assert (other / "manifest.json").read_text() == json.dumps({"format": "someone-else/3"})


@pytest.mark.parametrize("where", ["equal", "above", "inputs_under_samples"])
def test_an_output_folder_holding_an_input_is_refused(tiny_world: Path, tmp_path: Path, where: str) -> None:
    world = copy_world(tiny_world, tmp_path / "top" / "world")
    out = {"equal": world, "above": tmp_path / "top", "inputs_under_samples": tmp_path / "top"}[where]
    if where == "inputs_under_samples":
        shutil.move(str(world), str(tmp_path / "top" / "samples"))
        world = tmp_path / "top" / "samples"
    before = snapshot(tmp_path / "top")
    refused(build(world, out), "holds the input")
    assert snapshot(tmp_path / "top") == before


@pytest.mark.parametrize("inside", ["data", "runs/data"])
def test_an_output_folder_inside_the_inputs_folder_is_refused(tiny_world: Path, tmp_path: Path, inside: str) -> None:
    world = copy_world(tiny_world, tmp_path / "world")
    before = snapshot(world)
    refused(build(world, world / inside), "lies inside", "the folder of the input")
    assert snapshot(world) == before


def test_a_rebuild_replaces_the_earlier_build_and_nothing_else_remains(earlier: Path, tiny_world: Path) -> None:
    first = json.loads((earlier / "manifest.json").read_text())
    r = build(tiny_world, earlier, "--max-panos", "1", "--shard-max-samples", "2")
    assert r.exit_code == 0, r.output
    second = json.loads((earlier / "manifest.json").read_text())
    assert second["options"]["max_panos"] == 1 and second["shards"] != first["shards"]
    on_disk = sorted(str(p.relative_to(earlier)) for p in (earlier / "shards").rglob("*.tar"))
    assert on_disk == sorted(s["shard"] for s in second["shards"])
    assert not (earlier / STAGING).exists() and not (earlier / PREVIOUS).exists()
    audit_ok(earlier)


def test_leftovers_of_a_killed_build_are_cleared(earlier: Path, tiny_world: Path) -> None:
    (earlier / STAGING / "shards" / "train").mkdir(parents=True)
    (earlier / STAGING / "shards" / "train" / "riverton-train-000000.tar").write_bytes(b"half")
    r = build(tiny_world, earlier)
    assert r.exit_code == 0, r.output
    assert not (earlier / STAGING).exists()
    audit_ok(earlier)


def test_every_file_a_build_writes_is_owned(earlier: Path) -> None:
    assert all(owned(rel) for rel in listing(str(earlier)))
    assert not owned("shards/train/thesis.pdf") and not owned("report/my_notes.txt") and len(OWNED) > 5


def test_a_rebuild_with_a_broken_index_changes_nothing(earlier: Path, tiny_world: Path, tmp_path: Path) -> None:
    world = copy_world(tiny_world, tmp_path / "world")
    (world / "panos.parquet").write_text("truncated")
    before = snapshot(earlier)
    refused(build(world, earlier), "cannot read panorama index")
    assert snapshot(earlier) == before
    audit_ok(earlier)


@pytest.mark.parametrize("table", ["ledger", "cells", "samples", "rejects"])
def test_missing_tables_are_violations_and_clear_report_errors(earlier: Path, table: str) -> None:
    from click.testing import CliRunner

    from unigeo.cli import cli

    shutil.rmtree(earlier / table)
    r = CliRunner().invoke(cli, ["audit", str(earlier)])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert any(table in v for v in json.loads(r.output)["violations"])
    r = CliRunner().invoke(cli, ["report", str(earlier)])
    assert "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit))
    if table != "rejects":
        assert r.exit_code == 1 and "missing" in r.output


def test_a_metro_far_from_every_panorama_builds_empty_splits_that_render(tiny_world: Path, tmp_path: Path) -> None:
    world = copy_world(tiny_world, tmp_path / "world")
    far = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
        [[-70.0, 41.0], [-69.99, 41.0], [-69.99, 41.01], [-70.0, 41.01], [-70.0, 41.0]]]}}
    (world / "boundary.geojson").write_text(json.dumps(far))
    refused = build(world, tmp_path / "refused", "--level", "14")  # no raster reaches it: tiles would be empty
    assert refused.exit_code == 1 and "no aerial raster of a usable year reaches any metro" in refused.output
    assert not (tmp_path / "refused").exists()
    r = build(world, tmp_path / "out", "--level", "14", "--no-imagery")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    c = manifest["counts"]["overall"]
    assert c["samples"] == {"train": 0, "test": 0} and c["rejected_by_reason"]["outside_metros"] > 0
    assert c["cells"] > 0 and (tmp_path / "out" / "report" / "index.html").exists()
    audit_ok(tmp_path / "out")
