"""Read aerial/DSM tiles on a target grid from source rasters of any CRS and resolution.

``RasterStack`` opens each raster once (a Beam DoFn keeps one per worker). A tile is read in four
steps: the target grid's pixel centres are projected into the source raster on a coarse lattice
and interpolated in between (the projection is smooth over a tile; exact at the lattice nodes);
the source window they span is read once, decimated by GDAL (from overviews where the file has
them, averaging for imagery) when the source is much finer than the target; then ``cv2.remap``
samples it bilinearly. Several files of one epoch are mosaicked in order, each filling what is
still empty.

GDAL keeps the raster blocks it decodes in a per-process cache that grows to 5% of the machine's
memory by default: a worker that holds its rasters open for a whole build grows by that much (1.2 GB
on a 24 GB machine, more on a bigger one, per worker process). A ``RasterStack`` bounds it to
``BLOCK_CACHE_BYTES`` unless the user set ``GDAL_CACHEMAX``; tiles are read in S2 order, so the blocks
a tile needs are mostly the last tile's neighbours.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import cv2
import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.env import set_gdal_config
from rasterio.windows import Window

from unigeo.core.fileio import gdal_path
from unigeo.core.geo import transformer

LATTICE = 9  # nodes per side of the exactly projected coarse lattice
# DSM heights outside this range (metres) are sentinels of files whose nodata is unset (-9999, -32768,
# 3.4e38): no land or roof lies below the Dead Sea shore by 600 m or above Everest.
DSM_VALID_M = (-1000.0, 9000.0)
BLOCK_CACHE_BYTES = 64 * 2**20


def bound_block_cache() -> None:
    """Bound GDAL's block cache of this process to ``BLOCK_CACHE_BYTES``, unless ``GDAL_CACHEMAX`` is set."""
    if "GDAL_CACHEMAX" not in os.environ:
        set_gdal_config("GDAL_CACHEMAX", BLOCK_CACHE_BYTES)


def _interp_matrix(size: int, nodes: np.ndarray) -> np.ndarray:
    """(size, len(nodes)) linear interpolation weights from ``nodes`` to positions 0 .. size-1."""
    pos = np.arange(size, dtype=np.float64)
    k = np.clip(np.searchsorted(nodes, pos, side="right") - 1, 0, nodes.size - 2)
    t = (pos - nodes[k]) / (nodes[k + 1] - nodes[k])
    m = np.zeros((size, nodes.size))
    m[np.arange(size), k] = 1 - t
    m[np.arange(size), k + 1] = t
    return m


@dataclass(frozen=True)
class Grid:
    """Target grid: CRS, affine coefficients (a, b, c, d, e, f) and size in pixels."""

    crs: str
    transform: tuple[float, float, float, float, float, float]
    size: int


