"""The imagery stage: street-view crops, aerial and DSM tiles, and the text joined to each sample.

One DoFn per sample decodes each kept panorama once (DCT-scaled) and renders its crops, then reads
the aerial and DSM tiles of the cell from the rasters it opened once per worker. A panorama that is
missing or does not decode is rejected (ledger and rejects); a tile that cannot be made is dropped
from the sample with a reason in the rejects, and the sample keeps its other members.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import TaggedOutput
from PIL import Image
from unigeo.pipeline.crops import crop_params, render_crops
from unigeo.pipeline.metrics import inc_counter
from unigeo.pipeline.shards import encode_sample
from unigeo.pipeline.text import PoiIndex, TemplateGenerator, TextGenerator, place_facts
from unigeo.pipeline.text_endpoint import EndpointGenerator
from unigeo.pipeline.tiles import Epoch, epochs_for_split, tile_grid
from unigeo.pipeline.types import KEPT, REJECTED, SPLITS, LedgerRow, Reject, SampleKey, capture_year
from unigeo.sources.tiles import Grid, RasterStack

from unigeo.core import reasons

LEDGER = "ledger"
REJECTS = "rejects"
SUMMARY = "summary"


@dataclass(frozen=True)
class TextOptions:
    """Where descriptions come from: POIs within ``radius_m`` (at most ``max_pois``) and the template,
    or an OpenAI-compatible endpoint when ``endpoint`` is set (key from the ``key_env`` variable)."""

    radius_m: float = 300.0
    max_pois: int = 12
    endpoint: str | None = None
    model: str | None = None
    key_env: str = "UNIGEO_TEXT_API_KEY"
    timeout_s: float = 30.0
    retries: int = 3

    def __post_init__(self) -> None:
        if self.radius_m <= 0 or self.max_pois < 0:
            raise ValueError("text radius must be positive and max POIs >= 0")
        if self.endpoint and not self.model:
            raise ValueError("--text-endpoint needs --text-model")

    def generator(self) -> TextGenerator:
        if self.endpoint:
            return EndpointGenerator(self.endpoint, str(self.model), self.key_env, self.timeout_s, self.retries)
        return TemplateGenerator()


@dataclass(frozen=True)
class PoiColumns:
    """The POI table as plain columns (picklable into a DoFn)."""

    ids: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    lats: tuple[float, ...] = ()
    lons: tuple[float, ...] = ()
    neighbourhoods: tuple[str, ...] = ()

    def index(self) -> PoiIndex | None:
        if not self.ids:
            return None
        return PoiIndex(self.ids, self.names, self.categories, self.lats, self.lons, self.neighbourhoods)


@dataclass(frozen=True)
class ImageryOptions:
    """Crop and tile settings (defaults from the design contract)."""

    crops_per_pano: int = 1
    crop_px: int = 256
    pitch_range: tuple[float, float] = (-5.0, 15.0)
    fov_range: tuple[float, float] = (60.0, 100.0)
    jpeg_quality: int = 90
    tile_px: int = 256
    gsd: float = 0.6
    max_nodata: float = 0.2

    def __post_init__(self) -> None:
        if self.crops_per_pano < 0 or self.crop_px < 8 or self.tile_px < 8 or self.gsd <= 0:
            raise ValueError("crops per panorama >= 0, crop and tile sizes >= 8 px and a positive gsd are required")
        if not -90 <= self.pitch_range[0] <= self.pitch_range[1] <= 90:
            raise ValueError(f"pitch range {self.pitch_range} must be ordered within -90..90")
        if not 0 < self.fov_range[0] <= self.fov_range[1] < 180:
            raise ValueError(f"fov range {self.fov_range} must be ordered within (0, 180)")
        if not 1 <= self.jpeg_quality <= 100 or not 0 <= self.max_nodata <= 1:
            raise ValueError("JPEG quality must be 1..100 and max nodata 0..1")


class Failure(NamedTuple):
    """Why a panorama or a tile could not be made."""

    reason: str
    detail: str


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


class _RenderSample(beam.DoFn):
    def __init__(self, opts: ImageryOptions | None, seed: int, holdout_year: int, years: tuple[int, int],
                 aerial: list[tuple[str, str]], dsm: list[tuple[str, str]], text: TextOptions,
                 pois: PoiColumns) -> None:
        self.opts = opts
        self.text = text
        self.pois = pois
        self._index: PoiIndex | None = None
        self._epochs: dict[tuple[str, str], list[Epoch]] = {}
        self._generator: TextGenerator = TemplateGenerator()
        self.seed = seed
        self.holdout_year = holdout_year
        self.years = years
        self.rasters = {"aerial": aerial, "dsm": dsm}
        self._stacks: dict[str, RasterStack] = {}

    def setup(self) -> None:
        for kind, files in self.rasters.items():
            dated = [(p, dt.date.fromisoformat(d)) for p, d in files]
            for split in SPLITS:
                self._epochs[kind, split] = epochs_for_split(dated, split, self.holdout_year, self.years)
        self._index = self.pois.index()
        self._generator = self.text.generator()
        if self.opts is not None:
            self._stacks = {kind: RasterStack([p for p, _ in files], kind) for kind, files in self.rasters.items()}

    def teardown(self) -> None:
        for stack in self._stacks.values():
            stack.close()

    def _panorama(self, pano: dict[str, Any], first_member: int
                  ) -> tuple[list[tuple[str, bytes]], list[dict[str, Any]]] | Failure:
        assert self.opts is not None
        params = [crop_params(self.seed, pano["pano_id"], i, self.opts.pitch_range, self.opts.fov_range)
                  for i in range(self.opts.crops_per_pano)]
        try:
            with FileSystems.open(pano["uri"]) as f:
                jpeg = f.read()
        except Exception as e:  # FileNotFoundError locally, BeamIOError remotely
            return Failure(reasons.MISSING_FILE, f"cannot open {pano['uri']}: {e}")
        try:
            crops = render_crops(jpeg, pano["heading_deg"], params, self.opts.crop_px, self.opts.jpeg_quality)
        except (OSError, ValueError, SyntaxError) as e:
            return Failure(reasons.CORRUPT_JPEG, f"{pano['uri']}: {e}")
        members, meta = [], []
        for i, (p, data) in enumerate(zip(params, crops)):
            name = f"sv.{first_member + i:03d}.jpg"
            members.append((name, data))
            meta.append({"member": name, **p.as_json()})
        return members, meta

    def _tile(self, kind: str, key: SampleKey, grid: Grid) -> tuple[np.ndarray, dict[str, Any]] | Failure:
        assert self.opts is not None
        epochs = self._epochs[kind, key.split]
        if not epochs:
            return Failure(reasons.TILE_NO_IMAGERY, f"no {kind} raster of a year the {key.split} split may use")
        best = Failure(reasons.TILE_NO_COVERAGE, f"no {kind} raster reaches the tile")
        for epoch in epochs:
            read = self._stacks[kind].read(list(epoch.paths), grid)
            if read is None:
                continue
            data, valid = read
            nodata = float(1.0 - valid.mean())
            if nodata > self.opts.max_nodata:
                best = Failure(reasons.TILE_NODATA,
                               f"{kind} {epoch.year}: nodata {nodata:.2f} > {self.opts.max_nodata}")
                continue
            dates = dict(self.rasters[kind])  # a handful of files
            return data, {"year": epoch.year, "files": list(epoch.paths), "dates": [dates[p] for p in epoch.paths],
                          "crs": grid.crs, "gsd": self.opts.gsd, "size": grid.size,
                          "transform": list(grid.transform), "nodata_fraction": round(nodata, 4)}
        return best

    def process(self, element: tuple[SampleKey, dict[str, Any]]) -> Iterator[Any]:
        key, sample = element
        if self.opts is None:  # location stages only: no image is opened
            for pano in sample["panoramas"]:
                yield TaggedOutput(LEDGER, LedgerRow(pano["row"], pano["pano_id"], key.metro, key.cell, key.split,
                                                     KEPT, "", "", capture_year(pano)))
            yield TaggedOutput(SUMMARY, _summary(key, sample, 0))
            yield encode_sample(key.metro, key.split, key.name, {"json": sample})
            return
        members: list[tuple[str, bytes]] = []
        kept = []
        for pano in sample["panoramas"]:
            result = self._panorama(pano, len(members))
            row = (pano["row"], pano["pano_id"], key.metro, key.cell, key.split)
            if isinstance(result, Failure):
                inc_counter("imagery", f"rejected/{result.reason}")
                yield TaggedOutput(REJECTS, Reject("panorama", pano["pano_id"], result.reason, result.detail, pano,
                                                   pano["row"], key.metro, key.cell))
                yield TaggedOutput(LEDGER, LedgerRow(*row, REJECTED, result.reason, result.detail, capture_year(pano)))
                continue
            crop_members, crop_meta = result
            members += crop_members
            kept.append({**pano, "crops": crop_meta})
            yield TaggedOutput(LEDGER, LedgerRow(*row, KEPT, "", "", capture_year(pano)))
        if not kept:
            inc_counter("imagery", f"rejected/{reasons.NO_USABLE_PANORAMA}")
            yield TaggedOutput(REJECTS, Reject("cell", key.name, reasons.NO_USABLE_PANORAMA,
                                               "every selected panorama failed", {"cell": key.cell, "split": key.split},
                                               -1, key.metro, key.cell))
            return
        inc_counter("imagery", "crops", len(members))
        sample = {**sample, "panoramas": kept, "crop": {"px": self.opts.crop_px, "quality": self.opts.jpeg_quality}}
        grid = tile_grid(sample["lat"], sample["lon"], self.opts.gsd, self.opts.tile_px)
        missing = {}
        arrays: dict[str, np.ndarray] = {}
        for kind, member in (("aerial", "aerial.png"), ("dsm", "dsm.npy")):
            tile = self._tile(kind, key, grid)
            if isinstance(tile, Failure):
                missing[member] = tile.reason
                sample[kind] = None
                inc_counter("imagery", f"rejected/{tile.reason}")
                yield TaggedOutput(REJECTS, Reject("tile", f"{key.name}/{member}", tile.reason, tile.detail,
                                                   {"cell": key.cell, "split": key.split, "member": member},
                                                   -1, key.metro, key.cell))
                continue
            data, meta = tile
            arrays[kind] = data
            members.append((member, png_bytes(data) if kind == "aerial" else npy_bytes(data.astype(np.float32))))
            sample[kind] = {"member": member, **meta}
            inc_counter("imagery", f"tiles/{kind}")
        facts = place_facts(key.metro, sample["lat"], sample["lon"], self._index, self.text.radius_m,
                            self.text.max_pois, arrays.get("aerial"), arrays.get("dsm"))
        if isinstance(self._generator, EndpointGenerator):
            description, error = self._generator.describe_or_fail(facts, self.seed, key.name)
            if error:
                inc_counter("text", f"rejected/{reasons.TEXT_ENDPOINT_FAILED}")
                yield TaggedOutput(REJECTS, Reject("text", f"{key.name}/txt", reasons.TEXT_ENDPOINT_FAILED, error,
                                                   {"cell": key.cell, "split": key.split}, -1, key.metro, key.cell))
        else:
            description = self._generator.describe(facts, self.seed, key.name)
        inc_counter("text", description.provenance["generator"])
        members.append(("txt", description.text.encode("utf-8")))
        sample["text"] = {**description.provenance, "neighbourhood": facts.neighbourhood,
                          "radius_m": facts.radius_m}
        sample["missing_members"] = missing
        yield TaggedOutput(SUMMARY, _summary(key, sample, len(members)))
        yield encode_sample(key.metro, key.split, key.name, {"json": sample, **dict(members)})


def _summary(key: SampleKey, sample: dict[str, Any], n_members: int) -> dict[str, Any]:
    """One row per sample for the report: where it is and which members it has."""
    aerial, dsm, text = sample.get("aerial"), sample.get("dsm"), sample.get("text") or {}
    return {
        "metro": key.metro, "cell": key.cell, "split": key.split, "lat": sample["lat"], "lon": sample["lon"],
        "panoramas": len(sample["panoramas"]), "panoramas_in_cell": sample["panoramas_in_cell"],
        "crops": sum(len(p.get("crops", [])) for p in sample["panoramas"]), "members": n_members,
        "aerial": aerial is not None, "aerial_year": aerial["year"] if aerial else -1,
        "aerial_nodata": aerial["nodata_fraction"] if aerial else float("nan"),
        "dsm": dsm is not None, "dsm_year": dsm["year"] if dsm else -1,
        "dsm_nodata": dsm["nodata_fraction"] if dsm else float("nan"),
        "tile_crs": (aerial or dsm or {}).get("crs", ""), "tile_gsd": float((aerial or dsm or {}).get("gsd", 0.0)),
        "text": text.get("generator", ""), "text_pois": len(text.get("poi_ids", [])),
        "missing": ",".join(f"{m}:{r}" for m, r in sorted(sample.get("missing_members", {}).items())),
    }


@dataclass(eq=False)
class RenderSamples(beam.PTransform):
    """``(SampleKey, sample json)`` -> ``EncodedSample`` with crops and tiles; ``ledger`` rows for the
    selected panoramas (kept, or rejected when their image fails) and ``rejects``."""

    opts: ImageryOptions | None  # None: location stages only, samples hold their json alone
    seed: int
    holdout_year: int
    years: tuple[int, int]
    aerial: list[tuple[str, str]]  # (path, ISO date)
    dsm: list[tuple[str, str]]
    text: TextOptions = TextOptions()
    pois: PoiColumns = PoiColumns()

    def __post_init__(self) -> None:
        super().__init__()

    def expand(self, samples: Any) -> Any:
        return samples | "Render" >> beam.ParDo(
            _RenderSample(self.opts, self.seed, self.holdout_year, self.years, self.aerial, self.dsm, self.text,
                          self.pois)
        ).with_outputs(LEDGER, REJECTS, SUMMARY, main="encoded")
