"""Read aerial/DSM tiles on a target grid from source rasters of any CRS and resolution.

A ``RasterStack`` (a Beam DoFn keeps one per worker) knows every raster of its kind by its footprint
(``RasterFile``: path, date, CRS, grid, lon/lat bounds, all read on the launcher) and opens files only when
a tile needs them, keeping at most ``MAX_OPEN`` handles (least recently used closed first). A tile asks an
STRtree of the footprints which files of its epoch it meets, so an epoch of thousands of files costs a
tile the few that reach it.

A tile is read in four steps: the target grid's pixel centres are projected into the source grid on a
coarse lattice and interpolated in between (the projection is smooth over a tile; exact at the lattice
nodes); the source window they span is read once, decimated when the source is finer than the target; then
``cv2.remap`` samples it bilinearly.

Files of one epoch that share one pixel grid (one CRS and pixel size, origins a whole number of pixels
apart: NAIP quarter-quads of one state and year, LiDAR tiles cut from one grid; a single file too) are read
as one raster wherever the tile takes the source at its own resolution (less than two source pixels per
target pixel: NAIP's 60 cm at the default --gsd 0.6, a 1 m DSM): the window is assembled from the files it
meets, each filling what earlier files left empty, and sampled. Such a tile is byte-identical to the same
tile read from the uncut raster, seams included. Where the source is finer and the read is decimated, GDAL
decimates each file on its own from its overviews (four times faster than decoding the full resolution and
averaging it here), and the files are mosaicked, first file wins, as are epochs of files on different grids:
a tile across a seam then differs from the uncut raster's in the few pixels each file's decimation sees
alone.

GDAL keeps the raster blocks it decodes in a per-process cache that grows to 5% of the machine's
memory by default: a worker that holds its rasters open for a whole build grows by that much (1.2 GB
on a 24 GB machine, more on a bigger one, per worker process). A ``RasterStack`` bounds it to
``BLOCK_CACHE_BYTES`` unless the user set ``GDAL_CACHEMAX``; tiles are read in S2 order, so the blocks
a tile needs are mostly the last tile's neighbours.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np
import rasterio
import shapely
from rasterio.enums import Resampling
from rasterio.env import set_gdal_config
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from unigeo.core.fileio import gdal_path
from unigeo.core.geo import transformer

LATTICE = 9  # nodes per side of the exactly projected coarse lattice
# DSM heights outside this range (metres) are sentinels of files whose nodata is unset (-9999, -32768,
# 3.4e38): no land or roof lies below the Dead Sea shore by 600 m or above Everest.
DSM_VALID_M = (-1000.0, 9000.0)
BLOCK_CACHE_BYTES = 64 * 2**20
# Open raster handles per stack; the least recently used is closed first. A tile meets a few files of an epoch
# and tiles come in S2 order, so a few handles serve; each one holds its blocks in GDAL's cache, so 64 handles
# grew a worker by about 100 MB against 30 MB for 16 (reading 400 tiles of 800 NAIP-like COGs).
MAX_OPEN = 16
FOOTPRINT_MARGIN = 0.25  # of a tile's extent: how far beyond a tile a footprint may lie and still be read
GRID_TOLERANCE = 1e-6  # pixels: origins this close to a whole number of pixels apart share one grid


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

    def bounds_lonlat(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of the grid in EPSG:4326, densified along the edges."""
        a, _, c, _, e, f = self.transform
        x0, x1 = sorted((c, c + a * self.size))
        y0, y1 = sorted((f, f + e * self.size))
        return transform_bounds(self.crs, "EPSG:4326", x0, y0, x1, y1, densify_pts=8)


class Tile(NamedTuple):
    """A tile read from rasters: ``data`` is (size, size, 3) uint8 for aerial, (size, size) float32 metres for
    DSM (NaN where unknown); ``valid`` a boolean (size, size) mask; ``sentinels`` the source pixels read as
    nodata because they lie outside ``DSM_VALID_M`` (0 for aerial); ``files`` those whose pixels it holds."""

    data: np.ndarray
    valid: np.ndarray
    sentinels: int
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class RasterFile:
    """A source raster as a worker knows it before opening it: enough to tell which tiles it serves.

    Attributes:
        path: as given by the config or the catalog (URLs kept).
        date: acquisition date (ISO).
        crs: ``EPSG:n`` where the CRS has a code, else its WKT.
        transform: affine coefficients (a, b, c, d, e, f) of pixel -> CRS coordinates.
        width, height: grid size in pixels.
        bounds_lonlat: (west, south, east, north) in EPSG:4326.
    """

    path: str
    date: str
    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    bounds_lonlat: tuple[float, float, float, float]


