"""The ``unigeo build`` job: options, the pipeline graph, and the run from config to manifest."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import pyarrow as pa
import shapely
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from unigeo.pipeline.cells import check_level, default_parent_level
from unigeo.pipeline.imagery import SUMMARY, ImageryOptions, PoiColumns, RenderSamples, TextOptions
from unigeo.pipeline.metrics import counters
from unigeo.pipeline.split import parse_years
from unigeo.pipeline.transforms import (
    LEDGER,
    REJECTS,
    AssignCells,
    CoverMetros,
    ReadPanoramas,
    SelectPanoramas,
    WriteShards,
    reject_to_ledger,
)
from unigeo.pipeline.types import Reject
from unigeo.sources.config import SourcesConfig, load_config
from unigeo.sources.metros import Metro, read_boundary
from unigeo.sources.pois import PoiTable, read_pois
from unigeo.sources.rasters import RasterSource, open_raster

from unigeo.core.errors import ConfigError
from unigeo.core.fileio import parent
from unigeo.outputs.manifest import write_manifest

log = logging.getLogger(__name__)

LEDGER_SCHEMA = pa.schema([("row", pa.int64()), ("pano_id", pa.string()), ("metro", pa.string()),
                           ("cell", pa.string()), ("split", pa.string()), ("status", pa.string()),
                           ("reason", pa.string()), ("detail", pa.string()), ("year", pa.int64())])
CELLS_SCHEMA = pa.schema([("metro", pa.string()), ("cell", pa.string()), ("lat", pa.float64()),
                          ("lon", pa.float64())])
# What a build owns under its output folder; cleared before a build so no stale file survives.
OUTPUT_GLOBS = ("shards/*/*", "ledger/*", "rejects/*", "cells/*", "samples/*", "report/*", "manifest.json")
SAMPLES_SCHEMA = pa.schema([
    ("metro", pa.string()), ("cell", pa.string()), ("split", pa.string()), ("lat", pa.float64()),
    ("lon", pa.float64()), ("panoramas", pa.int64()), ("panoramas_in_cell", pa.int64()), ("crops", pa.int64()),
    ("members", pa.int64()), ("aerial", pa.bool_()), ("aerial_year", pa.int64()), ("aerial_nodata", pa.float64()),
    ("dsm", pa.bool_()), ("dsm_year", pa.int64()), ("dsm_nodata", pa.float64()), ("tile_crs", pa.string()),
    ("tile_gsd", pa.float64()), ("text", pa.string()), ("text_pois", pa.int64()), ("missing", pa.string())])


@dataclass(frozen=True)
class BuildOptions:
    """Options of ``unigeo build`` (defaults from the design contract)."""

    level: int = 16
    max_panos: int = 120
    holdout_year: int = 2023
    years: str = "2017-2024"
    seed: int = 0
    parent_level: int | None = None
    shard_max_samples: int = 1000
    shard_max_mb: float = 1024.0
    imagery: ImageryOptions | None = dataclasses.field(default_factory=ImageryOptions)  # None: no images
    text: TextOptions = dataclasses.field(default_factory=TextOptions)

    def __post_init__(self) -> None:
        try:
            check_level(self.level)
            parse_years(self.years)
        except ValueError as e:
            raise ConfigError(str(e)) from e
        if self.max_panos < 1:
            raise ConfigError(f"--max-panos must be >= 1, got {self.max_panos}")
        if not 1900 <= self.holdout_year <= 2100:
            raise ConfigError(f"--holdout-year {self.holdout_year} is not a plausible year")
        if self.parent_level is not None and not 0 <= self.parent_level <= self.level:
            raise ConfigError(f"--parent-level must be in 0..{self.level}, got {self.parent_level}")
        if self.shard_max_samples < 1 or self.shard_max_mb <= 0:
            raise ConfigError("--shard-max-samples and --shard-max-mb must be positive")

    @property
    def year_range(self) -> tuple[int, int]:
        return parse_years(self.years)

    @property
    def cover_parent_level(self) -> int:
        return default_parent_level(self.level) if self.parent_level is None else self.parent_level

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["parent_level"] = self.cover_parent_level
        return d


def _ledger_dict(row: Any) -> dict[str, Any]:
    return row._asdict()


def _reject_json(r: Any) -> str:
    return json.dumps(r._asdict(), sort_keys=True, ensure_ascii=False)


def poi_columns(table: PoiTable | None) -> PoiColumns:
    if table is None:
        return PoiColumns()
    p = table.pois
    return PoiColumns(tuple(p["poi_id"]), tuple(p["name"]), tuple(p["category"]), tuple(map(float, p["lat"])),
                      tuple(map(float, p["lon"])), tuple(p["neighbourhood"]))


def poi_rejects(table: PoiTable | None, path: str | None) -> list[Reject]:
    if table is None:
        return []
    return [Reject("poi", str(r["source_id"]), str(r["reason"]), str(r["detail"]), {"file": path, "row": int(r["row"])},
                   int(r["row"])) for r in table.rejects.to_dict(orient="records")]


def build_pipeline(p: beam.Pipeline, cfg: SourcesConfig, metros: list[Metro], opts: BuildOptions, out: str,
                   aerial: list[RasterSource], dsm: list[RasterSource], pois: PoiTable | None = None) -> None:
    """Add the build job's transforms to ``p``."""
    out = out.rstrip("/")
    wkb = [(m.name, shapely.to_wkb(m.geometry)) for m in metros]
    panos = p | "ReadPanoramas" >> ReadPanoramas(cfg.panoramas, parent(cfg.panoramas))
    assigned = panos["good"] | "AssignCells" >> AssignCells(wkb, opts.level, opts.holdout_year, opts.year_range)
    selected = assigned.keyed | "SelectPanoramas" >> SelectPanoramas(opts.max_panos, opts.seed, opts.level)
    rendered = selected.samples | "RenderSamples" >> RenderSamples(
        opts.imagery, opts.seed, opts.holdout_year, opts.year_range,
        [(r.path, r.date.isoformat()) for r in aerial], [(r.path, r.date.isoformat()) for r in dsm],
        opts.text, poi_columns(pois))
    (rendered[SUMMARY]
     | "WriteSamples" >> beam.io.WriteToParquet(f"{out}/samples/samples", SAMPLES_SCHEMA, file_name_suffix=".parquet"))

    pano_rejects = (panos[REJECTS], assigned[REJECTS]) | "PanoramaRejects" >> beam.Flatten()
    other_rejects = p | "PoiRejects" >> beam.Create(poi_rejects(pois, cfg.pois))
    ((pano_rejects, rendered[REJECTS], other_rejects)
     | "AllRejects" >> beam.Flatten()
     | "RejectsToJson" >> beam.Map(_reject_json)
     | "WriteRejects" >> beam.io.WriteToText(f"{out}/rejects/rejects", file_name_suffix=".jsonl"))
    ledger = ((selected[LEDGER], rendered[LEDGER], pano_rejects | "RejectsToLedger" >> beam.Map(reject_to_ledger))
              | "Ledger" >> beam.Flatten())
    (ledger
     | "LedgerRows" >> beam.Map(_ledger_dict)
     | "WriteLedger" >> beam.io.WriteToParquet(f"{out}/ledger/ledger", LEDGER_SCHEMA, file_name_suffix=".parquet"))

    (p
     | "CoverMetros" >> CoverMetros(wkb, opts.level, opts.cover_parent_level)
     | "WriteCells" >> beam.io.WriteToParquet(f"{out}/cells/cells", CELLS_SCHEMA, file_name_suffix=".parquet"))

    (rendered.encoded
     | "WriteShards" >> WriteShards(out, opts.shard_max_samples, int(opts.shard_max_mb * 1024 * 1024)))


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """Beam options from the pass-through flags; DirectRunner unless ``--runner`` is given (Beam's
    default runner would first try to download Prism)."""
    args = list(beam_args)
    if not any(a == "--runner" or a.startswith("--runner=") for a in args):
        args.append("--runner=DirectRunner")
    return PipelineOptions(args)


