"""What a build would make, from its inputs' indexes and headers alone (never a pixel): ``unigeo plan``.

``make_plan`` counts, per metro, the cells of the covering, the panoramas by year and split, the raster
epochs of each kind with the share of the metro each covers, the POIs, and projects the samples, shards,
bytes and CPU-hours of the build from the rates the benchmarks measured. ``PlanError`` lists what would
leave a modality empty (no raster epoch inside ``--years``, no coverage, no panorama); ``unigeo build`` makes
the same checks before any worker starts and refuses with the same lines.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
from pyproj import Geod

from unigeo.core.errors import UniGeoError
from unigeo.core.sample import SPLITS, TEST, TRAIN
from unigeo.pipeline.cells import estimate_cells
from unigeo.pipeline.locate import assign_batch
from unigeo.pipeline.options import BuildOptions
from unigeo.pipeline.tiles import epochs_for_split
from unigeo.sources.metros import Metro
from unigeo.sources.panoramas import PanoramaTable, check_rows, drop_duplicates, index_chunks, read_indexes
from unigeo.sources.pois import PoiTable
from unigeo.sources.rasters import RasterSource
from unigeo.sources.stac import StacRasters

KINDS = ("aerial", "dsm")
# Where the benchmarks' results are (the repository's bench/results, or UNIGEO_BENCH_RESULTS).
RESULTS = Path(os.environ.get("UNIGEO_BENCH_RESULTS", Path(__file__).resolve().parents[1] / "bench" / "results"))


class PlanError(UniGeoError):
    """A build whose inputs would leave a modality empty: each line names the input and the fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass
class Plan:
    """A build's plan: per metro counts, the projection, and the problems found.

    Attributes:
        metros: per metro name: ``cells``, ``panoramas`` (by year and by split), ``samples`` (by split),
            ``kept`` (panoramas kept after the per-cell cap), ``rasters`` (per kind, per year: files and the
            share of the metro covered), ``pois``.
        projection: samples, shards, bytes and CPU-hours, with the rates they come from.
        errors: what would leave a modality empty (``unigeo plan`` exits 1, ``unigeo build`` refuses).
        warnings: what deserves a look.
    """

    metros: dict[str, dict[str, Any]] = field(default_factory=dict)
    projection: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"metros": self.metros, "projection": self.projection, "errors": self.errors,
                "warnings": self.warnings}


def _area_m2(geom: shapely.Geometry) -> float:
    return abs(Geod(ellps="WGS84").geometry_area_perimeter(geom)[0])


def coverage(metro: Metro, rasters: Sequence[RasterSource]) -> float:
    """The share of the metro's area that the rasters' lon/lat footprints cover."""
    if not rasters:
        return 0.0
    union = shapely.union_all([shapely.box(*r.bounds_lonlat) for r in rasters])
    area = _area_m2(metro.geometry)
    return min(1.0, _area_m2(shapely.intersection(metro.geometry, union)) / area) if area else 0.0


def raster_checks(kind: str, rasters: Sequence[RasterSource], metros: Sequence[Metro], opts: BuildOptions,
                  plan: Plan) -> None:
    """The epochs of one raster kind: errors when no split may use any of them or none covers a metro;
    warnings for a split without imagery and for dates read from a file's creation time."""
    years = opts.year_range
    flag = f"--years {opts.years} (holdout {opts.holdout_year})"
    if not rasters:
        plan.errors.append(f"{kind}: sources.yaml names no {kind} raster, so every sample would lack it; add an "
                           f"`{kind}:` entry")
        return
    dated = [(r.path, r.date) for r in rasters]
    usable = {split: epochs_for_split(dated, split, opts.holdout_year, years) for split in SPLITS}
    found = sorted({r.date.year for r in rasters})
    if not any(usable.values()):
        named = []
        for year in found:
            files = [os.path.basename(r.path) for r in rasters if r.date.year == year]
            named.append(f"{files[0]} ({year})" if len(files) == 1 else
                         f"{len(files)} files of {year} ({files[0]}, ...)")
        article = "an" if kind[0] in "aeiou" else "a"
        plan.errors.append(f"{kind}: every {kind} raster is from a year outside {flag}: {', '.join(named)}; widen "
                           f"--years to include {', '.join(map(str, found))}, or add {article} {kind} epoch from "
                           f"{years[0]}-{years[1]}")
        return
    for split in SPLITS:
        if not usable[split]:
            plan.warnings.append(f"{kind}: no raster of a year the {split} split may use ({flag}; rasters from "
                                 f"{', '.join(map(str, found))}): {split} samples will have no {kind} tile")
    tagged = [r for r in rasters if r.date_source == "TIFFTAG_DATETIME"]
    if tagged:
        plan.warnings.append(f"{kind}: {len(tagged)} raster(s) dated by TIFFTAG_DATETIME, often the file's creation "
                             f"time rather than the acquisition's (e.g. {os.path.basename(tagged[0].path)}: "
                             f"{tagged[0].date}); give `date:` in sources.yaml if it is not")
    used_years = {e.year for epochs in usable.values() for e in epochs}
    uncovered = []
    for m in metros:
        shares = {}
        for year in sorted(found):
            epoch = [r for r in rasters if r.date.year == year]
            shares[str(year)] = {"files": len(epoch), "coverage": round(coverage(m, epoch), 4),
                                 "used": year in used_years}
        plan.metros[m.name].setdefault("rasters", {})[kind] = shares
        if not any(s["coverage"] > 0 for y, s in shares.items() if s["used"]):
            uncovered.append(m.name)
    if uncovered and len(uncovered) == len(metros):
        plan.errors.append(f"{kind}: no {kind} raster of a usable year reaches any metro ({', '.join(uncovered)}); "
                           "check the rasters' CRS and footprints, or add rasters that cover the metros")
    elif uncovered:
        plan.warnings.append(f"{kind}: no {kind} raster of a usable year reaches metro {', '.join(uncovered)}: its "
                             f"samples will have no {kind} tile")