def raster_file(path: str, date: str = "") -> RasterFile:
    """A ``RasterFile`` from the raster's own header."""
    with rasterio.open(gdal_path(path)) as ds:
        epsg = ds.crs.to_epsg()
        return RasterFile(path, date, f"EPSG:{epsg}" if epsg else ds.crs.to_wkt(), tuple(ds.transform)[:6],
                          ds.width, ds.height, transform_bounds(ds.crs, "EPSG:4326", *ds.bounds))


@dataclass(frozen=True)
class PixelGrid:
    """Files on one pixel grid, read as one raster: each file's pixel offset in the grid of the first."""

    crs: str
    transform: tuple[float, float, float, float, float, float]  # the grid's origin: the top-left file's corner
    width: int
    height: int
    offsets: dict[str, tuple[int, int]]  # path -> (column, row) of its top-left pixel in the grid


def pixel_grid(files: Sequence[RasterFile]) -> PixelGrid | None:
    """The one pixel grid of ``files``, or None when they differ in CRS or pixel size, are rotated, or their
    origins are not a whole number of pixels apart."""
    first = files[0]
    a, b, _, d, e, _ = first.transform
    if b != 0 or d != 0 or any(f.crs != first.crs or f.transform[:2] != (a, b) or f.transform[3:5] != (d, e)
                               for f in files):
        return None
    # The origin is the top-left corner: that file's own coefficients, so a tile's coordinates are computed
    # from the same numbers as in the uncut raster, whose corner it is.
    left = min(files, key=lambda f: f.transform[2] * np.sign(a))
    top = min(files, key=lambda f: f.transform[5] * np.sign(e))
    c0, f0 = left.transform[2], top.transform[5]
    offsets = {}
    for f in files:
        col, row = (f.transform[2] - c0) / a, (f.transform[5] - f0) / e
        if abs(col - round(col)) > GRID_TOLERANCE or abs(row - round(row)) > GRID_TOLERANCE:
            return None
        offsets[f.path] = (round(col), round(row))
    width = max(offsets[f.path][0] + f.width for f in files)
    height = max(offsets[f.path][1] + f.height for f in files)
    return PixelGrid(first.crs, (a, 0.0, c0, 0.0, e, f0), width, height, offsets)