def clear_outputs(out: str) -> int:
    """Delete what an earlier build left under ``out``; returns how many files."""
    paths: list[str] = []
    for pattern in OUTPUT_GLOBS:
        for result in FileSystems.match([f"{out.rstrip('/')}/{pattern}"]):
            paths.extend(m.path for m in result.metadata_list)
    if paths:
        FileSystems.delete(paths)
    return len(paths)


def run_build(config_path: str, out: str, opts: BuildOptions, beam_args: list[str]) -> dict[str, Any]:
    """Run the build job and write ``DIR/manifest.json``; return the manifest.

    Raises:
        ConfigError, SourceError: bad configuration or an unusable input, before anything runs.
    """
    cfg = load_config(config_path)
    metros = [read_boundary(m.boundary, m.name) for m in cfg.metros]
    aerial = [open_raster(r, "aerial") for r in cfg.aerial]
    dsm = [open_raster(r, "dsm") for r in cfg.dsm]
    pois = read_pois(cfg.pois) if cfg.pois else None
    for m in metros:
        for repair in m.repairs:
            log.warning("metro %s: %s", m.name, repair)
    options = pipeline_options(beam_args)
    removed = clear_outputs(out)
    if removed:
        log.info("removed %d files of an earlier build under %s", removed, out)
    runner = options.get_all_options().get("runner") or "DirectRunner"
    log.info("building %s -> %s on %s (level %d, max %d panoramas per cell, holdout %d, years %s)",
             config_path, out, runner, opts.level, opts.max_panos, opts.holdout_year, opts.years)
    started = time.time()
    p = beam.Pipeline(options=options)
    build_pipeline(p, cfg, metros, opts, out, aerial, dsm, pois)
    result = p.run()
    result.wait_until_finish()
    duration = time.time() - started
    found = counters(result)
    manifest = write_manifest(out, cfg, metros, opts.as_dict(), found,
                              {"runner": str(runner), "beam_args": list(beam_args), "duration_s": round(duration, 2),
                               "started_unix": round(started, 3)})
    from unigeo.outputs.report import build_report  # matplotlib is slow to import

    build_report(out)
    log.info("report: %s/report/index.html", out.rstrip("/"))
    return manifest
