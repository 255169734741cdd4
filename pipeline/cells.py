"""S2 cells: the locations of the dataset. Pure functions over s2sphere and shapely.

s2sphere has no polygon coverer, so a metro is covered in two steps that spread across workers:
the polygon's bounding box is covered with coarse *parent* cells (``parent_cells``), then each parent's
children at the target level are kept when they intersect the polygon (``children_in``). A parent that
lies wholly inside the polygon keeps all its children without testing them.
"""

from __future__ import annotations

import math

import numpy as np
import s2sphere
import shapely
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

MAX_LEVEL = 30
# The coarsest level the covering serves: its straight lon/lat edges stay within a few metres of the
# cells' geodesic edges (level-10 cells are ~8 km across); coarser parents could drop cells.
MIN_LEVEL = 10
EARTH_RADIUS_M = 6_371_008.8
# Straight lon/lat edges stand in for the cells' geodesic edges; coarse parents are tested against a
# slightly grown polygon so that the approximation never drops a cell (~10 m at mid latitudes).
PARENT_MARGIN_DEG = 1e-4


def check_level(level: int) -> int:
    if not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"S2 level must be in 0..30, got {level}")
    return level


def cell_id(lat: float, lon: float, level: int) -> s2sphere.CellId:
    """The level-``level`` cell containing a point."""
    return s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(lat, lon)).parent(level)


def cell_token(lat: float, lon: float, level: int) -> str:
    """Token of the level-``level`` cell containing a point, e.g. ``89e37a3b``."""
    return str(cell_id(lat, lon, level).to_token())


def cell_center(token: str) -> tuple[float, float]:
    """(lat, lon) of a cell's centre."""
    ll = s2sphere.CellId.from_token(token).to_lat_lng()
    return float(ll.lat().degrees), float(ll.lng().degrees)


def cell_level(token: str) -> int:
    return int(s2sphere.CellId.from_token(token).level())


def _vertices(cell: s2sphere.CellId) -> list[tuple[float, float]]:
    c = s2sphere.Cell(cell)
    out = []
    for k in range(4):
        ll = s2sphere.LatLng.from_point(c.get_vertex(k))
        out.append((ll.lng().degrees, ll.lat().degrees))
    return out


def cell_polygon(token: str) -> Polygon:
    """The cell as a lon/lat polygon (straight edges between its four vertices)."""
    return Polygon(_vertices(s2sphere.CellId.from_token(token)))


def parent_cells(geom: BaseGeometry, parent_level: int) -> list[str]:
    """Tokens of level-``parent_level`` cells that intersect ``geom`` (lon/lat), sorted."""
    check_level(parent_level)
    west, south, east, north = geom.bounds
    rect = s2sphere.LatLngRect.from_point_pair(s2sphere.LatLng.from_degrees(south, west),
                                               s2sphere.LatLng.from_degrees(north, east))
    coverer = s2sphere.RegionCoverer()
    coverer.min_level = coverer.max_level = parent_level
    coverer.max_cells = 1 << 30
    cells = coverer.get_covering(rect)
    if not cells:
        return []
    grown = geom.buffer(PARENT_MARGIN_DEG)
    shapely.prepare(grown)
    polys = shapely.polygons(np.array([_vertices(c) for c in cells]))
    keep = shapely.intersects(grown, polys)
    return sorted(c.to_token() for c, k in zip(cells, keep) if k)


def children_in(geom: BaseGeometry, parent: str, level: int) -> list[str]:
    """Tokens of the level-``level`` children of ``parent`` that intersect ``geom`` (lon/lat), sorted.

    ``geom`` may be prepared (``shapely.prepare``) by the caller; it is then reused across parents.
    """
    check_level(level)
    pid = s2sphere.CellId.from_token(parent)
    if level < pid.level():
        raise ValueError(f"level {level} is above the parent's level {pid.level()}")
    begin = pid.child_begin(level).id()
    step = 2 * s2sphere.CellId.lsb_for_level(level)
    n = 4 ** (level - pid.level())
    ids = [begin + k * step for k in range(n)]
    inner = geom.buffer(-PARENT_MARGIN_DEG) if not geom.is_empty else geom
    if inner.contains(Polygon(_vertices(pid))):
        return [s2sphere.CellId(i).to_token() for i in ids]
    polys = shapely.polygons(np.array([_vertices(s2sphere.CellId(i)) for i in ids]))
    keep = shapely.intersects(geom, polys)
    return [s2sphere.CellId(i).to_token() for i, k in zip(ids, keep) if k]


def cover(geom: BaseGeometry, level: int, parent_level: int | None = None) -> list[str]:
    """All level-``level`` cells intersecting ``geom`` (lon/lat): ``parent_cells`` then ``children_in``."""
    parent_level = default_parent_level(level) if parent_level is None else parent_level
    shapely.prepare(geom)
    out: list[str] = []
    for parent in parent_cells(geom, parent_level):
        out.extend(children_in(geom, parent, level))
    return sorted(out, key=lambda t: s2sphere.CellId.from_token(t).id())


def default_parent_level(level: int) -> int:
    """Parents hold at most 4^6 = 4096 children: enough work per worker, little per parent; never coarser
    than ``MIN_LEVEL``."""
    return max(MIN_LEVEL, level - 6) if level >= MIN_LEVEL else level


def mean_cell_area_m2(level: int) -> float:
    """The mean area of an S2 cell at ``level`` (the sphere's area over 6 * 4^level cells)."""
    return 4.0 * math.pi * EARTH_RADIUS_M**2 / (6.0 * 4.0**level)


def estimate_cells(area_m2: float, perimeter_m: float, level: int) -> int:
    """About how many level-``level`` cells cover a region: its area in cells plus a ring of boundary cells."""
    side = math.sqrt(mean_cell_area_m2(level))
    return int(math.ceil(area_m2 / side**2 + perimeter_m / side)) + 1
