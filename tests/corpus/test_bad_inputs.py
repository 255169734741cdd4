"""A corpus of bad inputs, one kind per case, across every source of a build.

Each case ends in one of two outcomes, and the test asserts which: a reject with its reason, the build
finishing and its ledger balancing (inputs = kept + not_selected + rejected, ``unigeo audit`` passing);
or a clear error (exit status 2, no traceback) before anything under ``--out`` changed. The panorama
kinds share one build of the tiny world with bad rows and bad files appended to its index.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rasterio
import rasterio.shutil
from click.testing import CliRunner, Result
from PIL import Image

from tests.conftest import write_geotiff
from unigeo.cli import cli
from unigeo.core import reasons
from unigeo.pipeline.crops import CropParams, crop_map, remap, render_crops

FAST = ("--crop-px", "64", "--tile-px", "64", "--max-nodata", "0.6")
IN_METRO = (42.3508, -71.0800)  # inside the tiny world's metro
TRAIN_DATE = "2021-06-01T10:00:00Z"


def copy_world(tiny_world: Path, dest: Path) -> Path:
    shutil.copytree(tiny_world, dest)
    return dest


def build(world: Path, out: Path, *extra: str, config: str = "sources.yaml") -> Result:
    return CliRunner().invoke(cli, ["-q", "build", "--config", str(world / config), "--out", str(out),
                                    *FAST, *extra])


def audit_ok(out: Path) -> dict[str, Any]:
    r = CliRunner().invoke(cli, ["audit", str(out)])
    report = json.loads(r.output)
    assert r.exit_code == 0 and report["ok"], report["violations"]
    return report


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def refused(result: Result, *words: str) -> None:
    """Exit status 2 with a message naming ``words``, and no traceback."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    for w in words:
        assert w in result.output, (w, result.output)


def balanced(manifest: dict[str, Any]) -> None:
    for c in [manifest["counts"]["overall"], *manifest["counts"]["per_metro"].values()]:
        assert c["inputs"] == c["kept"] + c["not_selected"] + c["rejected"]


def ledger(out: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted((out / "ledger").glob("*.parquet"))]).set_index("row")


def jpeg(img: Image.Image, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, **kw)
    return buf.getvalue()


# ---------------------------------------------------------------- panorama files and index rows


def pano_rows(world: Path) -> tuple[pd.DataFrame, dict[str, int], Image.Image]:
    """The tiny world's index with one appended row per bad kind; returns it, each kind's row number,
    and an upright panorama of the world."""
    index = pd.read_parquet(world / "panos.parquet")
    bad = world / "bad"
    bad.mkdir()
    upright = Image.open(world / index["uri"].iloc[0]).convert("RGB")
    w, h = upright.size
    files: dict[str, bytes | None] = {
        "corrupt_bytes": b"\xff\xd8\xff\xe0 not a jpeg at all",
        "truncated_jpeg": jpeg(upright)[:2000],
        "empty_file": b"",
        "html_error_page": b"<html><body>403 Forbidden</body></html>",
        "missing_file": None,
        "too_large": jpeg(Image.new("RGB", (2048, 1024), (90, 120, 160))),  # 2.1 Mpx > 2 x --max-pixels
        "too_large_by_a_little": jpeg(Image.new("RGB", (1200, 600), (90, 120, 160))),  # 0.72 Mpx
        "square": jpeg(upright.resize((512, 512))),
        "one_pixel": jpeg(Image.new("RGB", (1, 1))),
        "two_by_one": jpeg(Image.new("RGB", (2, 1))),
        "portrait_without_exif": jpeg(upright.transpose(Image.Transpose.ROTATE_90)),
        "exif_rotated": None,  # written below
        "grayscale": jpeg(upright.convert("L")),
        "cmyk": jpeg(upright.convert("CMYK")),
        "png_named_jpg": None,  # written below
    }
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter; viewers turn it back
    (bad / "exif_rotated.jpg").write_bytes(jpeg(upright.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes()))
    buf = io.BytesIO()
    upright.save(buf, format="PNG")
    (bad / "png_named_jpg.jpg").write_bytes(buf.getvalue())
    for name, data in files.items():
        if data is not None:
            (bad / f"{name}.jpg").write_bytes(data)
    (bad / "a_folder.jpg").mkdir()
    lat, lon = IN_METRO
    good = {"lat": lat, "lon": lon, "heading_deg": 90.0, "captured_at": TRAIN_DATE}
    rows: list[dict[str, Any]] = []
    names: list[str] = []
    for i, name in enumerate([*files, "a_folder"]):
        rows.append({"pano_id": f"bad_{name}", **good, "lat": lat + i * 1e-5, "uri": f"bad/{name}.jpg"})
        names.append(f"bad_{name}")
    existing = {**good, "uri": str(index["uri"].iloc[0])}
    row_kinds = {
        "missing_pano_id": {"pano_id": ""},
        "lat_text": {"lat": np.nan},
        "lat_91": {"lat": 91.0},
        "lon_200": {"lon": 200.0},
        "null_island": {"lat": 0.0, "lon": 0.0},
        "heading_nan": {"heading_deg": np.nan},
        "heading_360": {"heading_deg": 360.0},
        "heading_negative": {"heading_deg": -1.0},
        "date_missing": {"captured_at": ""},
        "date_words": {"captured_at": "yesterday"},
        "date_feb_30": {"captured_at": "2021-02-30"},
        "uri_missing": {"uri": ""},
        "outside_metros": {"lat": 40.0, "lon": -75.0},
        "year_2010": {"captured_at": "2010-05-01"},
        "year_2030": {"captured_at": "2030-05-01"},
        "unknown_protocol": {"uri": "nosuchscheme://bucket/x.jpg"},
    }
    for name, change in row_kinds.items():
        rows.append({**good, "pano_id": f"row_{name}", "uri": "bad/none.jpg", **change})
        names.append(f"row_{name}")
    rows += [{**existing, "pano_id": "dup_same"}, {**existing, "pano_id": "dup_same"},  # identical repeat
             {**existing, "pano_id": "dup_conflict"}, {**existing, "pano_id": "dup_conflict", "heading_deg": 95.0}]
    names += ["duplicate_first", "duplicate_row", "duplicate_id_conflict_first", "duplicate_id_conflict"]
    table = pd.concat([index, pd.DataFrame(rows)], ignore_index=True)
    at = {name: len(index) + k for k, name in enumerate(names)}
    return table, at, upright


