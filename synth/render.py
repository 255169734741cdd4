"""Renderers: orthophoto, DSM and equirectangular street panoramas from ``SceneGrids``."""

from __future__ import annotations

import math

import numpy as np

from unigeo.core.geo import transformer
from unigeo.synth.raster import BUILDING, TREE, SceneGrids

SKY_HORIZON = np.array([178, 204, 232], dtype=np.float32)
SKY_ZENITH = np.array([66, 118, 196], dtype=np.float32)
HAZE = np.array([190, 200, 212], dtype=np.float32)
GLASS = np.array([58, 72, 92], dtype=np.float32)
TRUNK = np.array([92, 70, 48], dtype=np.float32)
CAMERA_HEIGHT_M = 2.5
# Ray-marching distances: fine near the camera, coarser far away.
RAY_STEPS = np.concatenate([np.arange(0.3, 20, 0.1), np.arange(20, 80, 0.25),
                            np.arange(80, 320, 0.6)]).astype(np.float32)


def ray_steps(res: float) -> np.ndarray:
    """Ray-marching distances for a grid of ``res`` metres: steps grow with the grid cell, since a
    step much finer than a cell samples the same cell again (0.25 m grids get ``RAY_STEPS``)."""
    f = max(1.0, res / 0.25)
    if f == 1.0:
        return RAY_STEPS
    return np.concatenate([np.arange(0.3, 20, 0.1 * f), np.arange(20, 80, 0.25 * f),
                           np.arange(80, 320, 0.6 * f)]).astype(np.float32)


def column_bearings(heading_deg: float, width: int) -> np.ndarray:
    """Compass bearing (degrees) of the centre of every column of an equirectangular panorama.

    The centre column looks along ``heading_deg``; bearing grows to the right (clockwise).
    """
    return (heading_deg + ((np.arange(width) + 0.5) / width - 0.5) * 360.0) % 360.0


def row_elevations(height: int) -> np.ndarray:
    """Elevation (degrees above the horizon) of the centre of every row: +90 at the top."""
    return 90.0 - (np.arange(height) + 0.5) * 180.0 / height


def grid_north_offset(crs: str, lon: float, lat: float) -> float:
    """Grid bearing (degrees clockwise from the CRS's +y axis) of true north at (lon, lat)."""
    t = transformer("EPSG:4326", crs)
    x0, y0 = t.transform(lon, lat)
    x1, y1 = t.transform(lon, lat + 1e-4)
    return math.degrees(math.atan2(x1 - x0, y1 - y0))


