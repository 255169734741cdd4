"""Imagery members of a real build on the tiny world: crops decode, and aerial and DSM tiles are
co-registered with each other and with the buildings that made them."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from affine import Affine
from PIL import Image
from rasterio.features import rasterize

from unigeo.pipeline.options import ImageryOptions


def samples(built: Path) -> list[dict]:
    out = []
    for tar_path in sorted(built.glob("shards/*/*.tar")):
        with tarfile.open(tar_path) as tar:
            current: dict = {}
            for info in tar:
                key, _, ext = info.name.partition(".")
                if current and current["key"] != key:
                    out.append(current)
                    current = {}
                current["key"] = key
                current[ext] = tar.extractfile(info).read()  # type: ignore[union-attr]
            if current:
                out.append(current)
    return out


@pytest.fixture
def built(tiny_build: Path) -> Path:
    return tiny_build  # two 128-px crops per panorama, --max-nodata 0.6


def test_crops_and_tiles_have_the_configured_shapes(built: Path) -> None:
    found = samples(built)
    assert found
    for s in found:
        meta = json.loads(s["json"])
        crops = [c for p in meta["panoramas"] for c in p["crops"]]
        assert len(crops) == 2 * len(meta["panoramas"])
        for c in crops:
            img = Image.open(io.BytesIO(s[c["member"]]))
            assert img.size == (128, 128) and img.mode == "RGB"
            assert -5 <= c["pitch"] <= 15 and 60 <= c["fov"] <= 100 and 0 <= c["yaw"] < 360
        if meta["aerial"]:
            assert Image.open(io.BytesIO(s["aerial.png"])).size == (256, 256)
            assert meta["aerial"]["crs"].startswith("EPSG:326") and meta["aerial"]["gsd"] == 0.6
            expected_year = 2023 if meta["split"] == "test" else 2021
            assert meta["aerial"]["year"] == expected_year
        if meta["dsm"]:
            dsm = np.load(io.BytesIO(s["dsm.npy"]))
            assert dsm.dtype == np.float32 and dsm.shape == (256, 256)
            assert np.nanmin(dsm) > 0 and np.nanmax(dsm) < 200  # metres above sea level on the synthetic terrain


def test_aerial_and_dsm_tiles_are_coregistered(built: Path, tiny_world: Path) -> None:
    buildings = gpd.read_file(tiny_world / "buildings.geojson")
    steady = buildings[(buildings["built"] == 0) & (buildings["removed"] == 0)]
    offsets = []
    for s in samples(built):
        meta = json.loads(s["json"])
        if not (meta["aerial"] and meta["dsm"]):
            continue
        rgb = np.asarray(Image.open(io.BytesIO(s["aerial.png"]))).astype(int)
        dsm = np.load(io.BytesIO(s["dsm.npy"]))
        transform = Affine(*meta["aerial"]["transform"])
        local = steady.to_crs(meta["aerial"]["crs"])
        left, top = transform.c, transform.f
        right, bottom = left + 256 * transform.a, top + 256 * transform.e
        for geom, colour, height in zip(local.geometry, local["colour"], local["height_m"]):
            minx, miny, maxx, maxy = geom.bounds
            if geom.area < 150 or minx < left + 10 or maxx > right - 10 or miny < bottom + 10 or maxy > top - 10:
                continue
            region = rasterize([(geom.buffer(1.2), 1)], out_shape=(256, 256), transform=transform) > 0
            footprint = rasterize([(geom, 1)], out_shape=(256, 256), transform=transform) > 0
            rgb_ref = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
            roof = region & (np.abs(rgb - rgb_ref).mean(axis=2) < 20)
            ground = np.nanmin(np.where(region, dsm, np.nan))
            high = region & (np.abs(dsm - ground - height) < 1.5)  # its own roof height, not a neighbour's
            if roof.sum() < 50 or high.sum() < 50:
                continue

            def centroid(mask: np.ndarray) -> np.ndarray:
                ys, xs = np.nonzero(mask)
                return np.array([xs.mean(), ys.mean()])

            offsets.append((centroid(roof) - centroid(high), centroid(roof) - centroid(footprint)))
    assert len(offsets) >= 10
    roof_vs_dsm = np.array([o[0] for o in offsets])
    roof_vs_truth = np.array([o[1] for o in offsets])
    # Within a pixel (0.6 m) for nearly every building (a neighbour of the same colour and height can
    # blur one), and no systematic shift between the two rasters or against the footprints.
    assert np.mean(np.abs(roof_vs_dsm).max(axis=1) < 1.0) > 0.9
    assert np.abs(np.median(roof_vs_dsm, axis=0)).max() < 0.25
    assert np.mean(np.abs(roof_vs_truth).max(axis=1) < 1.0) > 0.9
    assert np.abs(np.median(roof_vs_truth, axis=0)).max() < 0.25


def test_imagery_options_are_checked() -> None:
    with pytest.raises(ValueError, match="pitch"):
        ImageryOptions(pitch_min=20.0, pitch_max=10.0)
    with pytest.raises(ValueError, match="fov"):
        ImageryOptions(fov_min=60.0, fov_max=190.0)
    with pytest.raises(ValueError):
        ImageryOptions(crop_px=4)