# (kind, expected status, expected reason)
PANORAMA_CASES = [
    ("bad_corrupt_bytes", "rejected", reasons.CORRUPT_JPEG),
    ("bad_truncated_jpeg", "rejected", reasons.CORRUPT_JPEG),
    ("bad_empty_file", "rejected", reasons.CORRUPT_JPEG),
    ("bad_html_error_page", "rejected", reasons.CORRUPT_JPEG),
    ("bad_missing_file", "rejected", reasons.MISSING_FILE),
    ("bad_a_folder", "rejected", reasons.UNREADABLE_FILE),
    ("bad_too_large", "rejected", reasons.IMAGE_TOO_LARGE),
    ("bad_too_large_by_a_little", "rejected", reasons.IMAGE_TOO_LARGE),
    ("bad_square", "rejected", reasons.NOT_EQUIRECTANGULAR),
    ("bad_one_pixel", "rejected", reasons.NOT_EQUIRECTANGULAR),
    ("bad_two_by_one", "rejected", reasons.IMAGE_TOO_SMALL),
    ("bad_portrait_without_exif", "rejected", reasons.NOT_EQUIRECTANGULAR),
    ("bad_exif_rotated", "kept", ""),
    ("bad_grayscale", "kept", ""),
    ("bad_cmyk", "kept", ""),
    ("bad_png_named_jpg", "kept", ""),
    ("row_missing_pano_id", "rejected", reasons.MISSING_PANO_ID),
    ("row_lat_text", "rejected", reasons.BAD_LAT),
    ("row_lat_91", "rejected", reasons.BAD_LAT),
    ("row_lon_200", "rejected", reasons.BAD_LON),
    ("row_null_island", "rejected", reasons.NULL_ISLAND),
    ("row_heading_nan", "rejected", reasons.BAD_HEADING),
    ("row_heading_360", "rejected", reasons.HEADING_OUT_OF_RANGE),
    ("row_heading_negative", "rejected", reasons.HEADING_OUT_OF_RANGE),
    ("row_date_missing", "rejected", reasons.MISSING_DATE),
    ("row_date_words", "rejected", reasons.BAD_DATE),
    ("row_date_feb_30", "rejected", reasons.BAD_DATE),
    ("row_uri_missing", "rejected", reasons.MISSING_URI),
    ("row_outside_metros", "rejected", reasons.OUTSIDE_METROS),
    ("row_year_2010", "rejected", reasons.YEAR_OUT_OF_RANGE),
    ("row_year_2030", "rejected", reasons.YEAR_OUT_OF_RANGE),
    ("row_unknown_protocol", "rejected", reasons.MISSING_FILE),
    ("duplicate_row", "rejected", reasons.DUPLICATE_ROW),
    ("duplicate_id_conflict", "rejected", reasons.DUPLICATE_ID_CONFLICT),
    ("duplicate_id_conflict_first", "rejected", reasons.DUPLICATE_ID_CONFLICT),
]