def _rates() -> dict[str, Any] | None:
    try:
        scale = json.loads((RESULTS / "bench_scale.json").read_text())
        samples = json.loads((RESULTS / "bench_samples.json").read_text())
    except (OSError, ValueError):
        return None
    return {"kept_per_cpu_s": scale["build"]["kept_per_cpu_s"], "commit": scale["provenance"]["commit"],
            "bytes_per_crop": samples["standard"]["bytes_per_crop"],
            "tile_bytes": {e: samples[e]["bytes_per_sample_excluding_crops"] for e in ("standard", "compact")}}


def read_panoramas(sources: Sequence[str | pd.DataFrame]) -> PanoramaTable:
    """Every panorama source (a native index's path, or a service's records as rows) checked as the build checks
    them: rows numbered on from one source to the next, duplicates resolved across them."""
    parts, offset = [], 0
    for source in sources:
        if isinstance(source, str):
            table = read_indexes([index_chunks(source, offset)])
        else:
            table = check_rows(source, ".", offset)
        parts.append(table)
        offset += table.n_input
    return drop_duplicates(PanoramaTable(pd.concat([p.good for p in parts], ignore_index=True),
                                         pd.concat([p.rejects for p in parts], ignore_index=True)))


def make_plan(panoramas: Sequence[str | pd.DataFrame], metros: Sequence[Metro], aerial: Sequence[RasterSource],
              dsm: Sequence[RasterSource],
              pois: PoiTable | None, opts: BuildOptions, catalogs: dict[str, dict[str, StacRasters]] | None = None
              ) -> Plan:
    """The plan of a build of these inputs with these options (the panorama index is read; rasters only by
    their headers)."""
    plan = Plan()
    for m in metros:
        area, perimeter = Geod(ellps="WGS84").geometry_area_perimeter(m.geometry)
        plan.metros[m.name] = {"cells": estimate_cells(abs(area), perimeter, opts.level)}
    table = read_panoramas(panoramas)
    prepared = [(m.name, m.geometry) for m in metros]
    for _, g in prepared:
        shapely.prepare(g)
    keyed, rejects = assign_batch(table.good, prepared, opts.level, opts.holdout_year, opts.year_range)
    rejected: dict[str, int] = {}
    for r in rejects:
        rejected[r.reason] = rejected.get(r.reason, 0) + 1
    for reason, n in table.rejects["reason"].value_counts().items() if len(table.rejects) else []:
        rejected[str(reason)] = rejected.get(str(reason), 0) + int(n)
    for m in metros:
        rows = keyed[keyed["metro"] == m.name]
        per_key = rows.groupby(["cell", "split"]).size()
        kept = np.minimum(per_key.to_numpy(), opts.max_panos)
        splits = per_key.index.get_level_values("split").to_numpy() if len(per_key) else np.array([])
        plan.metros[m.name].update({
            "panoramas": {"by_year": {str(y): int(n) for y, n in rows["year"].value_counts().sort_index().items()},
                          "by_split": {s: int((rows["split"] == s).sum()) for s in SPLITS}},
            "samples": {s: int((splits == s).sum()) for s in SPLITS},
            "kept": {s: int(kept[splits == s].sum()) for s in SPLITS},
        })
        if not len(rows):
            plan.warnings.append(f"panoramas: none lies in metro {m.name} within --years {opts.years} (holdout "
                                 f"{opts.holdout_year}): the metro will have no samples")
        elif not plan.metros[m.name]["samples"][TEST]:
            plan.warnings.append(f"panoramas: none of metro {m.name} is from the holdout year {opts.holdout_year}: "
                                 "the metro has no test samples")
        if pois is not None:
            xy = pois.pois
            plan.metros[m.name]["pois"] = int(shapely.contains_xy(m.geometry, xy["lon"].to_numpy(),
                                                                  xy["lat"].to_numpy()).sum())
    if not len(keyed):
        plan.errors.append(f"panoramas: none of the {table.n_input:,} lies in a metro within --years {opts.years} "
                           f"(holdout {opts.holdout_year}), so there would be no sample; see the rejected counts")
    plan.projection["rejected_panoramas"] = dict(sorted(rejected.items()))
    plan.projection["panoramas"] = table.n_input
    input_checks(plan, metros, aerial, dsm, opts, catalogs)
    project(plan, opts)
    return plan


