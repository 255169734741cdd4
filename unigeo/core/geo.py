"""Coordinate transforms shared by the readers and the renderers, and the bounding-box filter of GeoParquet reads."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import pyarrow.compute as pc
from pyproj import Transformer

BBox = tuple[float, float, float, float]  # west, south, east, north (degrees)


@functools.lru_cache(maxsize=64)
def transformer(src: str, dst: str) -> Transformer:
    """A cached (x, y) = (lon, lat)-ordered transformer; building one costs milliseconds."""
    return Transformer.from_crs(src, dst, always_xy=True)


def bbox_filter(areas: Sequence[BBox]) -> pc.Expression:
    """A pyarrow filter of the rows whose ``bbox`` struct (``xmin``, ``ymin``, ``xmax``, ``ymax``: the
    GeoParquet 1.1 covering that stac-geoparquet and Overture write) meets one of ``areas``; a Parquet read
    with it skips the row groups whose statistics lie outside them."""
    if not areas:
        raise ValueError("no area to filter on")
    expr = None
    for w, s, e, n in areas:
        one = ((pc.field("bbox", "xmin") <= e) & (pc.field("bbox", "xmax") >= w)
               & (pc.field("bbox", "ymin") <= n) & (pc.field("bbox", "ymax") >= s))
        expr = one if expr is None else expr | one
    assert expr is not None
    return expr
