"""Coordinate transforms shared by the readers and the renderers."""

from __future__ import annotations

import functools

from pyproj import Transformer


@functools.lru_cache(maxsize=64)
def transformer(src: str, dst: str) -> Transformer:
    """A cached (x, y) = (lon, lat)-ordered transformer; building one costs milliseconds."""
    return Transformer.from_crs(src, dst, always_xy=True)
