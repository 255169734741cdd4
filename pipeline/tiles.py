"""Aerial and DSM tile grids and epoch choice: pure functions (the pixels are read by ``unigeo.sources.tiles``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import NamedTuple

from unigeo.core.geo import transformer
from unigeo.core.sample import TEST, TRAIN
from unigeo.sources.tiles import Grid


def utm_epsg(lat: float, lon: float) -> int:
    """EPSG code of the UTM zone of a point (326xx north, 327xx south); Norway/Svalbard exceptions ignored."""
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


def tile_grid(lat: float, lon: float, gsd: float, size: int) -> Grid:
    """The tile of a location: ``size`` x ``size`` pixels of ``gsd`` metres, north-up in the UTM zone
    of (lat, lon), centred on it."""
    if gsd <= 0 or size < 1:
        raise ValueError(f"gsd and size must be positive, got {gsd}, {size}")
    epsg = utm_epsg(lat, lon)
    x, y = transformer("EPSG:4326", f"EPSG:{epsg}").transform(lon, lat)
    half = gsd * size / 2.0
    return Grid(f"EPSG:{epsg}", (gsd, 0.0, x - half, 0.0, -gsd, y + half), size)


class Epoch(NamedTuple):
    year: int
    paths: tuple[str, ...]  # files of that year, newest first


def epochs_for_split(rasters: Sequence[tuple[str, dt.date]], split: str, holdout_year: int,
                     years: tuple[int, int]) -> list[Epoch]:
    """Candidate epochs of imagery for a sample, in order of preference.

    Test samples prefer holdout-year imagery, then the latest train-year epoch; train samples take
    train-year epochs, latest first. Imagery of any other year is never used: a sample is built only
    from imagery its split may see (a train sample never sees holdout-year imagery).
    """
    if split not in (TRAIN, TEST):
        raise ValueError(f"unknown split {split!r}")
    by_year: dict[int, list[tuple[dt.date, str]]] = {}
    for path, date in rasters:
        by_year.setdefault(date.year, []).append((date, path))
    train_years = sorted((y for y in by_year if years[0] <= y <= years[1] and y != holdout_year), reverse=True)
    order = ([holdout_year] if split == TEST and holdout_year in by_year else []) + train_years
    return [Epoch(y, tuple(p for _, p in sorted(by_year[y], reverse=True))) for y in order]