class RasterStack:
    """Rasters of one kind (aerial or DSM) behind a footprint index, opened on demand, read onto target grids.

    Args:
        files: every raster of the kind (a path is read for its header at once).
        kind: ``aerial`` or ``dsm``.
        max_open: open handles kept at most.
    """

    def __init__(self, files: Sequence[RasterFile | str], kind: str, max_open: int = MAX_OPEN) -> None:
        if kind not in ("aerial", "dsm"):
            raise ValueError(f"kind must be aerial or dsm, got {kind!r}")
        if max_open < 1:
            raise ValueError(f"max_open must be at least 1, got {max_open}")
        self.kind = kind
        self.max_open = max_open
        bound_block_cache()
        self.files = {f.path: f for f in (raster_file(f) if isinstance(f, str) else f for f in files)}
        self._paths = list(self.files)
        self._tree = shapely.STRtree([shapely.box(*self.files[p].bounds_lonlat) for p in self._paths])
        self._open: OrderedDict[str, rasterio.DatasetReader] = OrderedDict()
        self._grids: dict[tuple[str, ...], PixelGrid | None] = {}
        self.opened = 0  # files opened so far (a file closed and opened again counts twice)

    def close(self) -> None:
        for ds in self._open.values():
            ds.close()
        self._open.clear()

    def dataset(self, path: str) -> rasterio.DatasetReader:
        """The open handle of ``path``, opening it (and closing the least recently used) when needed."""
        ds = self._open.get(path)
        if ds is not None:
            self._open.move_to_end(path)
            return ds
        while len(self._open) >= self.max_open:
            self._open.popitem(last=False)[1].close()
        ds = self._open[path] = rasterio.open(gdal_path(path))
        self.opened += 1
        return ds

    @property
    def open_count(self) -> int:
        return len(self._open)

    def meeting(self, paths: Sequence[str], grid: Grid) -> list[str]:
        """The files among ``paths`` whose footprint meets ``grid``, in the order of ``paths``."""
        w, s, e, n = grid.bounds_lonlat()
        margin = FOOTPRINT_MARGIN * max(e - w, n - s)  # the read window reaches a few source pixels beyond
        hits = {self._paths[i] for i in self._tree.query(shapely.box(w - margin, s - margin, e + margin, n + margin))}
        return [p for p in paths if p in hits]

    def _pixel_grid(self, paths: tuple[str, ...]) -> PixelGrid | None:
        if paths not in self._grids:
            self._grids[paths] = pixel_grid([self.files[p] for p in paths])
        return self._grids[paths]

    def _source_coords(self, crs: str, transform: tuple[float, ...], grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        """Source pixel coordinates (col, row; pixel centres at integers) of every target pixel centre."""
        a, b, c, d, e, f = grid.transform
        nodes = np.linspace(0, grid.size - 1, LATTICE)
        gx, gy = np.meshgrid(nodes + 0.5, nodes + 0.5)
        xs, ys = c + gx * a + gy * b, f + gx * d + gy * e
        sx, sy = transformer(grid.crs, crs).transform(xs, ys)
        inv = ~rasterio.Affine(*transform)
        cols = inv.a * np.asarray(sx) + inv.b * np.asarray(sy) + inv.c - 0.5
        rows = inv.d * np.asarray(sx) + inv.e * np.asarray(sy) + inv.f - 0.5
        m = _interp_matrix(grid.size, nodes)
        return m @ cols @ m.T, m @ rows @ m.T

    @staticmethod
    def _window(cols: np.ndarray, rows: np.ndarray, width: int, height: int) -> tuple[int, int, int, int, int] | None:
        """(c0, r0, c1, r1, decimation factor) of the source window a tile needs, or None when it misses."""
        c0, c1 = math.floor(cols.min()) - 1, math.ceil(cols.max()) + 2
        r0, r1 = math.floor(rows.min()) - 1, math.ceil(rows.max()) + 2
        c0, r0 = max(c0, 0), max(r0, 0)
        c1, r1 = min(c1, width), min(r1, height)
        if c1 - c0 < 2 or r1 - r0 < 2:
            return None
        # Source pixels per target pixel; decimate the read when the source is much finer.
        step = max(1.0, min(float(np.median(np.hypot(np.diff(cols, axis=1), np.diff(rows, axis=1)))), 64.0))
        factor = 2 ** int(math.floor(math.log2(step))) if step >= 2 else 1
        return c0, r0, c1, r1, factor

    def _read_window(self, path: str, window: Window, out_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(data, mask) of one file's window: (bands, h, w) uint8 for aerial, (1, h, w) float32 metres with NaN
        at nodata for DSM; mask True where the file has data."""
        ds = self.dataset(path)
        bands = [1, 2, 3] if self.kind == "aerial" else [1]
        resampling = Resampling.average if self.kind == "aerial" else Resampling.bilinear
        data = ds.read(bands, window=window, out_shape=(len(bands), *out_shape), resampling=resampling)
        mask = ds.read_masks(1, window=window, out_shape=out_shape, resampling=Resampling.nearest) > 0
        if self.kind == "dsm":
            z = data.astype(np.float32)
            if ds.nodata is not None and not np.isnan(ds.nodata):
                z[z == np.float32(ds.nodata)] = np.nan
            z[:, ~mask] = np.nan
            data = z
        return data, mask

    def _sample(self, data: np.ndarray, mask: np.ndarray, cols: np.ndarray, rows: np.ndarray, c0: int, r0: int,
                c1: int, r1: int, files: Sequence[str]) -> Tile:
        """The tile sampled from a window read (``data`` as ``_read_window`` returns it) of ``files``."""
        out_h, out_w = mask.shape
        sx = (out_w / (c1 - c0))
        sy = (out_h / (r1 - r0))
        map_x = ((cols - c0 + 0.5) * sx - 0.5).astype(np.float32)
        map_y = ((rows - r0 + 0.5) * sy - 0.5).astype(np.float32)
        inside = (map_x >= -0.5) & (map_x <= out_w - 0.5) & (map_y >= -0.5) & (map_y <= out_h - 0.5)
        valid = cv2.remap(mask.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0.0) > 0.999
        valid &= inside
        sentinels = 0
        if self.kind == "aerial":
            img = np.ascontiguousarray(np.moveaxis(data, 0, -1))
            out = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            out[~valid] = 0
        else:
            z = data[0]
            with np.errstate(invalid="ignore"):
                outside = (z < DSM_VALID_M[0]) | (z > DSM_VALID_M[1])
            sentinels = int(outside.sum())
            z[outside] = np.nan
            out = cv2.remap(z, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
            valid &= np.isfinite(out)
            out[~valid] = np.nan
        return Tile(out, valid, sentinels, tuple(files))

    def read_one(self, path: str, grid: Grid) -> Tile | None:
        """One raster on ``grid``, decimated by GDAL, or None when it does not reach the grid.

        Raises:
            RasterioIOError: a block of the window does not read.
        """
        f = self.files[path]
        cols, rows = self._source_coords(f.crs, f.transform, grid)
        window = self._window(cols, rows, f.width, f.height)
        if window is None:
            return None
        c0, r0, c1, r1, factor = window
        out_shape = (max(2, math.ceil((r1 - r0) / factor)), max(2, math.ceil((c1 - c0) / factor)))
        data, mask = self._read_window(path, Window(c0, r0, c1 - c0, r1 - r0), out_shape)
        return self._sample(data, mask, cols, rows, c0, r0, c1, r1, (path,))

    def _read_grid(self, pg: PixelGrid, paths: Sequence[str], grid: Grid, cols: np.ndarray, rows: np.ndarray,
                   window: tuple[int, int, int, int, int]) -> Tile | None:
        """``paths`` (files of ``pg``) read as one raster at the source resolution: the window assembled from the
        files it meets; None when no file's window reaches the grid (a file that reaches it with nodata alone
        gives a tile that is all invalid)."""
        c0, r0, c1, r1, _ = window
        data: np.ndarray = (np.zeros((3, r1 - r0, c1 - c0), np.uint8) if self.kind == "aerial"
                            else np.full((1, r1 - r0, c1 - c0), np.nan, np.float32))
        mask = np.zeros((r1 - r0, c1 - c0), bool)
        met: list[str] = []
        used: list[str] = []
        for path in paths:  # the first file wins: later ones fill only what is still empty
            f, (fc, fr) = self.files[path], pg.offsets[path]
            a0, b0 = max(c0, fc), max(r0, fr)
            a1, b1 = min(c1, fc + f.width), min(r1, fr + f.height)
            if a1 <= a0 or b1 <= b0:
                continue
            met.append(path)
            part, part_mask = self._read_window(path, Window(a0 - fc, b0 - fr, a1 - a0, b1 - b0), (b1 - b0, a1 - a0))
            if (a0, b0, a1, b1) == (c0, r0, c1, r1) and not used:  # one file holds the whole window
                return self._sample(part, part_mask, cols, rows, c0, r0, c1, r1, [path])
            region = (slice(b0 - r0, b1 - r0), slice(a0 - c0, a1 - c0))
            if not mask[region].any():  # nothing there yet (files side by side): a plain copy
                data[(slice(None), *region)] = part
                mask[region] = part_mask
                used.append(path)
                continue
            fill = part_mask & ~mask[region]  # files that overlap: the first one's pixels stay
            if not fill.any():
                continue
            used.append(path)
            data[(slice(None), *region)][:, fill] = part[:, fill]
            mask[region] |= part_mask
            if mask.all():
                break
        if not met:
            return None
        return self._sample(data, mask, cols, rows, c0, r0, c1, r1, used or met[:1])

    def read(self, paths: Sequence[str], grid: Grid) -> Tile | None:
        """Mosaic of ``paths`` (the first file wins) on ``grid`` with its sentinel count, or None when none
        reaches it. Only the files whose footprint meets the grid are opened.

        Raises:
            RasterioIOError: a block of a window does not read.
        """
        candidates = self.meeting(paths, grid)
        if not candidates:
            return None
        pg = self._pixel_grid(tuple(paths))
        if pg is not None:
            cols, rows = self._source_coords(pg.crs, pg.transform, grid)
            window = self._window(cols, rows, pg.width, pg.height)
            if window is None:
                return None
            if window[4] == 1:  # the source at its own resolution: seams cost nothing
                return self._read_grid(pg, candidates, grid, cols, rows, window)
        result: Tile | None = None
        for path in candidates:
            one = self.read_one(path, grid)
            if one is None:
                continue
            if result is None:
                result = one
            else:
                fill = ~result.valid & one.valid
                if not fill.any():
                    continue
                result.data[fill] = one.data[fill]
                result = Tile(result.data, result.valid | one.valid, result.sentinels + one.sentinels,
                              result.files + one.files)
            if result.valid.all():
                break
        return result
