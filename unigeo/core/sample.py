"""The sample format: what a build writes and what audit, report and the trainer read.

One place for the member names of a WebDataset sample, its key, the typed metadata of its ``json``
member (published as ``sample.schema.json`` beside this module), the Arrow schemas of the ledger,
cells and samples tables, the record types of ledger and rejects, and the capture-year rule.
Beam-free, so a trainer or an auditor can import it without the build's dependencies.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple, TypedDict

import numpy as np
import pyarrow as pa

# ---------------------------------------------------------------- splits and statuses

TRAIN, TEST = "train", "test"
SPLITS = (TRAIN, TEST)
KEPT, NOT_SELECTED, REJECTED = "kept", "not_selected", "rejected"
STATUSES = (KEPT, NOT_SELECTED, REJECTED)

# ---------------------------------------------------------------- members

JSON = "json"
TEXT = "txt"
AERIAL = "aerial.png"
DSM = "dsm.npy"
AERIAL_WEBP = "aerial.webp"  # lossless WebP: the compact tile encoding
DSM_PNG = "dsm.png"  # 16-bit grey PNG of centimetres above an offset: the compact tile encoding
CROP_PREFIX = "sv."
CROP_KIND = "sv.jpg"  # how crops are counted in shard stats and the manifest
TILE_MEMBERS = {"aerial": AERIAL, "dsm": DSM}  # tile kind -> member of the standard encoding
# ``--tile-encoding``: the member each tile kind is written as. ``standard`` is the contract's
# (aerial.png, dsm.npy float32); ``compact`` stores the same pixels losslessly in about a third of the bytes
# (aerial.webp lossless, dsm.png of centimetres; a DSM whose range does not fit 16 bits stays dsm.npy).
TILE_ENCODINGS = {"standard": TILE_MEMBERS, "compact": {"aerial": AERIAL_WEBP, "dsm": DSM_PNG}}
KIND_MEMBERS = {"aerial": (AERIAL, AERIAL_WEBP), "dsm": (DSM, DSM_PNG)}  # every member a tile kind may be
# Member kinds: what a reader asks a sample for, whatever the build's encoding named the file. Each kind lists
# the member kinds (as shard stats and the manifest count them, crops under ``sv.jpg``) that hold it.
MEMBER_KINDS: dict[str, tuple[str, ...]] = {"sv": (CROP_KIND,), **KIND_MEMBERS, "text": (TEXT,), "json": (JSON,)}
# What each member holds: the sample-format reference page is generated from this table.
MEMBER_DOCS = {
    f"{CROP_PREFIX}000.jpg, {CROP_PREFIX}001.jpg, ...": "street-view crops (RGB JPEG, --crop-px square), one per "
                                                       "crop the json lists, in selection order",
    AERIAL: "aerial tile (RGB PNG, --tile-px square, north-up in the cell centre's UTM zone, --gsd metres a pixel)",
    DSM: "surface height tile (float32 .npy, metres, NaN where unknown), on the aerial tile's grid",
    AERIAL_WEBP: "with --tile-encoding compact: the aerial tile as lossless WebP (identical RGB)",
    DSM_PNG: "with --tile-encoding compact: the DSM as 16-bit grey PNG of centimetres above the json's "
             "dsm.encoding.offset_m (0 = unknown)",
    TEXT: "the place's description (UTF-8)",
    JSON: "metadata: the cell, split, dates, every kept panorama with its crops, the tiles' sources and grids, "
          "the text's provenance (fields below; JSON Schema: unigeo/core/sample.schema.json)",
}
# The trainer's modality names (CLI, logs, metrics) and the members each is read from.

SCHEMA_PATH = Path(__file__).with_name("sample.schema.json")


def member_names(kind: str, members: Iterable[str] = ()) -> str:
    """How a message names a member kind: the files of that kind among ``members`` (crops as ``sv.jpg``), else
    every file the kind may be."""
    present = sorted({member_kind(m) for m in members} & set(MEMBER_KINDS[kind]))
    return " or ".join(present or MEMBER_KINDS[kind])


def kind_count(counts: dict[str, int], kind: str) -> int:
    """How many members of ``kind`` (a ``MEMBER_KINDS`` key) a table of counts per member kind holds."""
    return sum(int(counts.get(member, 0)) for member in MEMBER_KINDS[kind])


def crop_member(index: int) -> str:
    """The member name of a sample's ``index``-th crop: ``sv.000.jpg``, ``sv.001.jpg``, ..."""
    return f"{CROP_PREFIX}{index:03d}.jpg"