def render_panorama(grids: SceneGrids, x: float, y: float, ground_z: float, heading_deg: float,
                    north_offset_deg: float, width: int, window_angle_deg: float = 0.0) -> np.ndarray:
    """Ray-cast the height field into an equirectangular panorama.

    Each column marches outwards along its bearing; a row sees the first sample whose elevation angle
    reaches the row's elevation (the running maximum of sample angles is monotonic, so one
    ``searchsorted`` per column finds every row's hit). Facades get their building's colour with
    window bands, tops and ground their top-down colour, rows that hit nothing get sky.

    Args:
        grids: the scene at the capture year.
        x, y: camera position in the scene CRS; ``ground_z`` the terrain height there.
        heading_deg: true compass bearing of the centre column.
        north_offset_deg: grid bearing of true north at the camera (``grid_north_offset``).
        width: panorama width in pixels; the height is ``width // 2``.
        window_angle_deg: street-grid orientation, so that window columns follow the facades.

    Returns:
        uint8 array (width // 2, width, 3).
    """
    height = width // 2
    cam_z = np.float32(ground_z + CAMERA_HEIGHT_M)
    d = ray_steps(grids.res)
    n = d.size
    gh, gw = grids.shape
    # Work in grid pixel units relative to the grid origin: float32 keeps sub-millimetre precision.
    cam_c, cam_r = (x - grids.transform.c) / grids.res, (grids.transform.f - y) / grids.res
    bearing = np.radians(column_bearings(heading_deg, width) + north_offset_deg)
    east, north = np.sin(bearing).astype(np.float32), np.cos(bearing).astype(np.float32)
    fc = np.float32(cam_c) + east[:, None] * (d / grids.res)[None, :]
    fr = np.float32(cam_r) - north[:, None] * (d / grids.res)[None, :]
    c, r = np.floor(fc).astype(np.int64), np.floor(fr).astype(np.int64)
    inside = (r >= 0) & (r < gh) & (c >= 0) & (c < gw)
    cell = np.clip(r, 0, gh - 1) * gw + np.clip(c, 0, gw - 1)  # flat grid index per ray sample
    surface = grids.surface.ravel()
    surf = np.where(inside, surface[cell], np.float32(-1e4))
    horizon = np.maximum.accumulate(np.arctan2(surf - cam_z, d[None, :]), axis=1)

    # Rows per column: the first sample whose running maximum reaches the row's elevation. With the
    # running maximum monotonic, that index is the count of samples below the row's elevation: each
    # sample is above the rows 0..m-1 (m by a search among the row elevations), and a histogram of m
    # per column, accumulated down the rows, gives every row's count at once.
    theta = np.radians(row_elevations(height))
    m = np.searchsorted(-theta, -horizon.astype(np.float64), side="left")  # rows whose elevation exceeds it
    counts = np.bincount((np.arange(width)[:, None] * (height + 1) + m).ravel(),
                         minlength=width * (height + 1)).reshape(width, height + 1)
    k = (n - np.cumsum(counts, axis=1)[:, :height]).T  # (height, width), row 0 = top; n = no hit
    hit = k < n
    kk = np.minimum(k, n - 1)
    sample = np.arange(width)[None, :] * n + kk
    g = cell.ravel()[sample]
    dist = d[kk]
    z = cam_z + dist * np.tan(theta).astype(np.float32)[:, None]
    above = z - grids.ground.ravel()[g]
    side = z < surface[g] - 0.3
    cls = grids.cls.ravel()[g]

    out = np.take(grids.colour.reshape(-1, 3), g, axis=0).astype(np.float32)
    facade = hit & side & (cls == BUILDING)
    if facade.any():
        rows_f, cols_f = np.nonzero(facade)
        base = grids.colours[grids.building.ravel()[g[facade]]] * np.float32(0.82)
        dist_f = dist[facade]
        hx = (cam_c + east[cols_f] * dist_f / grids.res) * grids.res
        hy = -(cam_r - north[cols_f] * dist_f / grids.res) * grids.res
        a = math.radians(window_angle_deg)
        along = hx * (math.cos(a) - math.sin(a)) + hy * (math.sin(a) + math.cos(a))
        up = above[facade]
        floor = (up / 3.3) % 1.0
        bay = (along / 2.8) % 1.0
        window = (up > 3.2) & (floor > 0.3) & (floor < 0.75) & (bay > 0.22) & (bay < 0.78)
        base[window] = base[window] * 0.3 + GLASS * 0.7
        base[(up < 3.0) & (up > 0.4) & (bay > 0.15) & (bay < 0.85)] *= 0.55
        out[facade] = base
    trunk = hit & side & (cls == TREE) & (above < 2.0)
    out[trunk] = out[trunk] * 0.5 + TRUNK * 0.5
    # Distance haze, then sky where nothing was hit.
    fog = np.clip(dist * np.float32(1 / 420.0), 0, 0.6)[..., None]
    out -= HAZE
    out *= 1 - fog
    out += HAZE
    t = np.clip(theta / (np.pi / 2), 0, 1).astype(np.float32)[:, None] ** 0.6
    sky = SKY_HORIZON * (1 - t) + SKY_ZENITH * t  # (height, 3)
    out = np.where(hit[..., None], out, sky[:, None, :])
    return np.clip(out, 0, 255).astype(np.uint8)


def render_ortho(grids: SceneGrids, scene_crs: str, dst_crs: str, dst_transform: tuple[float, ...],
                 width: int, height: int, strip: int = 512) -> np.ndarray:
    """Top-down colour resampled (nearest) onto a grid in ``dst_crs``; (3, height, width) uint8."""
    a, _, c, _, e, f = dst_transform[:6]
    to_scene = transformer(dst_crs, scene_crs)
    out = np.zeros((3, height, width), dtype=np.uint8)
    xs = c + (np.arange(width) + 0.5) * a
    for r0 in range(0, height, strip):
        rows = np.arange(r0, min(height, r0 + strip))
        ys = f + (rows + 0.5) * e
        gx, gy = np.meshgrid(xs, ys)
        sx, sy = to_scene.transform(gx, gy)
        r, cc, inside = grids.index(np.asarray(sx), np.asarray(sy))
        rgb = grids.colour[r, cc]
        rgb[~inside] = 0
        out[:, rows[0]:rows[-1] + 1, :] = np.moveaxis(rgb, -1, 0)
    return out


def render_dsm(grids: SceneGrids, factor: int, nodata_mask: np.ndarray | None = None) -> np.ndarray:
    """Surface heights block-averaged by ``factor``; NaN where any source pixel is in ``nodata_mask``."""
    h, w = grids.shape
    h2, w2 = h // factor, w // factor
    s = grids.surface[: h2 * factor, : w2 * factor].reshape(h2, factor, w2, factor).mean(axis=(1, 3))
    if nodata_mask is not None:
        m = nodata_mask[: h2 * factor, : w2 * factor].reshape(h2, factor, w2, factor).any(axis=(1, 3))
        s[m] = np.nan
    return s.astype(np.float32)
