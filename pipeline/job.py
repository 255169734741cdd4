"""The ``unigeo build`` job: its inputs read and staged on the launcher, the pipeline graph, the run.

``read_inputs`` and the ``check_*`` functions check the config, every input, the options and the Beam
flags before anything is written. ``run_job`` stages metros and POIs under its output folder (workers
read them there; the job graph carries only paths), runs the pipeline and returns its counters. The
command (``unigeo.cli.build``) runs it in a staging folder and publishes the result with its manifest
and report (``unigeo.outputs``).
"""

from __future__ import annotations

import difflib
import logging
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import pandas as pd
from apache_beam.options.pipeline_options import PipelineOptions, TestOptions
from apache_beam.portability.api import beam_runner_api_pb2
from pyproj import Geod

from unigeo.core.errors import ConfigError
from unigeo.core.fileio import parent
from unigeo.core.sample import CELLS_SCHEMA, SAMPLES_SCHEMA
from unigeo.pipeline.cells import estimate_cells
from unigeo.pipeline.imagery import SUMMARY, RenderSamples, RenderSpec
from unigeo.pipeline.local import LocalRunner, is_direct
from unigeo.pipeline.metrics import counters
from unigeo.pipeline.options import BuildOptions
from unigeo.pipeline.shards import remove_sample_files
from unigeo.pipeline.staging import StagedInputs, poi_rejects, stage_inputs
from unigeo.pipeline.transforms import (
    LEDGER,
    REJECTS,
    AssignCells,
    CoverMetros,
    ReadPanoramas,
    SelectPanoramas,
    WriteLedger,
    WriteShards,
    reject_lines,
    rejects_to_ledger,
)
from unigeo.pipeline.types import rows
from unigeo.sources.config import SourcesConfig, load_config
from unigeo.sources.metros import Metro, read_boundary
from unigeo.sources.panoramas import index_chunks
from unigeo.sources.pois import PoiTable, read_pois
from unigeo.sources.rasters import RasterSource
from unigeo.sources.stac import StacRasters, open_rasters
from unigeo.sources.streetlevel import read_service

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildInputs:
    """A config and every input it names, read and checked on the launcher."""

    config: SourcesConfig
    metros: list[Metro]
    aerial: list[RasterSource]
    dsm: list[RasterSource]
    pois: PoiTable | None
    catalogs: dict[str, dict[str, StacRasters]] = field(default_factory=dict)  # kind -> STAC source -> listing
    panoramas: tuple[str | pd.DataFrame, ...] = ()  # per panorama source: a native index, or a service's rows

    @property
    def panorama_sources(self) -> tuple[str | pd.DataFrame, ...]:
        return self.panoramas or (self.config.panoramas,)


def read_inputs(config_path: str) -> BuildInputs:
    """Read the config and open every input (boundaries, raster headers, STAC listings, POIs).

    Raises:
        ConfigError, SourceError: bad configuration or an unusable input.
    """
    cfg = load_config(config_path)
    panoramas = tuple(read_service(p.format, p.path, p.images) if p.format != "native" else p.path
                      for p in cfg.panorama_sources)
    for source in panoramas:  # a missing or malformed index fails here, before anything is written
        if isinstance(source, str):
            index_chunks(source)
    metros = [read_boundary(m.boundary, m.name) for m in cfg.metros]
    for m in metros:
        for repair in m.repairs:
            log.warning("metro %s: %s", m.name, repair)
    areas = metro_areas(metros)
    aerial, dsm = open_rasters(cfg.aerial, "aerial", areas), open_rasters(cfg.dsm, "dsm", areas)
    return BuildInputs(cfg, metros, aerial.sources, dsm.sources, read_poi_sources(cfg, areas),
                       {"aerial": aerial.catalogs, "dsm": dsm.catalogs}, panoramas)


def read_poi_sources(cfg: SourcesConfig, areas: list[tuple[float, float, float, float]]) -> PoiTable | None:
    """Every POI source of the config as one table (None without any); each reject names its file."""
    tables = [(p.path, read_pois(p.path, p.format, p.min_confidence, areas)) for p in cfg.poi_sources]
    if not tables:
        return None
    if len(tables) == 1:
        return tables[0][1]
    return PoiTable(pd.concat([t.pois for _, t in tables], ignore_index=True),
                    pd.concat([t.rejects.assign(file=path) for path, t in tables], ignore_index=True))


AREA_MARGIN_DEG = 0.01  # about 1 km: a raster just outside a metro still serves the tiles of its border cells


def metro_areas(metros: list[Metro]) -> list[tuple[float, float, float, float]]:
    """The metros' lon/lat bounds with a margin: what a STAC item must meet to be read."""
    return [(w - AREA_MARGIN_DEG, s - AREA_MARGIN_DEG, e + AREA_MARGIN_DEG, n + AREA_MARGIN_DEG)
            for w, s, e, n in (m.geometry.bounds for m in metros)]