def is_crop(member: str) -> bool:
    return member.startswith(CROP_PREFIX)


def member_kind(member: str) -> str:
    """Crops count under one kind (``sv.jpg``); every other member is its own kind."""
    return CROP_KIND if is_crop(member) else member


def sample_key(cell: str, split: str) -> str:
    """The WebDataset ``__key__``: cell token plus split (no dots, so extensions parse)."""
    return f"{cell}_{split}"


def keys_sha256(keys: Iterable[str]) -> str:
    """SHA-256 of a set of sample keys (sorted, one per line): what a shard plan gave a shard or a split,
    what a shard holds and what the ledger kept compare through it without listing the keys."""
    h = hashlib.sha256()
    for key in sorted(keys):
        h.update(key.encode())
        h.update(b"\n")
    return h.hexdigest()


def parse_key(key: str) -> tuple[str, str]:
    """``(cell, split)`` of a sample key.

    Raises:
        ValueError: the key is not ``{cell}_{split}``.
    """
    cell, _, split = key.rpartition("_")
    if not cell or split not in SPLITS:
        raise ValueError(f"sample key {key!r} is not '{{cell token}}_{{train|test}}'")
    return cell, split


class SampleKey(NamedTuple):
    """One sample: one S2 cell of one metro in one split."""

    metro: str
    cell: str  # S2 cell token
    split: str

    @property
    def name(self) -> str:
        return sample_key(self.cell, self.split)


# ---------------------------------------------------------------- capture dates

# ISO-8601 date or date-time; the year is that of the local date as written (no time-zone shift).
CAPTURE_DATE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
    r"(?:Z|[+-]\d{2}:?\d{2})?$"
)


def capture_year(captured_at: Any) -> int:
    """The year of a ``captured_at`` value when it is a valid ISO date or date-time, else -1.

    The year is that of the date as written (local time, no time-zone shift): the rule the split uses.
    """
    m = CAPTURE_DATE.match(str(captured_at or "").strip())
    if not m:
        return -1
    try:
        return dt.date.fromisoformat(m["date"]).year
    except ValueError:  # e.g. 2021-02-30
        return -1


# ---------------------------------------------------------------- the json member


class CropMeta(TypedDict):
    member: str
    yaw: float  # compass bearing of the optical axis, degrees
    pitch: float  # degrees above the horizon
    fov: float  # horizontal field of view, degrees


class _PanoramaBase(TypedDict):
    pano_id: str
    row: int  # position in the input index
    lat: float
    lon: float
    heading_deg: float
    captured_at: str
    uri: str


class PanoramaMeta(_PanoramaBase, total=False):
    crops: list[CropMeta]  # absent in builds without imagery


class _TileBase(TypedDict):
    member: str
    year: int
    files: list[str]
    dates: list[str]
    crs: str
    gsd: float
    size: int
    transform: list[float]  # affine (a, b, c, d, e, f) of the tile grid
    nodata_fraction: float


class TileMeta(_TileBase, total=False):
    encoding: dict[str, float]  # dsm.png: {"unit_m": 0.01, "offset_m": ..., "nodata": 0}


class _TextBase(TypedDict):
    generator: str
    version: str
    poi_ids: list[str]
    prompt_sha256: str
    neighbourhood: str
    radius_m: float


class TextMeta(_TextBase, total=False):
    model: str
    fallback_from: str


class _SampleBase(TypedDict):
    key: str
    cell: str
    level: int
    lat: float
    lon: float
    metro: str
    split: str
    dates: dict[str, str]  # first, last capture date of the kept panoramas
    years: list[int]
    panoramas_in_cell: int
    panoramas: list[PanoramaMeta]


class SampleMeta(_SampleBase, total=False):
    crop: dict[str, int]  # px, quality
    aerial: TileMeta | None
    dsm: TileMeta | None
    text: TextMeta
    missing_members: dict[str, str]  # member -> reason it was left out


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a sample's ``json`` member."""
    return dict(json.loads(SCHEMA_PATH.read_text()))


def crop_members(meta: SampleMeta) -> list[str]:
    """The crop members a sample's json lists, in order."""
    return [c["member"] for p in meta["panoramas"] for c in p.get("crops", [])]


# ---------------------------------------------------------------- member encodings