class RasterStack:
    """Open rasters of one kind (aerial or DSM), read on demand onto target grids."""

    def __init__(self, paths: list[str], kind: str) -> None:
        if kind not in ("aerial", "dsm"):
            raise ValueError(f"kind must be aerial or dsm, got {kind!r}")
        self.kind = kind
        bound_block_cache()
        self.datasets = {p: rasterio.open(gdal_path(p)) for p in paths}

    def close(self) -> None:
        for ds in self.datasets.values():
            ds.close()

    def _source_coords(self, ds: rasterio.DatasetReader, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        """Source pixel coordinates (col, row; pixel centres at integers) of every target pixel centre."""
        a, b, c, d, e, f = grid.transform
        nodes = np.linspace(0, grid.size - 1, LATTICE)
        gx, gy = np.meshgrid(nodes + 0.5, nodes + 0.5)
        xs, ys = c + gx * a + gy * b, f + gx * d + gy * e
        sx, sy = transformer(grid.crs, ds.crs.to_wkt()).transform(xs, ys)
        inv = ~ds.transform
        cols = inv.a * np.asarray(sx) + inv.b * np.asarray(sy) + inv.c - 0.5
        rows = inv.d * np.asarray(sx) + inv.e * np.asarray(sy) + inv.f - 0.5
        m = _interp_matrix(grid.size, nodes)
        return m @ cols @ m.T, m @ rows @ m.T

    def read_one(self, path: str, grid: Grid) -> tuple[np.ndarray, np.ndarray, int] | None:
        """(data, valid, sentinels) of one raster on ``grid``, or None when it does not reach the grid.

        ``data`` is (size, size, 3) uint8 for aerial, (size, size) float32 metres for DSM (NaN where
        unknown); ``valid`` is a boolean (size, size) mask; ``sentinels`` counts the source pixels read
        as nodata because they lie outside ``DSM_VALID_M`` (0 for aerial).

        Raises:
            RasterioIOError: a block of the window does not read.
        """
        ds = self.datasets[path]
        cols, rows = self._source_coords(ds, grid)
        c0, c1 = math.floor(cols.min()) - 1, math.ceil(cols.max()) + 2
        r0, r1 = math.floor(rows.min()) - 1, math.ceil(rows.max()) + 2
        c0, r0 = max(c0, 0), max(r0, 0)
        c1, r1 = min(c1, ds.width), min(r1, ds.height)
        if c1 - c0 < 2 or r1 - r0 < 2:
            return None
        # Source pixels per target pixel; decimate the read when the source is much finer.
        step = max(1.0, min(float(np.median(np.hypot(np.diff(cols, axis=1), np.diff(rows, axis=1)))), 64.0))
        factor = 2 ** int(math.floor(math.log2(step))) if step >= 2 else 1
        out_w, out_h = max(2, math.ceil((c1 - c0) / factor)), max(2, math.ceil((r1 - r0) / factor))
        window = Window(c0, r0, c1 - c0, r1 - r0)
        bands = [1, 2, 3] if self.kind == "aerial" else [1]
        resampling = Resampling.average if self.kind == "aerial" else Resampling.bilinear
        data = ds.read(bands, window=window, out_shape=(len(bands), out_h, out_w), resampling=resampling)
        mask = ds.read_masks(1, window=window, out_shape=(out_h, out_w), resampling=Resampling.nearest) > 0
        sx = (out_w / (c1 - c0))
        sy = (out_h / (r1 - r0))
        map_x = ((cols - c0 + 0.5) * sx - 0.5).astype(np.float32)
        map_y = ((rows - r0 + 0.5) * sy - 0.5).astype(np.float32)
        inside = (map_x >= -0.5) & (map_x <= out_w - 0.5) & (map_y >= -0.5) & (map_y <= out_h - 0.5)
        valid_src = mask.astype(np.float32)
        valid = cv2.remap(valid_src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0.0) > 0.999
        valid &= inside
        sentinels = 0
        if self.kind == "aerial":
            img = np.ascontiguousarray(np.moveaxis(data, 0, -1))
            out = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            out[~valid] = 0
        else:
            z = data[0].astype(np.float32)
            if ds.nodata is not None and not np.isnan(ds.nodata):
                z[z == np.float32(ds.nodata)] = np.nan
            z[~mask] = np.nan
            with np.errstate(invalid="ignore"):
                outside = (z < DSM_VALID_M[0]) | (z > DSM_VALID_M[1])
            sentinels = int(outside.sum())
            z[outside] = np.nan
            out = cv2.remap(z, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
            valid &= np.isfinite(out)
            out[~valid] = np.nan
        return out, valid, sentinels

    def read(self, paths: list[str], grid: Grid) -> tuple[np.ndarray, np.ndarray, int] | None:
        """Mosaic of ``paths`` (first file wins) on ``grid`` with its sentinel count, or None when none
        reaches it.

        Raises:
            RasterioIOError: a block of a window does not read.
        """
        result: tuple[np.ndarray, np.ndarray, int] | None = None
        for path in paths:
            one = self.read_one(path, grid)
            if one is None:
                continue
            if result is None:
                result = one
            else:
                data, valid, sentinels = result
                fill = ~valid & one[1]
                data[fill] = one[0][fill]
                result = (data, valid | one[1], sentinels + one[2])
            if result[1].all():
                break
        return result
