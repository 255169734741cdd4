"""Geodesy the trainer needs, in closed form (no pyproj): the Equal Earth projection on the WGS 84
ellipsoid (EPSG:8857) and great-circle distances."""

from __future__ import annotations

import math

import numpy as np
import torch

# WGS 84
A = 6378137.0
F = 1 / 298.257223563
E2 = F * (2 - F)
E = math.sqrt(E2)
# Equal Earth polynomial (Šavrič, Patterson & Jenny 2018)
A1, A2, A3, A4 = 1.340264, -0.081106, 0.000893, 0.003796
M = math.sqrt(3) / 2
EARTH_RADIUS_M = 6_371_008.8  # mean radius, for haversine distances


def _q(sin_phi: torch.Tensor) -> torch.Tensor:
    """Authalic q of a latitude's sine on the ellipsoid."""
    es = E * sin_phi
    return (1 - E2) * (sin_phi / (1 - es * es) - torch.log((1 - es) / (1 + es)) / (2 * E))


QP = float(_q(torch.tensor(1.0, dtype=torch.float64)))
RQ = A * math.sqrt(QP / 2)  # authalic radius
# Half-extents of the projected world: x at (0, 180), y at (90, 0).
X_MAX = RQ * 2 * math.sqrt(3) * math.pi / (3 * A1)
Y_MAX = RQ * math.asin(M) * (A1 + A2 * math.asin(M) ** 2 + A3 * math.asin(M) ** 6 + A4 * math.asin(M) ** 8)


def equal_earth(lat: torch.Tensor, lon: torch.Tensor) -> torch.Tensor:
    """EPSG:8857 (Equal Earth Greenwich, WGS 84) easting and northing in metres, (..., 2), float64.

    The ellipsoidal form: the spherical Equal Earth formulas on the authalic latitude, scaled by the
    authalic radius (as PROJ's ``eqearth``).
    """
    phi = torch.deg2rad(lat.to(torch.float64))
    lam = torch.deg2rad(lon.to(torch.float64))
    beta = torch.asin(torch.clamp(_q(torch.sin(phi)) / QP, -1.0, 1.0))
    theta = torch.asin(M * torch.sin(beta))
    t2 = theta * theta
    t6 = t2 * t2 * t2
    x = RQ * 2 * math.sqrt(3) * lam * torch.cos(theta) / (3 * (9 * A4 * t6 * t2 + 7 * A3 * t6 + 3 * A2 * t2 + A1))
    y = RQ * theta * (A4 * t6 * t2 + A3 * t6 + A2 * t2 + A1)
    return torch.stack([x, y], dim=-1)


def equal_earth_unit(lat: torch.Tensor, lon: torch.Tensor) -> torch.Tensor:
    """Equal Earth coordinates scaled to [-1, 1] on both axes, float64."""
    xy = equal_earth(lat, lon)
    return xy / torch.tensor([X_MAX, Y_MAX], dtype=torch.float64)


def haversine_m(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Great-circle distance in metres (broadcasting)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