# Lossless WebP effort: method 0 is within 8 % of method 6's bytes at 1/500 of its time (2.6 ms a 256-px
# tile here, against 13 ms for the PNG it replaces).
AERIAL_WEBP_METHOD, AERIAL_WEBP_EFFORT = 0, 50
DSM_UNIT_M = 0.01  # dsm.png stores centimetres
DSM_PNG_NODATA = 0  # dsm.png value of an unknown height; heights are 1 + cm above the offset
DSM_PNG_TEXT = "unigeo-dsm"  # the PNG text chunk that repeats the encoding, so the member decodes alone


def tile_member(members: Any, kind: str) -> str | None:
    """The member that holds a sample's ``kind`` tile (``aerial`` or ``dsm``), whichever encoding it has."""
    return next((m for m in KIND_MEMBERS[kind] if m in members), None)


def decode_aerial(data: bytes) -> np.ndarray:
    """``aerial.png`` or ``aerial.webp`` -> (H, W, 3) uint8 (as stored: a build writes RGB)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB") if img.mode != "RGB" else img)


def decode_dsm(data: bytes) -> np.ndarray:
    """``dsm.npy`` or ``dsm.png`` -> (H, W) float32 metres, NaN where unknown.

    Raises:
        ValueError: a PNG that is not a UniGeo DSM (16-bit grey with its encoding chunk).
    """
    if not data.startswith(b"\x89PNG"):
        return np.load(io.BytesIO(data), allow_pickle=False)
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        text = getattr(img, "text", {}).get(DSM_PNG_TEXT)
        if img.mode not in ("I;16", "I") or text is None:
            raise ValueError(f"a {img.mode} PNG without the {DSM_PNG_TEXT} chunk is not a UniGeo DSM")
        cm = np.asarray(img).astype(np.int64)
    encoding = json.loads(text)
    heights = (encoding["offset_m"] + (cm - 1) * encoding["unit_m"]).astype(np.float32)
    return np.where(cm == encoding["nodata"], np.float32(np.nan), heights)


def encode_dsm(dsm: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, dsm.astype(np.float32), allow_pickle=False)
    return buf.getvalue()


def encode_dsm_png(dsm: np.ndarray) -> tuple[bytes, dict[str, float]] | None:
    """A DSM as 16-bit centimetres above its lowest height (rounded to 1 cm) and the encoding, or None
    when its range does not fit (over 655.34 m within one tile)."""
    from PIL import Image, PngImagePlugin

    valid = np.isfinite(dsm)
    offset = round(float(np.floor(dsm[valid].min() / DSM_UNIT_M)) * DSM_UNIT_M, 2) if valid.any() else 0.0
    cm = np.rint((np.where(valid, dsm, offset).astype(np.float64) - offset) / DSM_UNIT_M) + 1
    if cm.max() > np.iinfo(np.uint16).max:
        return None
    encoding = {"unit_m": DSM_UNIT_M, "offset_m": offset, "nodata": DSM_PNG_NODATA}
    info = PngImagePlugin.PngInfo()
    info.add_text(DSM_PNG_TEXT, json.dumps(encoding, sort_keys=True))
    buf = io.BytesIO()
    Image.fromarray(np.where(valid, cm, DSM_PNG_NODATA).astype(np.uint16)).save(buf, format="PNG", pnginfo=info,
                                                                                compress_level=6)
    return buf.getvalue(), encoding


def thumbnail_jpeg(rgb: np.ndarray, px: int) -> bytes:
    """An RGB image shrunk to fit ``px`` x ``px`` (aspect kept), as a JPEG for the pages that show samples."""
    from PIL import Image

    img = Image.fromarray(rgb)
    img.thumbnail((px, px))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def encode_aerial(rgb: np.ndarray, encoding: str) -> bytes:
    """An aerial tile as PNG (``standard``) or lossless WebP (``compact``)."""
    from PIL import Image

    buf = io.BytesIO()
    if encoding == "compact":
        Image.fromarray(rgb).save(buf, format="WEBP", lossless=True, method=AERIAL_WEBP_METHOD,
                                  quality=AERIAL_WEBP_EFFORT)
    else:
        Image.fromarray(rgb).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def encode_tile(kind: str, data: np.ndarray, encoding: str) -> tuple[str, bytes, dict[str, float] | None]:
    """(member, bytes, encoding for the json or None) of a tile in ``encoding`` (a ``TILE_ENCODINGS`` key)."""
    if kind == "aerial":
        return TILE_ENCODINGS[encoding]["aerial"], encode_aerial(data, encoding), None
    if encoding == "compact":
        png = encode_dsm_png(data)
        if png is not None:
            return DSM_PNG, png[0], png[1]
    return DSM, encode_dsm(data), None


# ---------------------------------------------------------------- ledger, rejects, tables


class LedgerRow(NamedTuple):
    """What became of one input panorama row."""

    row: int
    pano_id: str
    metro: str
    cell: str
    split: str
    status: str
    reason: str
    detail: str = ""
    year: int = -1  # capture year where the row has a readable date


class Reject(NamedTuple):
    """A rejected record of any kind (``panorama``, ``tile``, ``poi``, ``cell``, ``text``) with its reason."""

    kind: str
    id: str
    reason: str
    detail: str
    record: dict[str, Any]
    row: int = -1  # input row, for records that have one
    metro: str = ""  # where known when the record was rejected
    cell: str = ""

    def as_json(self) -> str:
        """One line of ``DIR/rejects/*.jsonl``."""
        return json.dumps(self._asdict(), sort_keys=True, ensure_ascii=False)


LEDGER_SCHEMA = pa.schema([("row", pa.int64()), ("pano_id", pa.string()), ("metro", pa.string()),
                           ("cell", pa.string()), ("split", pa.string()), ("status", pa.string()),
                           ("reason", pa.string()), ("detail", pa.string()), ("year", pa.int64())])
CELLS_SCHEMA = pa.schema([("metro", pa.string()), ("cell", pa.string()), ("lat", pa.float64()),
                          ("lon", pa.float64())])
# One row per sample (DIR/samples): where it is and which members it has; feeds the report.
SAMPLES_SCHEMA = pa.schema([
    ("metro", pa.string()), ("cell", pa.string()), ("split", pa.string()), ("lat", pa.float64()),
    ("lon", pa.float64()), ("panoramas", pa.int64()), ("panoramas_in_cell", pa.int64()), ("crops", pa.int64()),
    ("members", pa.int64()), ("aerial", pa.bool_()), ("aerial_year", pa.int64()), ("aerial_nodata", pa.float64()),
    ("dsm", pa.bool_()), ("dsm_year", pa.int64()), ("dsm_nodata", pa.float64()), ("tile_crs", pa.string()),
    ("tile_gsd", pa.float64()), ("text", pa.string()), ("text_pois", pa.int64()), ("missing", pa.string()),
    # The first 16 hex digits of the SHA-256 of the aerial, DSM and text members ("" without one): the report
    # compares a test sample's bytes with its cell's train sample's (leakage between the splits).
    ("aerial_sha", pa.string()), ("dsm_sha", pa.string()), ("text_sha", pa.string())])
DIGEST_COLUMNS = {"aerial": "aerial_sha", "dsm": "dsm_sha", TEXT: "text_sha"}  # member kind -> samples column


def member_digest(data: bytes) -> str:
    """The digest the samples table keeps of a member: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(data).hexdigest()[:16]


def summary_row(meta: SampleMeta, n_members: int, members: dict[str, bytes] | None = None) -> dict[str, Any]:
    """The samples-table row of a sample, from its json (and its members' bytes, for their digests)."""
    members = members or {}
    digests = {}
    for kind, column in DIGEST_COLUMNS.items():
        member = TEXT if kind == TEXT else tile_member(members, kind)
        digests[column] = member_digest(members[member]) if member is not None and member in members else ""
    aerial, dsm, text = meta.get("aerial"), meta.get("dsm"), meta.get("text")
    tile = aerial or dsm
    return {
        "metro": meta["metro"], "cell": meta["cell"], "split": meta["split"], "lat": meta["lat"], "lon": meta["lon"],
        "panoramas": len(meta["panoramas"]), "panoramas_in_cell": meta["panoramas_in_cell"],
        "crops": len(crop_members(meta)), "members": n_members,
        "aerial": aerial is not None, "aerial_year": aerial["year"] if aerial else -1,
        "aerial_nodata": aerial["nodata_fraction"] if aerial else float("nan"),
        "dsm": dsm is not None, "dsm_year": dsm["year"] if dsm else -1,
        "dsm_nodata": dsm["nodata_fraction"] if dsm else float("nan"),
        "tile_crs": tile["crs"] if tile else "", "tile_gsd": float(tile["gsd"]) if tile else 0.0,
        "text": text["generator"] if text else "", "text_pois": len(text["poi_ids"]) if text else 0,
        "missing": ",".join(f"{m}:{r}" for m, r in sorted(meta.get("missing_members", {}).items())),
        **digests,
    }
