from __future__ import annotations

import numpy as np
import pytest
import s2sphere
import shapely
from shapely.geometry import Point, Polygon, box

from unigeo.pipeline.cells import (
    cell_center,
    cell_level,
    cell_polygon,
    cell_token,
    check_level,
    children_in,
    cover,
    default_parent_level,
    parent_cells,
)

# An L-shaped polygon near Boston, ~1.5 x 1.5 km.
L_SHAPE = Polygon([(-71.08, 42.35), (-71.06, 42.35), (-71.06, 42.357), (-71.07, 42.357),
                   (-71.07, 42.364), (-71.08, 42.364)])


def test_cell_token_agrees_with_s2sphere_and_contains_the_point() -> None:
    rng = np.random.default_rng(0)
    for lat, lon in zip(rng.uniform(-80, 80, 50), rng.uniform(-180, 180, 50)):
        token = cell_token(lat, lon, 16)
        ref = s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(lat, lon)).parent(16)
        assert token == ref.to_token() and cell_level(token) == 16
        assert cell_polygon(token).buffer(1e-9).contains(Point(lon, lat))
        clat, clon = cell_center(token)
        assert abs(clat - lat) < 0.01 and abs(((clon - lon + 180) % 360) - 180) < 0.02


@pytest.mark.parametrize("parent_level", [8, 10, 12, 14])
def test_cover_does_not_depend_on_the_parent_level(parent_level: int) -> None:
    assert cover(L_SHAPE, 16, parent_level) == cover(L_SHAPE, 16, 16)


def test_cover_is_exactly_the_intersecting_cells() -> None:
    cells = set(cover(L_SHAPE, 16))
    # Reference: every level-16 cell of the bounding box, tested one by one.
    w, s, e, n = L_SHAPE.bounds
    coverer = s2sphere.RegionCoverer()
    coverer.min_level = coverer.max_level = 16
    coverer.max_cells = 1 << 20
    rect = s2sphere.LatLngRect.from_point_pair(s2sphere.LatLng.from_degrees(s, w), s2sphere.LatLng.from_degrees(n, e))
    reference = {c.to_token() for c in coverer.get_covering(rect) if L_SHAPE.intersects(cell_polygon(c.to_token()))}
    assert cells == reference
    # Every point of the polygon lies in a covered cell.
    rng = np.random.default_rng(1)
    pts = shapely.points(rng.uniform(w, e, 500), rng.uniform(s, n, 500))
    for p in pts[shapely.contains(L_SHAPE, pts)]:
        assert cell_token(p.y, p.x, 16) in cells
    # Level-16 cells are ~0.02 km2: the ~1.9 km2 L-shape needs ~100 plus its boundary cells.
    assert 90 < len(cells) < 200


def test_parent_inside_the_polygon_keeps_all_children() -> None:
    big = box(-71.2, 42.2, -70.9, 42.5)
    parent = parent_cells(Point(-71.06, 42.36).buffer(1e-4), 12)
    assert len(parent) >= 1
    children = children_in(big, parent[0], 16)
    assert len(children) == 4 ** 4 and len(set(children)) == 256
    assert all(cell_level(t) == 16 for t in children)


def test_levels_are_checked() -> None:
    with pytest.raises(ValueError, match="0..30"):
        check_level(31)
    with pytest.raises(ValueError, match="above the parent"):
        children_in(L_SHAPE, cell_token(42.35, -71.07, 16), 10)
    assert default_parent_level(16) == 10 and default_parent_level(12) == 10 and default_parent_level(3) == 3


def test_cell_tokens_over_arrays_equal_s2sphere_point_by_point() -> None:
    """The vectorised cell ids walk s2sphere's Hilbert curve: the same token for every point, on every face,
    at face edges and poles, at several levels."""
    import numpy as np

    from unigeo.pipeline.cells import cell_token, cell_tokens

    rng = np.random.default_rng(0)
    n = 20_000
    lat = np.r_[np.degrees(np.arcsin(rng.uniform(-1, 1, n))), 0, 90, -90, 35.26438968, -35.26438968, 45, 0, 0, 0,
                42.36, 42.36 + 1e-12]
    lon = np.r_[rng.uniform(-180, 180, n), 45, 0, 0, 45, -135, 0, 90, 180, -180, -71.06, -71.06]
    for level in (10, 16, 23, 30):
        expected = [cell_token(a, b, level) for a, b in zip(lat.tolist(), lon.tolist())]
        assert cell_tokens(lat, lon, level).tolist() == expected
    assert cell_tokens(np.zeros(0), np.zeros(0), 16).tolist() == []


def test_cell_centers_over_arrays_equal_s2sphere_cell_by_cell() -> None:
    import numpy as np

    from unigeo.pipeline.cells import cell_center, cell_centers, cell_tokens

    rng = np.random.default_rng(1)
    lat, lon = np.degrees(np.arcsin(rng.uniform(-1, 1, 5_000))), rng.uniform(-180, 180, 5_000)
    for level in (0, 1, 10, 16, 29, 30):
        tokens = list(cell_tokens(lat, lon, level))
        got_lat, got_lon = cell_centers(tokens)
        assert list(zip(got_lat.tolist(), got_lon.tolist())) == [cell_center(t) for t in tokens]