def input_checks(plan: Plan, metros: Sequence[Metro], aerial: Sequence[RasterSource], dsm: Sequence[RasterSource],
                 opts: BuildOptions, catalogs: dict[str, dict[str, StacRasters]] | None = None) -> Plan:
    """The checks of the rasters (headers and catalogs only) that ``unigeo build`` makes before it starts."""
    for m in metros:
        plan.metros.setdefault(m.name, {})
    if not opts.no_imagery:
        for kind, rasters in (("aerial", aerial), ("dsm", dsm)):
            raster_checks(kind, rasters, metros, opts, plan)
    for kind, listing in (catalogs or {}).items():
        for source, listed in listing.items():
            plan.warnings += [f"{kind} {source}: {line}" for line in listed.mismatches[:5] + listed.skipped[:5]]
    return plan


def project(plan: Plan, opts: BuildOptions) -> None:
    """Samples, shards, bytes and CPU-hours from the counts and the measured rates."""
    samples = {s: sum(m["samples"][s] for m in plan.metros.values()) for s in SPLITS}
    kept = sum(m["kept"][s] for m in plan.metros.values() for s in SPLITS)
    shards = sum(math.ceil(m["samples"][s] / opts.shard_max_samples) for m in plan.metros.values() for s in SPLITS)
    plan.projection.update({"samples": samples, "kept_panoramas": kept, "shards": shards})
    rates = _rates()
    if rates is None:
        plan.projection["rates"] = None
        return
    imagery = opts.imagery
    crop_bytes = rates["bytes_per_crop"] * (imagery.crop_px / 256) ** 2 * imagery.crops_per_pano
    tile_bytes = rates["tile_bytes"][imagery.tile_encoding] * (imagery.tile_px / 256) ** 2
    plan.projection.update({
        "bytes": int(sum(samples.values()) * tile_bytes + kept * crop_bytes),
        "cpu_hours": round(kept / rates["kept_per_cpu_s"] / 3600, 3),
        "rates": {**rates, "source": str(RESULTS)},
    })


def check_plan(plan: Plan) -> None:
    """Raises ``PlanError`` with the plan's errors, if any."""
    if plan.errors:
        raise PlanError(plan.errors)


def format_plan(plan: Plan) -> str:
    """Lines for a person: per metro, then the projection, the warnings and the errors."""
    lines = []
    for name, m in plan.metros.items():
        p = m.get("panoramas", {})
        lines.append(f"{name}: about {m['cells']:,} cells; {sum(p.get('by_split', {}).values()):,} panoramas "
                     f"({', '.join(f'{s} {n:,}' for s, n in p.get('by_split', {}).items())}); samples "
                     f"{m['samples'][TRAIN]:,} train, {m['samples'][TEST]:,} test"
                     + (f"; {m['pois']:,} POIs" if "pois" in m else ""))
        lines.append("  panoramas by year: " + (", ".join(f"{y} {n:,}" for y, n in p.get("by_year", {}).items())
                                                or "none"))
        for kind, years in m.get("rasters", {}).items():
            lines.append(f"  {kind}: " + ", ".join(
                f"{y} ({s['files']} file{'s' if s['files'] != 1 else ''}, covers {s['coverage']:.0%}"
                + ("" if s["used"] else ", outside --years") + ")" for y, s in years.items()))
    pr = plan.projection
    line = (f"projected: {sum(pr['samples'].values()):,} samples ({pr['samples'][TRAIN]:,} train, "
            f"{pr['samples'][TEST]:,} test), {pr['kept_panoramas']:,} kept panoramas, {pr['shards']:,} shards")
    if pr.get("rates"):
        line += (f", {pr['bytes'] / 1e9:.2f} GB, {pr['cpu_hours']:.2f} CPU-hours (rates measured at commit "
                 f"{pr['rates']['commit']})")
    lines.append(line)
    if pr.get("rejected_panoramas"):
        lines.append("rejected panoramas: " + ", ".join(f"{k} {v:,}" for k, v in pr["rejected_panoramas"].items()))
    lines += [f"warning: {w}" for w in plan.warnings]
    lines += [f"error: {e}" for e in plan.errors]
    return "\n".join(lines)
