"""The panorama renderer's conventions on a hand-made scene."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from unigeo.synth.raster import BUILDING, GRASS, SceneGrids
from unigeo.synth.render import column_bearings, grid_north_offset, render_panorama, row_elevations

RED = (200, 30, 30)


def box_scene(cx: float, cy: float, half: float, height: float) -> SceneGrids:
    """100 x 100 m of grass at z=0 with one red box centred at (cx, cy) (metres from the camera)."""
    res = 0.25
    n = 400
    ys, xs = np.mgrid[0:n, 0:n]
    x = -50 + (xs + 0.5) * res
    y = 50 - (ys + 0.5) * res
    inside = (np.abs(x - cx) <= half) & (np.abs(y - cy) <= half)
    ground = np.zeros((n, n), np.float32)
    cls = np.where(inside, BUILDING, GRASS).astype(np.uint8)
    colour = np.full((n, n, 3), (100, 140, 70), np.uint8)
    colour[inside] = RED
    return SceneGrids(transform=Affine(res, 0, -50, 0, -res, 50), res=res, ground=ground,
                      surface=np.where(inside, height, 0).astype(np.float32), cls=cls,
                      building=np.where(inside, 0, -1).astype(np.int32),
                      colours=np.array([RED, (0, 0, 0)], np.float32), colour=colour)


def red_columns(img: np.ndarray, row: int) -> np.ndarray:
    px = img[row].astype(int)
    return np.nonzero((px[:, 0] > 120) & (px[:, 1] < 80) & (px[:, 2] < 80))[0]


def test_centre_column_looks_along_heading() -> None:
    b = column_bearings(30.0, 360)
    assert b[180] == pytest.approx(30.5) and b[179] == pytest.approx(29.5)
    assert np.all(np.diff(np.unwrap(np.radians(b))) > 0)  # bearing grows to the right
    e = row_elevations(180)
    assert e[0] == pytest.approx(89.5) and e[-1] == pytest.approx(-89.5)


@pytest.mark.parametrize("heading", [0.0, 45.0, 200.0])
def test_a_box_to_the_east_appears_at_bearing_90(heading: float) -> None:
    grids = box_scene(20, 0, 4, 10)  # box east of the camera, 16-24 m away
    img = render_panorama(grids, 0.0, 0.0, 0.0, heading, 0.0, width=720)
    horizon = 180 - 5  # a little above the horizon (camera at 2.5 m, box 10 m tall)
    cols = red_columns(img, horizon)
    bearings = column_bearings(heading, 720)[cols]
    assert len(cols) > 0
    assert np.all(np.abs(((bearings - 90 + 180) % 360) - 180) < 15)  # atan(4/16) = 14 degrees
    assert np.abs(((np.mean(bearings) - 90 + 180) % 360) - 180) < 1.5
    assert (img[0].astype(int)[:, 2] > img[0].astype(int)[:, 0]).all()  # sky on top
    assert not red_columns(img, 359).size  # ground below


def test_north_offset_rotates_the_scene() -> None:
    grids = box_scene(0, 20, 4, 10)  # box at grid north
    img = render_panorama(grids, 0.0, 0.0, 0.0, 0.0, north_offset_deg=-10.0, width=720)
    cols = red_columns(img, 175)
    # True north is 10 degrees left of grid north, so the grid-north box sits at true bearing +10.
    signed = (column_bearings(0.0, 720)[cols] + 180) % 360 - 180
    assert np.mean(signed) == pytest.approx(10.0, abs=1.5)


def test_taller_box_reaches_higher_rows_and_occludes() -> None:
    low = render_panorama(box_scene(20, 0, 4, 6), 0, 0, 0, 90.0, 0.0, width=720)
    high = render_panorama(box_scene(20, 0, 4, 30), 0, 0, 0, 90.0, 0.0, width=720)

    def top_row(img: np.ndarray) -> int:
        rows = [r for r in range(360) if red_columns(img, r).size and 350 < red_columns(img, r).mean() < 370]
        return min(rows)

    # Expected top edge: atan((h - 2.5) / 16) above the horizon.
    for img, h in ((low, 6), (high, 30)):
        expected = 180 - np.degrees(np.arctan((h - 2.5) / 16.0)) * 2
        assert abs(top_row(img) - expected) < 3


def test_grid_north_offset_matches_meridian_convergence() -> None:
    # ETRS-TM35FIN (central meridian 27 E) at Helsinki (24.94 E, 60.17 N): meridians west of the
    # central meridian lean east going north, so true north lies ~1.8 degrees clockwise of grid north.
    from pyproj import Proj

    convergence = Proj("EPSG:3067").get_factors(24.94, 60.17).meridian_convergence  # true -> grid north
    assert convergence == pytest.approx(-1.79, abs=0.05)
    assert grid_north_offset("EPSG:3067", 24.94, 60.17) == pytest.approx(-convergence, abs=1e-3)
    assert grid_north_offset("EPSG:4326", 10, 50) == pytest.approx(0.0, abs=1e-6)
