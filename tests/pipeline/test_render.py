"""Every reject reason of the location and imagery stages, from the pure functions (no Beam), on real
files: JPEGs written with Pillow, GeoTIFFs written with rasterio."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from shapely.geometry import box

from tests.conftest import write_geotiff
from unigeo.core import reasons
from unigeo.core.sample import KEPT, REJECTED, SampleKey, decode_dsm
from unigeo.pipeline.cells import cell_token
from unigeo.pipeline.locate import assign, select
from unigeo.pipeline.options import ImageryOptions
from unigeo.pipeline.render import SampleOutcome, SampleRenderer
from unigeo.pipeline.text import TemplateGenerator, TextGenerator
from unigeo.pipeline.text_endpoint import EndpointGenerator
from unigeo.pipeline.tiles import tile_grid
from unigeo.pipeline.types import Pano
from unigeo.sources.tiles import RasterFile, raster_file

LAT, LON = 42.35, -71.07
LEVEL = 16
YEARS = (2017, 2024)
OPTS = ImageryOptions(crop_px=32, tile_px=32, gsd=1.0, max_nodata=0.2)


def pano(i: int, uri: str, year: int = 2021, lat: float = LAT, lon: float = LON) -> Pano:
    return Pano(i, f"p{i}", lat, lon, 90.0, f"{year}-05-01", year, uri)


def jpeg(path: Path) -> str:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 128, 3), dtype=np.uint8)).save(path, format="JPEG")
    return str(path)


def rasters(tmp_path: Path, dsm_nodata_share: float = 0.0) -> tuple[list[RasterFile], list[RasterFile]]:
    """An aerial (2021) and a DSM (2020) over the tile of the test cell, in its UTM zone; the DSM's
    first ``dsm_nodata_share`` of rows is nodata."""
    cell = cell_token(LAT, LON, LEVEL)
    from unigeo.pipeline.cells import cell_center

    grid = tile_grid(*cell_center(cell), OPTS.gsd, OPTS.tile_px)
    a, _, c, _, e, f = grid.transform
    bounds = (c - 20, f + e * grid.size - 20, c + a * grid.size + 20, f + 20)
    rgb = np.full((3, 72, 72), 120, dtype=np.uint8)
    dsm = np.full((72, 72), 15.0, dtype=np.float32)
    dsm[: int(72 * dsm_nodata_share)] = -9999.0
    aerial_path = write_geotiff(tmp_path / "aerial.tif", rgb, bounds, grid.crs)
    dsm_path = write_geotiff(tmp_path / "dsm.tif", dsm, bounds, grid.crs, nodata=-9999.0)
    return [raster_file(str(aerial_path), "2021-06-01")], [raster_file(str(dsm_path), "2020-06-01")]


def render(panos: list[Pano], aerial: list[RasterFile], dsm: list[RasterFile],
           generator: TextGenerator | None = None, split: str = "train") -> SampleOutcome:
    key = SampleKey("boston", cell_token(LAT, LON, LEVEL), split)
    sample, not_selected = select(key, panos, 120, 0, LEVEL)
    assert not not_selected
    renderer = SampleRenderer(OPTS, 0, 2023, YEARS, aerial, dsm, generator or TemplateGenerator(), 300.0, 12, None)
    try:
        return renderer.render(key, sample)
    finally:
        renderer.close()


def reasons_of(outcome: SampleOutcome) -> list[tuple[str, str]]:
    return [(r.kind, r.reason) for r in outcome.rejects]


def test_a_good_sample_has_every_member_and_a_kept_row_per_panorama(tmp_path: Path) -> None:
    aerial, dsm = rasters(tmp_path)
    out = render([pano(0, jpeg(tmp_path / "a.jpg")), pano(1, jpeg(tmp_path / "b.jpg"))], aerial, dsm)
    assert out.rejects == [] and out.encoded is not None and out.summary is not None
    members = dict(out.encoded.members)
    assert {"sv.000.jpg", "sv.001.jpg", "aerial.png", "dsm.npy", "txt", "json"} == set(members)
    assert np.allclose(decode_dsm(members["dsm.npy"]), 15.0)
    assert [(r.row, r.status) for r in out.ledger] == [(0, KEPT), (1, KEPT)]
    assert out.summary["crops"] == 2 and out.summary["aerial"] and out.summary["dsm"]


def test_missing_and_corrupt_panoramas_are_rejected_and_the_sample_keeps_the_rest(tmp_path: Path) -> None:
    aerial, dsm = rasters(tmp_path)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    out = render([pano(0, str(tmp_path / "nowhere.jpg")), pano(1, str(broken)), pano(2, jpeg(tmp_path / "ok.jpg"))],
                 aerial, dsm)
    assert sorted(reasons_of(out)) == [("panorama", reasons.CORRUPT_JPEG), ("panorama", reasons.MISSING_FILE)]
    assert sorted((r.row, r.status, r.reason) for r in out.ledger) == [
        (0, REJECTED, reasons.MISSING_FILE), (1, REJECTED, reasons.CORRUPT_JPEG), (2, KEPT, "")]
    assert out.encoded is not None and out.counts.count(("imagery", "rejected/missing_file", 1)) == 1


def test_a_cell_whose_panoramas_all_fail_is_a_cell_reject_with_no_sample(tmp_path: Path) -> None:
    aerial, dsm = rasters(tmp_path)
    out = render([pano(0, str(tmp_path / "gone.jpg"))], aerial, dsm)
    assert reasons_of(out) == [("panorama", reasons.MISSING_FILE), ("cell", reasons.NO_USABLE_PANORAMA)]
    assert out.encoded is None and out.summary is None and [r.status for r in out.ledger] == [REJECTED]


def test_no_raster_of_a_usable_year_is_tile_no_imagery(tmp_path: Path) -> None:
    aerial, dsm = rasters(tmp_path)
    holdout_only = [dataclasses.replace(aerial[0], date="2023-06-01")]  # a train sample never sees the holdout year
    out = render([pano(0, jpeg(tmp_path / "a.jpg"))], holdout_only, dsm)
    assert reasons_of(out) == [("tile", reasons.TILE_NO_IMAGERY)]
    assert out.encoded is not None and "aerial.png" not in dict(out.encoded.members)
    assert out.summary is not None and out.summary["missing"] == "aerial.png:tile_no_imagery"


def test_rasters_elsewhere_are_tile_no_coverage(tmp_path: Path) -> None:
    aerial, dsm = rasters(tmp_path)
    far = write_geotiff(tmp_path / "far.tif", np.zeros((3, 8, 8), dtype=np.uint8), (0, 0, 80, 80), "EPSG:32619")
    out = render([pano(0, jpeg(tmp_path / "a.jpg"))], [raster_file(str(far), "2021-01-01")], dsm)
    assert reasons_of(out) == [("tile", reasons.TILE_NO_COVERAGE)]


def test_too_much_nodata_is_tile_nodata(tmp_path: Path) -> None:
    aerial, dsm = rasters(tmp_path, dsm_nodata_share=0.6)
    out = render([pano(0, jpeg(tmp_path / "a.jpg"))], aerial, dsm)
    assert reasons_of(out) == [("tile", reasons.TILE_NODATA)]
    assert out.encoded is not None and "dsm.npy" not in dict(out.encoded.members)


def test_a_failing_text_endpoint_is_a_text_reject_with_the_template_text(tmp_path: Path) -> None:
    aerial, dsm = rasters(tmp_path)
    closed_port = EndpointGenerator("http://127.0.0.1:9/v1", "m", timeout_s=0.5, retries=1)
    out = render([pano(0, jpeg(tmp_path / "a.jpg"))], aerial, dsm, generator=closed_port)
    assert reasons_of(out) == [("text", reasons.TEXT_ENDPOINT_FAILED)]
    assert out.encoded is not None and dict(out.encoded.members)["txt"]


@pytest.mark.parametrize(("p", "reason"), [
    (pano(0, "a.jpg", lat=LAT + 1), reasons.OUTSIDE_METROS),
    (pano(0, "a.jpg", year=2015), reasons.YEAR_OUT_OF_RANGE),
])
def test_assign_rejects_outside_metros_and_out_of_range_years(p: Pano, reason: str) -> None:
    metros = [("boston", box(LON - 0.01, LAT - 0.01, LON + 0.01, LAT + 0.01))]
    result = assign(p, metros, LEVEL, 2023, YEARS)
    assert not isinstance(result, SampleKey) and result.reason == reason and result.row == 0


def test_assign_puts_the_holdout_year_in_test() -> None:
    metros = [("boston", box(LON - 0.01, LAT - 0.01, LON + 0.01, LAT + 0.01))]
    assert assign(pano(0, "a.jpg", year=2023), metros, LEVEL, 2023, YEARS) == SampleKey(
        "boston", cell_token(LAT, LON, LEVEL), "test")


def test_every_reject_reason_has_a_test() -> None:
    """Each reason in unigeo.core.reasons is named by at least one test module."""
    names = [n for n in dir(reasons) if n.isupper()]
    tests = "".join(p.read_text() for p in Path(__file__).resolve().parents[1].rglob("test_*.py"))
    untested = [n for n in names if f"reasons.{n}" not in tests and getattr(reasons, n) not in tests]
    assert not untested


def test_a_worker_renders_on_its_own_thread_without_spinning_pools(tmp_path: Path) -> None:
    """OpenCV's pool and OpenBLAS's threads would busy-wait beside each Beam work item."""
    import cv2
    from threadpoolctl import threadpool_info

    aerial, dsm = rasters(tmp_path)
    renderer = SampleRenderer(OPTS, 0, 2023, YEARS, aerial, dsm, TemplateGenerator(), 300.0, 12, None)
    try:
        assert cv2.getNumThreads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] == "blas")
    finally:
        renderer.close()
