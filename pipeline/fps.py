"""Farthest-point sampling: keep up to k panoramas per cell, spread as widely as possible."""

from __future__ import annotations

import hashlib

import numpy as np

EARTH_RADIUS_M = 6_371_008.8


def local_metres(lat: np.ndarray, lon: np.ndarray, lat0: float | np.ndarray, lon0: float | np.ndarray
                 ) -> np.ndarray:
    """Points as (east, north) metres on the plane tangent at (lat0, lon0); exact to ~1e-4 over 1 km.
    ``lat0``/``lon0`` may be arrays, one tangent point per point."""
    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    dlon = (lon - lon0 + 180.0) % 360.0 - 180.0
    east = np.radians(dlon) * EARTH_RADIUS_M * np.cos(np.radians(lat0))
    north = np.radians(lat - lat0) * EARTH_RADIUS_M
    return np.stack([east, north], axis=1)


def first_index(seed: int, key: str, n: int) -> int:
    """The deterministic starting point for a key: independent of process, platform and hash salt."""
    if n <= 0:
        raise ValueError("no points to choose from")
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


DENSE_MAX = 256  # up to this many points, farthest-point sampling precomputes all pairwise distances


def farthest_point_sample(points_m: np.ndarray, k: int, first: int = 0) -> np.ndarray:
    """Greedy farthest-point sampling.

    Starts at ``first``; each next point is the one farthest from all chosen so far. Ties go to the
    lowest index, so callers that sort points (e.g. by pano_id) get ties broken by that order.
    The result's covering radius is at most twice the optimal k-center radius.

    Args:
        points_m: (n, 2) coordinates in metres.
        k: how many to keep; all n when k >= n.
        first: index of the starting point.

    Returns:
        Indices of the chosen points, in the order chosen.
    """
    pts = np.asarray(points_m, dtype=np.float64)
    n = len(pts)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if n == 0 or k == 0:
        return np.zeros(0, dtype=np.int64)
    if not 0 <= first < n:
        raise ValueError(f"first={first} is not an index of {n} points")
    k = min(k, n)
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = first
    if n <= DENSE_MAX:  # most cells: every squared distance at once, then one row per step (same floats)
        dense = np.sum((pts[:, None, :] - pts[None, :, :]) ** 2, axis=2)
        dist = dense[first].copy()
        dist[first] = -1.0
        for i in range(1, k):
            nxt = int(dist.argmax())
            chosen[i] = nxt
            np.minimum(dist, dense[nxt], out=dist)
            dist[nxt] = -1.0
        return chosen
    dist = np.sum((pts - pts[first]) ** 2, axis=1)
    dist[first] = -1.0  # chosen points are never chosen again, even where others coincide with them
    for i in range(1, k):
        nxt = int(np.argmax(dist))  # first maximum: ties go to the lowest index
        chosen[i] = nxt
        np.minimum(dist, np.sum((pts - pts[nxt]) ** 2, axis=1), out=dist)
        dist[nxt] = -1.0
    return chosen


def covering_radius(points_m: np.ndarray, centres: np.ndarray) -> float:
    """Largest distance from any point to its nearest chosen centre (the k-center objective)."""
    pts = np.asarray(points_m, dtype=np.float64)
    d = np.linalg.norm(pts[:, None, :] - pts[np.asarray(centres)][None, :, :], axis=2)
    return float(d.min(axis=1).max())