@dataclass(frozen=True)
class LocationStages:
    """The location stages' outputs: selected samples (``samples``) with the not-selected ledger rows
    (``LEDGER``), and the panoramas' rejects, in batches; ``parts``: partitions of the panorama index."""

    selected: Any
    rejects: Any
    parts: int


def add_location_stages(p: beam.Pipeline, cfg: SourcesConfig, staged: StagedInputs, opts: BuildOptions,
                        out: str) -> LocationStages:
    """Ingest, duplicates, cells and split, farthest-point selection, and the covering with its sink."""
    read = ReadPanoramas(staged.panoramas) if staged.panoramas else ReadPanoramas(cfg.panoramas, parent(cfg.panoramas))
    panos = p | "ReadPanoramas" >> read
    assigned = panos["good"] | "AssignCells" >> AssignCells(staged.metros, opts.level, opts.holdout_year,
                                                            opts.year_range, read.parts)
    selected = assigned.keyed | "SelectPanoramas" >> SelectPanoramas(opts.max_panos, opts.seed, opts.level)
    (p
     | "CoverMetros" >> CoverMetros(staged.metros, opts.level, opts.cover_parent_level)
     | "WriteCells" >> beam.io.WriteToParquetBatched(f"{out}/cells/cells", CELLS_SCHEMA,
                                                    file_name_suffix=".parquet"))
    return LocationStages(selected, (panos[REJECTS], assigned[REJECTS]) | "PanoramaRejects" >> beam.Flatten(),
                          read.parts)


def write_ledger_and_rejects(out: str, ledger: Iterable[Any], rejects: Iterable[Any]) -> None:
    """The ledger and rejects sinks over batches (plain tuples: one per index chunk, partition or sample)."""
    (tuple(rejects)
     | "AllRejects" >> beam.Flatten()
     | "RejectsToJson" >> beam.FlatMap(reject_lines)
     | "WriteRejects" >> beam.io.WriteToText(f"{out}/rejects/rejects", file_name_suffix=".jsonl"))
    tuple(ledger) | "Ledger" >> beam.Flatten() | "WriteLedger" >> WriteLedger(f"{out}/ledger/ledger")


def build_pipeline(p: beam.Pipeline, cfg: SourcesConfig, staged: StagedInputs, opts: BuildOptions, out: str,
                   aerial: list[RasterSource], dsm: list[RasterSource]) -> None:
    """Add the build job's transforms to ``p``; staged inputs are read on the workers."""
    out = out.rstrip("/")
    located = add_location_stages(p, cfg, staged, opts, out)
    spec = RenderSpec(opts.render, opts.seed, opts.holdout_year, opts.year_range,
                      tuple(r.file() for r in aerial), tuple(r.file() for r in dsm), opts.text, staged.pois,
                      source_root=parent(cfg.path))
    rendered = located.selected.samples | "RenderSamples" >> RenderSamples(spec)
    (rendered[SUMMARY]
     | "WriteSamples" >> beam.io.WriteToParquet(f"{out}/samples/samples", SAMPLES_SCHEMA, file_name_suffix=".parquet"))
    poi = (p
           | "PoiRejectsFile" >> beam.Create([staged.poi_rejects] if staged.poi_rejects else [])
           | "PoiRejects" >> beam.Map(lambda path: rows(poi_rejects(path))))
    write_ledger_and_rejects(
        out, ledger=(located.selected[LEDGER], rendered[LEDGER],
                     located.rejects | "RejectsToLedger" >> beam.Map(rejects_to_ledger)),
        rejects=(located.rejects, rendered[REJECTS], poi))
    (rendered.encoded
     | "WriteShards" >> WriteShards(out, opts.shard_max_samples, int(opts.shard_max_mb * 1024 * 1024),
                                   mix_seed=opts.seed if opts.train_shard_order == "mixed" else None))


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """Beam options from the pass-through flags; DirectRunner unless ``--runner`` is given (Beam's
    default runner would first try to download Prism)."""
    args = list(beam_args)
    if not any(a == "--runner" or a.startswith("--runner=") for a in args):
        args.append("--runner=DirectRunner")
    return PipelineOptions(args)


def runner_name(options: PipelineOptions) -> str:
    """The runner the options name (``pipeline_options`` makes it DirectRunner when none is given)."""
    return str(options.get_all_options().get("runner") or "DirectRunner")


def unknown_beam_flags(beam_args: list[str], own_flags: Iterable[str] = ()) -> list[str]:
    """Messages for the flags in ``beam_args`` that no Beam option knows, each with a suggestion drawn
    from Beam's options and ``own_flags`` (the command's flags, without dashes)."""
    known = set(PipelineOptions([]).get_all_options(retain_unknown_options=True))
    got = PipelineOptions(list(beam_args)).get_all_options(retain_unknown_options=True)
    unknown = set(got) - known
    candidates = [f"--{k}" for k in known] + [f"--{f}" for f in own_flags]
    messages = []
    for arg in beam_args:
        if not arg.startswith("--"):
            continue
        flag = arg.split("=", 1)[0]
        if flag[2:].replace("-", "_") not in unknown:
            continue
        close = difflib.get_close_matches(flag, candidates, n=1, cutoff=0.6)
        messages.append(f"no such option: {flag}" + (f" (did you mean {close[0]}?)" if close else ""))
    return messages


