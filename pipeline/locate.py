"""Locating panoramas: the metro, S2 cell and split of each, and the farthest-point selection per cell.

Pure functions of the location stages; ``pipeline.transforms`` wires them into Beam.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from unigeo.core import reasons
from unigeo.core.sample import NOT_SELECTED, LedgerRow, Reject, SampleKey, SampleMeta
from unigeo.pipeline.cells import cell_center, cell_polygon, cell_token
from unigeo.pipeline.fps import farthest_point_sample, first_index, local_metres
from unigeo.pipeline.split import split_of
from unigeo.pipeline.types import Pano

Metros = Sequence[tuple[str, BaseGeometry]]  # (name, prepared EPSG:4326 geometry), in config order


def assign(p: Pano, metros: Metros, level: int, holdout_year: int, years: tuple[int, int]) -> SampleKey | Reject:
    """The sample a panorama belongs to, or why it belongs to none.

    A panorama outside every metro is ``outside_metros``; one whose year is neither the holdout year
    nor in ``years`` is ``year_out_of_range``. A cell belongs to the first metro (config order) that
    it touches, so a cell on a border is never split between metros.
    """
    inside = [i for i, (_, g) in enumerate(metros) if shapely.contains_xy(g, p.lon, p.lat)]
    if not inside:
        names = [n for n, _ in metros]
        return Reject("panorama", p.pano_id, reasons.OUTSIDE_METROS, f"({p.lat}, {p.lon}) lies in none of {names}",
                      dict(p.as_json()), p.row)
    cell = cell_token(p.lat, p.lon, level)
    split = split_of(p.year, holdout_year, years)
    if split is None:
        return Reject("panorama", p.pano_id, reasons.YEAR_OUT_OF_RANGE,
                      f"captured in {p.year}; the build takes {years[0]}-{years[1]} and holdout {holdout_year}",
                      dict(p.as_json()), p.row, metros[inside[0]][0], cell)
    metro = inside[0]
    if metro > 0:
        poly = cell_polygon(cell)
        metro = next(i for i in range(metro + 1) if metros[i][1].intersects(poly))
    return SampleKey(metros[metro][0], cell, split)


def select(key: SampleKey, panos: Sequence[Pano], max_panos: int, seed: int, level: int
           ) -> tuple[SampleMeta, list[LedgerRow]]:
    """Up to ``max_panos`` panoramas of one (metro, cell, split) by farthest-point sampling.

    Returns:
        The sample's json (location fields and the kept panoramas in selection order) and a
        ``not_selected`` ledger row for every other panorama.
    """
    panos = sorted(panos, key=lambda p: (p.pano_id, p.row))
    lat0, lon0 = cell_center(key.cell)
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
