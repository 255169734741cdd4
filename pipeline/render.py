"""One sample rendered from its selected panoramas: crops, aerial and DSM tiles, text, and what to record.

``SampleRenderer.render`` is the imagery stage's whole logic as a plain function of a sample: it
returns a ``SampleOutcome`` (the encoded sample, ledger rows for the selected panoramas, rejects, the
samples-table row and counter increments) that the Beam DoFn in ``pipeline.imagery`` only emits. A
panorama that is missing or does not decode is rejected; a tile that cannot be made is left out with
a reason and the sample keeps its other members; a cell whose panoramas all fail yields no sample.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import cv2
import numpy as np
from PIL import Image
from rasterio.errors import RasterioIOError
from threadpoolctl import threadpool_limits

from unigeo.core import reasons
from unigeo.core.fileio import is_url, read_bytes, source_path
from unigeo.core.sample import (
    KEPT,
    REJECTED,
    SPLITS,
    TEXT,
    TILE_ENCODINGS,
    TILE_MEMBERS,
    CropMeta,
    LedgerRow,
    PanoramaMeta,
    Reject,
    SampleKey,
    SampleMeta,
    TileMeta,
    capture_year,
    crop_member,
    encode_tile,
    summary_row,
)
from unigeo.pipeline.crops import PanoramaError, crop_params, render_crops
from unigeo.pipeline.options import ImageryOptions
from unigeo.pipeline.shards import EncodedSample, encode_sample
from unigeo.pipeline.text import PoiIndex, TextGenerator, place_facts
from unigeo.pipeline.tiles import Epoch, epochs_for_split, tile_grid
from unigeo.sources.tiles import Grid, RasterFile, RasterStack

log = logging.getLogger(__name__)

Count = tuple[str, str, int]  # (stage, counter, increment)
# Read errors that retrying cannot cure: the panorama is rejected. Any other OSError (a connection reset,
# a timeout, an object store's 5xx) is retried here, then raised so that the runner retries the bundle.
PERMANENT_READ_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
READ_TRIES = 4
READ_BACKOFF_S = 0.2  # doubled after each failed try


def read_with_retry(read: Callable[[str], bytes], uri: str, tries: int = READ_TRIES,
                    backoff_s: float = READ_BACKOFF_S) -> bytes:
    """``read(uri)``, tried up to ``tries`` times on transient errors.

    Raises:
        FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError: at once, never retried.
        OSError: the last transient error once every try failed (the runner retries the bundle).
    """
    for attempt in range(tries):
        try:
            return read(uri)
        except PERMANENT_READ_ERRORS:
            raise
        except OSError as e:
            if attempt == tries - 1:
                raise
            log.warning("reading %s failed (%s); try %d of %d", uri, e, attempt + 2, tries)
            time.sleep(backoff_s * 2**attempt)
    raise AssertionError("unreachable")


def transient_raster_error(path: str, error: RasterioIOError) -> bool:
    """True for a raster read error worth retrying: a remote file whose request failed (HTTP, timeout)."""
    text = str(error).lower()
    return is_url(path) and any(w in text for w in ("http", "curl", "timed out", "timeout", "connection"))


class Failure(NamedTuple):
    """Why a panorama or a tile could not be made."""

    reason: str
    detail: str


@dataclass
class SampleOutcome:
    """Everything the imagery stage emits for one sample."""

    encoded: EncodedSample | None = None  # None when no panorama of the cell could be used
    ledger: list[LedgerRow] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    counts: list[Count] = field(default_factory=list)

    def reject(self, stage: str, r: Reject) -> None:
        self.rejects.append(r)
        self.counts.append((stage, f"rejected/{r.reason}", 1))


class SampleRenderer:
    """What one worker needs to render samples: options, rasters opened once, POIs, a text generator.

    Args:
        opts: crop and tile settings; None renders location-only samples (json alone, no image read).
        aerial, dsm: every raster of each kind, by its footprint (opened only when a tile needs it).
        pois: the POI index (None: texts without POIs).
        read: how a panorama's bytes are read (a missing file raises ``FileNotFoundError``/``OSError``).
    """

    def __init__(self, opts: ImageryOptions | None, seed: int, holdout_year: int, years: tuple[int, int],
                 aerial: Sequence[RasterFile], dsm: Sequence[RasterFile], generator: TextGenerator,
                 text_radius_m: float, text_max_pois: int, pois: PoiIndex | None,
                 read: Callable[[str], bytes] = read_bytes, source_root: str | None = None) -> None:
        self.opts = opts
        self.source_root = source_root  # input paths in the json are relative to it (the config's folder)
        self.seed = seed
        self.generator = generator
        self.text_radius_m = text_radius_m
        self.text_max_pois = text_max_pois
        self.pois = pois
        self.read = read
        self.rasters = {"aerial": list(aerial), "dsm": list(dsm)}
        self.dates = {kind: {f.path: f.date for f in files} for kind, files in self.rasters.items()}
        self.epochs: dict[tuple[str, str], list[Epoch]] = {}
        for kind, files in self.rasters.items():
            dated = [(f.path, dt.date.fromisoformat(f.date)) for f in files]
            for split in SPLITS:
                self.epochs[kind, split] = epochs_for_split(dated, split, holdout_year, years)
        self.stacks: dict[str, RasterStack] = {}
        if opts is not None:
            Image.MAX_IMAGE_PIXELS = opts.max_pixels
            # Beam runs one work item per harness thread; OpenCV's pool and OpenBLAS's threads beside it
            # only spin (OpenBLAS's busy-wait after each small matrix product made CPU time 1.3-2x the
            # wall time of a busy thread), so both run on the calling thread.
            cv2.setNumThreads(1)
            threadpool_limits(1, user_api="blas")
            self.stacks = {kind: RasterStack(files, kind) for kind, files in self.rasters.items()}

    def close(self) -> None:
        for stack in self.stacks.values():
            stack.close()

    # ------------------------------------------------------------ parts

    def panorama(self, pano: PanoramaMeta, first_member: int
                 ) -> tuple[list[tuple[str, bytes]], list[CropMeta]] | Failure:
        """The crops of one panorama as members, or why it cannot be used."""
        assert self.opts is not None
        params = [crop_params(self.seed, pano["pano_id"], i, self.opts.pitch_range, self.opts.fov_range)
                  for i in range(self.opts.crops_per_pano)]
        try:
            jpeg = read_with_retry(self.read, pano["uri"])
        except (FileNotFoundError, ValueError) as e:  # ValueError: a URI no filesystem knows (unknown protocol)
            return Failure(reasons.MISSING_FILE, f"cannot open {pano['uri']}: {e}")
        except PERMANENT_READ_ERRORS as e:
            return Failure(reasons.UNREADABLE_FILE, f"cannot read {pano['uri']}: {e}")
        try:
            crops = render_crops(jpeg, pano["heading_deg"], params, self.opts.crop_px, self.opts.jpeg_quality,
                                 self.opts.max_pixels)
        except PanoramaError as e:
            return Failure(e.reason, f"{pano['uri']}: {e}")
        except (OSError, ValueError, SyntaxError) as e:
            return Failure(reasons.CORRUPT_JPEG, f"{pano['uri']}: {e}")
        members: list[tuple[str, bytes]] = []
        meta: list[CropMeta] = []
        for i, (p, data) in enumerate(zip(params, crops)):
            name = crop_member(first_member + i)
            members.append((name, data))
            meta.append({"member": name, **p.as_json()})  # type: ignore[typeddict-item]
        return members, meta

    def tile(self, kind: str, split: str, grid: Grid, counts: list[Count] | None = None
             ) -> tuple[np.ndarray, TileMeta] | Failure:
        """The ``kind`` tile of a sample on ``grid`` from the first epoch its split may use that covers it;
        DSM sentinel pixels read as nodata are added to ``counts``."""
        counts = [] if counts is None else counts
        assert self.opts is not None
        epochs = self.epochs[kind, split]
        if not epochs:
            return Failure(reasons.TILE_NO_IMAGERY, f"no {kind} raster of a year the {split} split may use")
        best = Failure(reasons.TILE_NO_COVERAGE, f"no {kind} raster reaches the tile")
        for epoch in epochs:
            try:
                read = self.stacks[kind].read(list(epoch.paths), grid)
            except RasterioIOError as e:
                if any(transient_raster_error(p, e) for p in epoch.paths):
                    raise
                best = Failure(reasons.TILE_UNREADABLE, f"{kind} {epoch.year} {list(epoch.paths)}: {e}")
                continue
            if read is None:
                continue
            data, valid, sentinels, files = read
            if sentinels:
                counts.append(("imagery", f"{kind}_sentinel_pixels", sentinels))
            nodata = float(1.0 - valid.mean())
            if nodata > self.opts.max_nodata:
                best = Failure(reasons.TILE_NODATA,
                               f"{kind} {epoch.year}: nodata {nodata:.2f} > {self.opts.max_nodata}")
                continue
            meta: TileMeta = {"member": TILE_MEMBERS[kind], "year": epoch.year,
                              "files": [source_path(p, self.source_root) for p in files],
                              "dates": [self.dates[kind][p] for p in files], "crs": grid.crs,
                              "gsd": self.opts.gsd, "size": grid.size, "transform": list(grid.transform),
                              "nodata_fraction": round(nodata, 4)}
            return data, meta
        return best

    # ------------------------------------------------------------ a sample

    def render(self, key: SampleKey, sample: SampleMeta) -> SampleOutcome:
        """Render one sample from its json (the selected panoramas, in selection order)."""
        out = SampleOutcome()
        if self.opts is None:  # location stages only: no image is opened
            out.ledger = [LedgerRow(p["row"], p["pano_id"], key.metro, key.cell, key.split, KEPT, "", "",
                                    capture_year(p["captured_at"])) for p in sample["panoramas"]]
            sample = {**sample, "panoramas": [{**p, "uri": source_path(p["uri"], self.source_root)}
                                              for p in sample["panoramas"]]}
            out.summary = summary_row(sample, 0)
            out.encoded = encode_sample(key.metro, key.split, key.name, {"json": sample})
            return out
        members: list[tuple[str, bytes]] = []
        kept: list[PanoramaMeta] = []
        for pano in sample["panoramas"]:
            result = self.panorama(pano, len(members))
            row = (pano["row"], pano["pano_id"], key.metro, key.cell, key.split)
            year = capture_year(pano["captured_at"])
            if isinstance(result, Failure):
                out.reject("imagery", Reject("panorama", pano["pano_id"], result.reason, result.detail, dict(pano),
                                             pano["row"], key.metro, key.cell))
                out.ledger.append(LedgerRow(*row, REJECTED, result.reason, result.detail, year))
                continue
            crop_members, crop_meta = result
            members += crop_members
            kept.append({**pano, "uri": source_path(pano["uri"], self.source_root), "crops": crop_meta})
            out.ledger.append(LedgerRow(*row, KEPT, "", "", year))
        if not kept:
            out.reject("imagery", Reject("cell", key.name, reasons.NO_USABLE_PANORAMA, "every selected panorama failed",
                                         {"cell": key.cell, "split": key.split}, -1, key.metro, key.cell))
            return out
        out.counts.append(("imagery", "crops", len(members)))
        meta: SampleMeta = {**sample, "panoramas": kept,
                            "crop": {"px": self.opts.crop_px, "quality": self.opts.jpeg_quality}}
        grid = tile_grid(meta["lat"], meta["lon"], self.opts.gsd, self.opts.tile_px)
        missing: dict[str, str] = {}
        arrays: dict[str, np.ndarray] = {}
        for kind in ("aerial", "dsm"):  # literal keys of the typed sample json
            member = TILE_ENCODINGS[self.opts.tile_encoding][kind]
            tile = self.tile(kind, key.split, grid, out.counts)
            if isinstance(tile, Failure):
                missing[member] = tile.reason
                meta[kind] = None
                out.reject("imagery", Reject("tile", f"{key.name}/{member}", tile.reason, tile.detail,
                                             {"cell": key.cell, "split": key.split, "member": member}, -1,
                                             key.metro, key.cell))
                continue
            data, tile_meta = tile
            arrays[kind] = data
            member, encoded, encoding = encode_tile(kind, data, self.opts.tile_encoding)
            members.append((member, encoded))
            tile_meta["member"] = member
            if encoding:
                tile_meta["encoding"] = encoding
            meta[kind] = tile_meta
            out.counts.append(("imagery", f"tiles/{kind}", 1))
        facts = place_facts(key.metro, meta["lat"], meta["lon"], self.pois, self.text_radius_m, self.text_max_pois,
                            arrays.get("aerial"), arrays.get("dsm"))
        description = self.generator.describe(facts, self.seed, key.name)
        if description.failure:
            out.reject("text", Reject("text", f"{key.name}/{TEXT}", reasons.TEXT_ENDPOINT_FAILED, description.failure,
                                      {"cell": key.cell, "split": key.split}, -1, key.metro, key.cell))
        out.counts.append(("text", str(description.provenance["generator"]), 1))
        members.append((TEXT, description.text.encode("utf-8")))
        meta["text"] = {**description.provenance, "neighbourhood": facts.neighbourhood,  # type: ignore[typeddict-item]
                        "radius_m": facts.radius_m}
        meta["missing_members"] = missing
        out.summary = summary_row(meta, len(members), dict(members))
        out.encoded = encode_sample(key.metro, key.split, key.name, {"json": meta, **dict(members)})
        return out