def check_covering(metros: list[Metro], level: int, max_cells: int) -> int:
    """The estimated size of the metros' covering at ``level``; logged, and refused above ``max_cells``.

    Raises:
        ConfigError: the estimate exceeds ``max_cells``.
    """
    geod = Geod(ellps="WGS84")
    total = 0
    for m in metros:
        area, perimeter = geod.geometry_area_perimeter(m.geometry)
        total += estimate_cells(abs(area), perimeter, level)
    log.info("covering: about %d cells at level %d", total, level)
    if total > max_cells:
        raise ConfigError(f"--level {level} covers the metros with about {total:,} cells, more than --max-cells "
                          f"{max_cells:,}; choose a coarser level, or raise --max-cells on purpose")
    return total


def check_beam_options(beam_args: list[str]) -> list[str]:
    """Beam's own checks of the pipeline options for the runner they name, made before anything reaches
    the network: for Dataflow the project id, the region, the job name and the temp and staging locations
    (a location Beam refuses would make it try to create a default bucket over the network). Returns one
    line per problem, each naming its option."""
    options = pipeline_options(beam_args)
    if not runner_name(options).endswith("DataflowRunner"):
        return []
    from apache_beam.options.pipeline_options import GoogleCloudOptions
    from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator
    from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

    cloud = options.view_as(GoogleCloudOptions)
    validator = PipelineOptionsValidator(options, DataflowRunner())
    errors = []
    if not cloud.temp_location and not cloud.staging_location:
        errors.append("--temp_location: required with DataflowRunner (gs://BUCKET/tmp; without it Beam would "
                      "try to create a bucket)")
    for name in ("temp_location", "staging_location"):
        if getattr(cloud, name):
            errors += validator.validate_gcs_path(cloud, name)
    errors += validator.validate_cloud_options(cloud)
    return [" ".join(e.split()) for e in errors]


def is_dry_run(beam_args: list[str]) -> bool:
    """True when the Beam flags ask for a translation without a run (``--dry_run=True``)."""
    return bool(pipeline_options(beam_args).view_as(TestOptions).dry_run)


def translate(inputs: BuildInputs, out: str, opts: BuildOptions, beam_args: list[str]) -> dict[str, Any]:
    """Build and translate the job for the runner in ``beam_args`` without running it; nothing is written
    under ``out`` (the staged inputs go to a temporary folder that is deleted).

    DataflowRunner with ``--dry_run=True`` builds its job request (every DoFn pickled, the environment
    with its container image) and returns without submitting; other runners translate to the portable
    pipeline proto. Returns the runner, the number of transforms, the graph's size in bytes and the
    container images of its environments.
    """
    options = pipeline_options(beam_args)
    runner = runner_name(options)
    with tempfile.TemporaryDirectory(prefix="unigeo-dry-run-") as tmp:
        staged = stage_inputs(tmp, inputs.metros, inputs.pois, inputs.config.pois, inputs.panorama_sources)
        p = beam.Pipeline(options=options)
        build_pipeline(p, inputs.config, staged, opts, out, inputs.aerial, inputs.dsm)
        dataflow = runner.endswith("DataflowRunner")
        proto = p.run().job.proto_pipeline if dataflow else p.to_runner_api()  # type: ignore[attr-defined]
    images = sorted({beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image
                     for env in proto.components.environments.values() if env.urn == "beam:env:docker:v1"})
    return {"runner": runner, "transforms": len(proto.components.transforms),
            "graph_bytes": len(proto.SerializeToString()), "container_images": images}


def run_job(inputs: BuildInputs, out: str, opts: BuildOptions, beam_args: list[str]
            ) -> tuple[dict[str, int], dict[str, Any]]:
    """Run the build job on checked inputs; returns its counters and what the manifest records of the run
    (``runner``, ``beam_args``, ``duration_s``, ``started_unix``)."""
    options = pipeline_options(beam_args)
    staged = stage_inputs(out, inputs.metros, inputs.pois, inputs.config.pois, inputs.panorama_sources)
    runner = runner_name(options)
    log.info("building %s -> %s on %s (level %d, max %d panoramas per cell, holdout %d, years %s)",
             inputs.config.path, out, runner, opts.level, opts.max_panos, opts.holdout_year, opts.years)
    started = time.time()
    p = beam.Pipeline(runner=LocalRunner() if is_direct(runner) else None, options=options)
    build_pipeline(p, inputs.config, staged, opts, out, inputs.aerial, inputs.dsm)
    result = p.run()
    result.wait_until_finish()
    remove_sample_files(out)
    return counters(result), {"runner": runner, "beam_args": list(beam_args),
                              "duration_s": round(time.time() - started, 2), "started_unix": round(started, 3)}
