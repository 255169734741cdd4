"""The imagery stage's PTransform: each sample rendered by ``pipeline.render`` on a worker.

The DoFn builds one ``SampleRenderer`` per worker in ``setup()`` (rasters opened once, the staged
POIs loaded from the output folder) and emits what ``render`` returns: the encoded sample, and the
``ledger``, ``rejects`` and ``summary`` outputs, with the counters it reports.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from unigeo.core.sample import SampleKey, SampleMeta
from unigeo.pipeline.metrics import inc_counter
from unigeo.pipeline.options import ImageryOptions, TextOptions
from unigeo.pipeline.render import SampleRenderer
from unigeo.pipeline.staging import load_poi_index
from unigeo.pipeline.types import rows
from unigeo.sources.tiles import RasterFile

LEDGER = "ledger"
REJECTS = "rejects"
SUMMARY = "summary"


@dataclass(frozen=True)
class RenderSpec:
    """What the imagery stage's workers need; small whatever the inputs' size (POIs travel as a path)."""

    opts: ImageryOptions | None  # None: location stages only, samples hold their json alone
    seed: int
    holdout_year: int
    years: tuple[int, int]
    aerial: tuple[RasterFile, ...]  # every raster by its footprint: workers open only what a tile meets
    dsm: tuple[RasterFile, ...]
    text: TextOptions = TextOptions()
    pois: str | None = None  # the staged POI table (pipeline.staging)
    source_root: str | None = None  # the config's folder: the json's input paths are relative to it

    def __post_init__(self) -> None:
        if self.years[0] > self.years[1]:
            raise ValueError(f"empty year range {self.years}")


class _RenderSample(beam.DoFn):
    def __init__(self, spec: RenderSpec) -> None:
        self.spec = spec
        self._renderer: SampleRenderer | None = None

    def setup(self) -> None:
        s = self.spec
        self._renderer = SampleRenderer(s.opts, s.seed, s.holdout_year, s.years, s.aerial, s.dsm, s.text.generator(),
                                        s.text.radius_m, s.text.max_pois, load_poi_index(s.pois),
                                        source_root=s.source_root)

    def teardown(self) -> None:
        if self._renderer is not None:
            self._renderer.close()

    def process(self, element: tuple[SampleKey, SampleMeta]) -> Iterator[Any]:
        assert self._renderer is not None
        outcome = self._renderer.render(*element)
        for stage, name, n in outcome.counts:
            inc_counter(stage, name, n)
        if outcome.rejects:  # batches of plain tuples, as the location stages pass them
            yield TaggedOutput(REJECTS, rows(outcome.rejects))
        if outcome.ledger:
            yield TaggedOutput(LEDGER, rows(outcome.ledger))
        if outcome.summary is not None:
            yield TaggedOutput(SUMMARY, outcome.summary)
        if outcome.encoded is not None:
            yield outcome.encoded


@dataclass(eq=False)
class RenderSamples(beam.PTransform):
    """``(SampleKey, sample json)`` -> ``EncodedSample`` with crops, tiles and text; per sample, a batch of
    ``ledger`` rows for its selected panoramas (kept, or rejected when their image fails) and a batch of
    ``rejects`` (their fields as plain tuples); ``summary`` rows."""

    spec: RenderSpec

    def __post_init__(self) -> None:
        super().__init__()

    def expand(self, samples: Any) -> Any:
        return samples | "Render" >> beam.ParDo(_RenderSample(self.spec)).with_outputs(LEDGER, REJECTS, SUMMARY,
                                                                                   main="encoded")
