"""Locating panoramas: the metro, S2 cell and split of each, and the farthest-point selection per cell.

Pure functions of the location stages; ``pipeline.transforms`` wires them into Beam.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from unigeo.core import reasons
from unigeo.core.sample import NOT_SELECTED, LedgerRow, Reject, SampleKey, SampleMeta
from unigeo.pipeline.cells import cell_center, cell_centers, cell_polygon, cell_token, cell_tokens
from unigeo.pipeline.fps import farthest_point_sample, first_index, local_metres
from unigeo.pipeline.split import split_of
from unigeo.pipeline.types import Pano

Metros = Sequence[tuple[str, BaseGeometry]]  # (name, prepared EPSG:4326 geometry), in config order


def _outside(p: Pano, metros: Metros) -> Reject:
    names = [n for n, _ in metros]
    return Reject("panorama", p.pano_id, reasons.OUTSIDE_METROS, f"({p.lat}, {p.lon}) lies in none of {names}",
                  dict(p.as_json()), p.row)


def _out_of_range(p: Pano, metro: str, cell: str, holdout_year: int, years: tuple[int, int]) -> Reject:
    return Reject("panorama", p.pano_id, reasons.YEAR_OUT_OF_RANGE,
                  f"captured in {p.year}; the build takes {years[0]}-{years[1]} and holdout {holdout_year}",
                  dict(p.as_json()), p.row, metro, cell)


def _owner(cell: str, first: int, metros: Metros) -> int:
    """The metro a cell belongs to: the first (config order) it touches, at most ``first``, the first metro
    holding the panorama."""
    if first == 0:
        return 0
    poly = cell_polygon(cell)
    return next(i for i in range(first + 1) if metros[i][1].intersects(poly))


def assign(p: Pano, metros: Metros, level: int, holdout_year: int, years: tuple[int, int]) -> SampleKey | Reject:
    """The sample a panorama belongs to, or why it belongs to none.

    A panorama outside every metro is ``outside_metros``; one whose year is neither the holdout year
    nor in ``years`` is ``year_out_of_range``. A cell belongs to the first metro (config order) that
    it touches, so a cell on a border is never split between metros.
    """
    inside = [i for i, (_, g) in enumerate(metros) if shapely.contains_xy(g, p.lon, p.lat)]
    if not inside:
        return _outside(p, metros)
    cell = cell_token(p.lat, p.lon, level)
    split = split_of(p.year, holdout_year, years)
    if split is None:
        return _out_of_range(p, metros[inside[0]][0], cell, holdout_year, years)
    return SampleKey(metros[_owner(cell, inside[0], metros)][0], cell, split)


def select(key: SampleKey, panos: Sequence[Pano], max_panos: int, seed: int, level: int,
           centre: tuple[float, float] | None = None) -> tuple[SampleMeta, list[LedgerRow]]:
    """Up to ``max_panos`` panoramas of one (metro, cell, split) by farthest-point sampling; ``centre``:
    the cell's centre (lat, lon) where the caller has it.

    Returns:
        The sample's json (location fields and the kept panoramas in selection order) and a
        ``not_selected`` ledger row for every other panorama.
    """
    panos = sorted(panos, key=lambda p: (p.pano_id, p.row))
    lat0, lon0 = cell_center(key.cell) if centre is None else centre
    pts = local_metres(np.array([p.lat for p in panos]), np.array([p.lon for p in panos]), lat0, lon0)
    order = farthest_point_sample(pts, max_panos, first_index(seed, key.name, len(panos)))
    chosen = set(order.tolist())
    kept = [panos[i] for i in order]
    ledger = [LedgerRow(p.row, p.pano_id, key.metro, key.cell, key.split, NOT_SELECTED, "",
                        f"cell holds {len(panos)} > max {max_panos}", p.year)
              for i, p in enumerate(panos) if i not in chosen]
    dates = sorted(p.captured_at for p in kept)
    sample: SampleMeta = {
        "key": key.name, "cell": key.cell, "level": level, "lat": lat0, "lon": lon0,
        "metro": key.metro, "split": key.split, "dates": {"first": dates[0], "last": dates[-1]},
        "years": sorted({p.year for p in kept}), "panoramas_in_cell": len(panos),
        "panoramas": [p.as_json() for p in kept],
    }
    return sample, ledger


# ---------------------------------------------------------------- batches
# The build moves panoramas through the location stages as DataFrame batches (``PANO_COLUMNS``), not one
# element per row: Beam's per-element cost, not these functions, dominated at a million rows.

PANO_COLUMNS = list(Pano._fields)
KEY_COLUMNS = ["metro", "cell", "split"]


def panos_of(df: pd.DataFrame) -> list[Pano]:
    """The rows of a batch as ``Pano``s (Python scalars, as the per-row path made them)."""
    columns = [df[c].tolist() for c in PANO_COLUMNS]
    return [Pano(*values) for values in zip(*columns)]


def partition_of(values: pd.Series, parts: int) -> np.ndarray:
    """A stable partition number in ``[0, parts)`` per value (the same in every process and run)."""
    return (pd.util.hash_array(values.to_numpy(dtype=object)) % np.uint64(parts)).astype(np.int64)


def assign_batch(df: pd.DataFrame, metros: Metros, level: int, holdout_year: int, years: tuple[int, int]
                 ) -> tuple[pd.DataFrame, list[Reject]]:
    """``assign`` over a batch: the rows that belong to a sample with ``metro``, ``cell`` and ``split``
    columns added, and the rejects (in row order), exactly as ``assign`` makes them row by row."""
    n = len(df)
    lat, lon = df["lat"].to_numpy(dtype=float), df["lon"].to_numpy(dtype=float)
    first = np.full(n, -1)
    for i in range(len(metros) - 1, -1, -1):  # the first metro (config order) that holds the point
        first[shapely.contains_xy(metros[i][1], lon, lat)] = i
    inside = first >= 0
    cells = np.full(n, "", dtype=object)
    cells[inside] = cell_tokens(lat[inside], lon[inside], level)
    split_by_year = {y: split_of(int(y), holdout_year, years) for y in pd.unique(df["year"])}
    splits = df["year"].map(split_by_year).to_numpy(dtype=object)
    in_range = inside & pd.notna(splits)
    bad = np.flatnonzero(~in_range)
    rejects = [_outside(p, metros) if first[i] < 0 else
               _out_of_range(p, metros[first[i]][0], cells[i], holdout_year, years)
               for i, p in zip(bad.tolist(), panos_of(df.iloc[bad]))]
    metro = first[in_range]
    kept_cells = cells[in_range]
    owner: dict[tuple[str, int], int] = {}  # one polygon test per (cell, first metro)
    for j in np.flatnonzero(metro > 0).tolist():
        key = (kept_cells[j], int(metro[j]))
        if key not in owner:
            owner[key] = _owner(*key, metros)
        metro[j] = owner[key]
    names = np.array([name for name, _ in metros], dtype=object)
    keyed = df[in_range].assign(metro=names[metro], cell=kept_cells, split=splits[in_range])
    return keyed.reset_index(drop=True), rejects


def select_batch(df: pd.DataFrame, max_panos: int, seed: int, level: int
                 ) -> tuple[list[tuple[SampleKey, SampleMeta]], list[LedgerRow]]:
    """``select`` for every (metro, cell, split) of a batch that holds all of their panoramas; samples in
    key order."""
    if df.empty:
        return [], []
    df = df.sort_values(KEY_COLUMNS, kind="stable", ignore_index=True)
    keys = df[KEY_COLUMNS].to_numpy(dtype=object)
    starts = np.flatnonzero(np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)])
    ends = np.r_[starts[1:], len(df)]
    panos = panos_of(df)
    lats, lons = cell_centers([keys[s][1] for s in starts.tolist()])
    samples, ledger = [], []
    for s, e, lat0, lon0 in zip(starts.tolist(), ends.tolist(), lats.tolist(), lons.tolist()):
        key = SampleKey(*keys[s])
        sample, not_selected = select(key, panos[s:e], max_panos, seed, level, (lat0, lon0))
        samples.append((key, sample))
        ledger += not_selected
    return samples, ledger