@pytest.fixture(scope="module")
def panorama_corpus(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One build of the tiny world with every bad panorama kind, bad POIs, and --max-reject-fraction 0.05."""
    root = tmp_path_factory.mktemp("corpus")
    world = copy_world(tiny_world, root / "world")
    table, at, upright = pano_rows(world)
    table.to_parquet(world / "panos.parquet", index=False)
    pois = json.loads((world / "pois.geojson").read_text())
    pois["features"] += [
        {"type": "Feature", "properties": {"poi_id": "bad1", "name": "No Category", "category": None},
         "geometry": {"type": "Point", "coordinates": [IN_METRO[1], IN_METRO[0]]}},
        {"type": "Feature", "properties": {"poi_id": "bad2", "name": "No Place", "category": "park"}, "geometry": None},
        {"type": "Feature", "properties": {"poi_id": "bad3", "name": "Off The Map", "category": "park"},
         "geometry": {"type": "Point", "coordinates": [500.0, 95.0]}},
    ]
    (world / "pois.geojson").write_text(json.dumps(pois))
    out = root / "out"
    result = build(world, out, "--max-pixels", "600000", "--crops-per-pano", "1", "--max-reject-fraction", "0.05")
    return {"world": world, "out": out, "result": result, "at": at, "upright": upright}


def test_too_many_rejects_exit_1_after_writing_everything(panorama_corpus: dict[str, Any]) -> None:
    r, out = panorama_corpus["result"], panorama_corpus["out"]
    assert r.exit_code == 1 and "--max-reject-fraction 0.05" in r.output and "panoramas rejected" in r.output
    manifest = json.loads((out / "manifest.json").read_text())
    balanced(manifest)
    audit_ok(out)
    assert (out / "report" / "index.html").exists()


@pytest.mark.parametrize(("kind", "status", "reason"), PANORAMA_CASES, ids=[c[0] for c in PANORAMA_CASES])
def test_each_bad_panorama_kind_ends_with_its_outcome(panorama_corpus: dict[str, Any], kind: str, status: str,
                                                      reason: str) -> None:
    row = ledger(panorama_corpus["out"]).loc[panorama_corpus["at"][kind]]
    assert (row["status"], row["reason"]) == (status, reason), row["detail"]
    if status == "rejected":
        rejects = [json.loads(line) for p in (panorama_corpus["out"] / "rejects").glob("*.jsonl")
                   for line in p.read_text().splitlines()]
        assert any(r["row"] == panorama_corpus["at"][kind] and r["reason"] == reason for r in rejects)


def test_rejects_are_counted_by_reason(panorama_corpus: dict[str, Any]) -> None:
    manifest = json.loads((panorama_corpus["out"] / "manifest.json").read_text())
    by_reason = manifest["counts"]["overall"]["rejected_by_reason"]
    for _, status, reason in PANORAMA_CASES:
        if status == "rejected":
            assert by_reason.get(reason, 0) >= 1, reason
    assert manifest["counters"]["imagery/rejected/image_too_large"] == 2


def test_bad_pois_are_rejected_with_their_reasons(panorama_corpus: dict[str, Any]) -> None:
    rejects = [json.loads(line) for p in (panorama_corpus["out"] / "rejects").glob("*.jsonl")
               for line in p.read_text().splitlines()]
    poi = {r["id"]: r["reason"] for r in rejects if r["kind"] == "poi"}
    assert poi == {"bad1": reasons.POI_MISSING_CATEGORY, "bad2": reasons.POI_BAD_GEOMETRY,
                   "bad3": reasons.POI_BAD_GEOMETRY}


def test_exif_orientation_is_applied(panorama_corpus: dict[str, Any]) -> None:
    """The EXIF-rotated panorama's crop matches the same crop of the upright picture; read without the
    EXIF turn it would not."""
    upright = np.asarray(panorama_corpus["upright"])
    rotated = (panorama_corpus["world"] / "bad" / "exif_rotated.jpg").read_bytes()
    params = [CropParams(30.0, 5.0, 90.0)]
    ours = np.asarray(Image.open(io.BytesIO(render_crops(rotated, 0.0, params, 64)[0])), dtype=float)
    h, w = upright.shape[:2]
    truth = remap(upright, *crop_map(w, h, 0.0, params[0], 64)).astype(float)
    turned = np.asarray(Image.open(io.BytesIO(rotated)).convert("RGB").transpose(Image.Transpose.ROTATE_90))
    unturned = np.asarray(Image.open(io.BytesIO(rotated)).convert("RGB"))
    assert turned.shape == upright.shape and unturned.shape != upright.shape
    assert np.abs(ours - truth).mean() < 8.0


# ---------------------------------------------------------------- rasters


def test_dsm_sentinels_without_nodata_are_read_as_nodata(tiny_world: Path, tmp_path: Path) -> None:
    world = copy_world(tiny_world, tmp_path / "world")
    with rasterio.open(world / "dsm_2020.tif") as ds:
        z, profile, bounds = ds.read(1), ds.profile, ds.bounds
    z = np.where(z == profile["nodata"], -9999.0, z).astype(np.float32)
    z[: z.shape[0] // 2, : z.shape[1] // 2] = -9999.0  # a quarter of the file holds the sentinel
    (world / "dsm_2020.tif").unlink()
    write_geotiff(world / "dsm_2020.tif", z, tuple(bounds), str(profile["crs"]), nodata=None)
    r = build(world, tmp_path / "out")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counters"]["imagery/dsm_sentinel_pixels"] > 0
    lows = []
    for shard in (tmp_path / "out" / "shards").rglob("*.tar"):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".dsm.npy"):
                    f = tar.extractfile(m)
                    assert f is not None
                    d = np.load(io.BytesIO(f.read()))
                    lows.append(float(np.nanmin(d)) if np.isfinite(d).any() else 0.0)
    assert lows and min(lows) > -1000.0
    balanced(manifest)
    audit_ok(tmp_path / "out")


def test_unreadable_raster_blocks_are_tile_rejects(tiny_world: Path, tmp_path: Path) -> None:
    world = copy_world(tiny_world, tmp_path / "world")
    for name in ("aerial_2021.tif", "aerial_2023.tif"):  # a COG cut in half: its southern blocks are gone
        cog = tmp_path / name
        rasterio.shutil.copy(world / name, cog, driver="COG", BLOCKSIZE=128, OVERVIEWS="NONE", COMPRESS="DEFLATE")
        data = cog.read_bytes()
        (world / name).write_bytes(data[: len(data) // 2])
    r = build(world, tmp_path / "out")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    tiles = manifest["counts"]["overall"]["rejects_by_kind"]["tile"]
    assert tiles.get(reasons.TILE_UNREADABLE, 0) >= 1
    assert manifest["counts"]["overall"]["samples"]["train"] > 0
    balanced(manifest)
    audit_ok(tmp_path / "out")


def rewrite_raster(path: Path, dtype: str | None = None, crs: str | None = "keep", bands: int | None = None) -> None:
    with rasterio.open(path) as ds:
        data, bounds, old_crs, tags = ds.read(), ds.bounds, ds.crs, ds.tags()
    if dtype:
        data = (data.astype(np.float64) * (16 if dtype == "uint16" else 1 / 255)).astype(dtype)
    if bands:
        data = data[:bands]
    path.unlink()
    write_geotiff(path, data, tuple(bounds), str(old_crs) if crs == "keep" else crs, tags=tags)


RASTER_CASES = {
    "aerial_uint16": (lambda w: rewrite_raster(w / "aerial_2021.tif", dtype="uint16"), ["uint16", "8-bit"]),
    "aerial_float32": (lambda w: rewrite_raster(w / "aerial_2021.tif", dtype="float32"), ["float32"]),
    "aerial_one_band": (lambda w: rewrite_raster(w / "aerial_2021.tif", bands=1), ["1 band"]),
    "aerial_without_crs": (lambda w: rewrite_raster(w / "aerial_2021.tif", crs=None), ["coordinate reference"]),
    "aerial_engineering_crs": (lambda w: rewrite_raster(
        w / "aerial_2021.tif", crs='LOCAL_CS["site grid",UNIT["metre",1],AXIS["X",EAST],AXIS["Y",NORTH]]'),
        ["EPSG:4326"]),
    "aerial_not_a_raster": (lambda w: (w / "aerial_2021.tif").write_text("not a tiff"), ["cannot open raster"]),
    "aerial_missing": (lambda w: (w / "aerial_2021.tif").unlink(), ["cannot open raster"]),
    "dsm_without_date": (lambda w: (w / "sources.yaml").write_text(
        (w / "sources.yaml").read_text().replace("dates:\n  dsm_2020.tif: '2020-05-01'\n", "")), ["acquisition date"]),
}


# ---------------------------------------------------------------- boundaries, POI files, sources.yaml, index


def set_config(world: Path, text: str) -> None:
    (world / "sources.yaml").write_text(text)


BOUNDARY_BOWTIE = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {
    "type": "Polygon", "coordinates": [[[-71.0826, 42.3486], [-71.0776, 42.3526], [-71.0776, 42.3486],
                                        [-71.0826, 42.3526], [-71.0826, 42.3486]]]}}]}


def base_config(world: Path) -> str:
    return (world / "sources.yaml").read_text()


CONFIG_CASES: dict[str, tuple[Any, list[str]]] = {
    "boundary_missing": (lambda w: (w / "boundary.geojson").unlink(), ["cannot read boundary"]),
    "boundary_not_json": (lambda w: (w / "boundary.geojson").write_text("{oops"), ["cannot read boundary"]),
    "boundary_empty": (lambda w: (w / "boundary.geojson").write_text(
        '{"type": "FeatureCollection", "features": []}'), ["no geometry"]),
    "boundary_a_point": (lambda w: (w / "boundary.geojson").write_text(json.dumps(
        {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [-71.08, 42.35]}})),
        ["no polygon"]),
    "boundary_projected_without_crs": (lambda w: (w / "boundary.geojson").write_text(json.dumps(
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
            [[234000, 899000], [235000, 899000], [235000, 900000], [234000, 899000]]]}})), ["not lon/lat"]),
    "pois_missing": (lambda w: (w / "pois.geojson").unlink(), ["pois.geojson"]),
    "index_missing": (lambda w: (w / "panos.parquet").unlink(), ["panorama index not found"]),
    "index_not_parquet": (lambda w: (w / "panos.parquet").write_text("garbage"), ["cannot read panorama index"]),
    "index_missing_column": (lambda w: pd.read_parquet(w / "panos.parquet").drop(columns=["heading_deg"]).to_parquet(
        w / "panos.parquet"), ["missing columns", "heading_deg"]),
    "index_unknown_format": (lambda w: set_config(w, base_config(w).replace("panos.parquet", "panos.xlsx")),
                             ["unknown panorama index format"]),
    "yaml_not_yaml": (lambda w: set_config(w, "metros: [unclosed"), ["not valid YAML"]),
    "yaml_unknown_top_key": (lambda w: set_config(w, base_config(w) + "aerials: []\n"), ["aerials", "allowed"]),
    "yaml_metro_key_typo": (lambda w: set_config(w, base_config(w).replace("boundary:", "boundry:")),
                            ["metros[0]", "boundry", "allowed keys"]),
    "yaml_raster_key_typo": (lambda w: set_config(w, base_config(w).replace(
        "- aerial_2021.tif", "- {path: aerial_2021.tif, dat: 2021-06-01}")), ["aerial[0]", "dat", "allowed keys"]),
    "yaml_dates_names_no_raster": (lambda w: set_config(w, base_config(w).replace(
        "dsm_2020.tif: '2020-05-01'", "dsm_2020.tiff: '2020-05-01'")), ["dsm_2020.tiff", "not among"]),
    "yaml_bad_date": (lambda w: set_config(w, base_config(w).replace("'2020-05-01'", "'last spring'")),
                      ["not a date"]),
    "yaml_metro_name_uppercase": (lambda w: set_config(w, base_config(w).replace("name: riverton", "name: River Ton")),
                                  ["lowercase"]),
    "yaml_metro_name_250_chars": (lambda w: set_config(w, base_config(w).replace(
        "name: riverton", "name: " + "r" * 250)), ["250 characters"]),
    "yaml_duplicate_metros": (lambda w: set_config(w, base_config(w).replace(
        "metros:\n", "metros:\n- name: riverton\n  boundary: boundary.geojson\n")), ["unique"]),
    "yaml_no_metros": (lambda w: set_config(w, base_config(w).replace(
        "- name: riverton\n  boundary: boundary.geojson\n", "")), ["metros"]),
    "yaml_missing": (lambda w: (w / "sources.yaml").unlink(), ["config file not found"]),
}


SPOILED_SOURCES = {**RASTER_CASES, **CONFIG_CASES}
assert len(SPOILED_SOURCES) == len(RASTER_CASES) + len(CONFIG_CASES)


@pytest.mark.parametrize("kind", sorted(SPOILED_SOURCES))
def test_unusable_rasters_configs_and_source_files_are_refused_before_anything_changes(
        tiny_world: Path, tmp_path: Path, kind: str) -> None:
    world = copy_world(tiny_world, tmp_path / "world")
    spoil, words = SPOILED_SOURCES[kind]
    spoil(world)
    out = tmp_path / "out"
    refused(build(world, out), *words)
    assert not out.exists()


def test_a_self_intersecting_boundary_is_repaired_and_recorded(tiny_world: Path, tmp_path: Path) -> None:
    world = copy_world(tiny_world, tmp_path / "world")
    (world / "boundary.geojson").write_text(json.dumps(BOUNDARY_BOWTIE))
    r = build(world, tmp_path / "out")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert "make_valid" in manifest["config"]["metros"][0]["repairs"][0]
    balanced(manifest)
    audit_ok(tmp_path / "out")


def test_an_empty_index_builds_renders_and_audits(tiny_world: Path, tmp_path: Path) -> None:
    world = copy_world(tiny_world, tmp_path / "world")
    pd.read_parquet(world / "panos.parquet").iloc[0:0].to_parquet(world / "panos.parquet", index=False)
    r = build(world, tmp_path / "out")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "out" / "report" / "report.json").read_text())
    assert report["headline"]["inputs"] == 0 and report["overlap"]["test_to_nearest_train_m"] is None
    audit_ok(tmp_path / "out")


# ---------------------------------------------------------------- command-line options


OPTION_CASES = {
    "flag_typo_max_pano": (["--max-pano", "5"], ["--max-pano", "did you mean --max-panos"]),
    "flag_typo_beam_style": (["--crops_per_pano=2"], ["--crops_per_pano", "did you mean --crops-per-pano"]),
    "flag_unknown": (["--frobnicate"], ["no such option: --frobnicate"]),
    "crops_per_pano_zero": (["--crops-per-pano", "0"], ["--crops-per-pano"]),
    "level_zero": (["--level", "0"], ["--level"]),
    "level_31": (["--level", "31"], ["--level"]),
    "level_30_huge_covering": (["--level", "30"], ["--max-cells", "cells"]),
    "years_reversed": (["--years", "2024-2017"], ["2017-2024"]),
    "years_words": (["--years", "recent"], ["--years"]),
    "holdout_year_1800": (["--holdout-year", "1800"], ["--holdout-year"]),
    "gsd_zero": (["--gsd", "0"], ["--gsd"]),
    "max_nodata_above_one": (["--max-nodata", "1.5"], ["--max-nodata"]),
    "pitch_min_above_max": (["--pitch-min", "20", "--pitch-max", "10"], ["--pitch-min"]),
    "parent_level_below_level": (["--level", "14", "--parent-level", "15"], ["--parent-level"]),
    "endpoint_without_model": (["--text-endpoint", "http://localhost:1/v1"], ["--text-model"]),
    "max_reject_fraction_above_one": (["--max-reject-fraction", "2"], ["--max-reject-fraction"]),
}


@pytest.mark.parametrize("kind", sorted(OPTION_CASES))
def test_bad_options_are_refused_before_anything_changes(tiny_world: Path, tmp_path: Path, kind: str) -> None:
    args, words = OPTION_CASES[kind]
    out = tmp_path / "out"
    refused(build(tiny_world, out, *args), *words)
    assert not out.exists()


def test_a_holdout_year_without_imagery_gives_an_empty_test_split_that_renders(tiny_world: Path,
                                                                              tmp_path: Path) -> None:
    r = build(tiny_world, tmp_path / "out", "--holdout-year", "2030")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"]["overall"]["samples"]["test"] == 0
    report = json.loads((tmp_path / "out" / "report" / "report.json").read_text())
    assert report["overlap"]["test_to_nearest_train_m"] is None
    audit_ok(tmp_path / "out")
