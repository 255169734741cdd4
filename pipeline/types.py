"""Element types shared by the pipeline's transforms: small, immutable, with deterministic coders."""

from __future__ import annotations

from typing import Any, NamedTuple

import apache_beam as beam

TRAIN, TEST = "train", "test"
SPLITS = (TRAIN, TEST)
KEPT, NOT_SELECTED, REJECTED = "kept", "not_selected", "rejected"
STATUSES = (KEPT, NOT_SELECTED, REJECTED)


class SampleKey(NamedTuple):
    """One sample: one S2 cell of one metro in one split."""

    metro: str
    cell: str  # S2 cell token
    split: str

    @property
    def name(self) -> str:
        """The WebDataset ``__key__``: cell token plus split (no dots, so extensions parse)."""
        return f"{self.cell}_{self.split}"


class SampleKeyCoder(beam.coders.Coder):
    """Deterministic coder for ``SampleKey`` (GroupByKey needs one)."""

    def encode(self, value: SampleKey) -> bytes:
        return "\x00".join(value).encode("utf-8")

    def decode(self, encoded: bytes) -> SampleKey:
        return SampleKey(*encoded.decode("utf-8").split("\x00"))

    def is_deterministic(self) -> bool:
        return True

    def to_type_hint(self) -> Any:
        return SampleKey


beam.coders.registry.register_coder(SampleKey, SampleKeyCoder)


class Pano(NamedTuple):
    """A panorama index row that passed validation."""

    row: int  # position in the input index: the ledger's identity of the row
    pano_id: str
    lat: float
    lon: float
    heading_deg: float
    captured_at: str
    year: int
    uri: str

    def as_json(self) -> dict[str, Any]:
        return {"pano_id": self.pano_id, "row": self.row, "lat": self.lat, "lon": self.lon,
                "heading_deg": self.heading_deg, "captured_at": self.captured_at, "uri": self.uri}


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


def capture_year(record: dict[str, Any]) -> int:
    """The year of a record's ``captured_at`` when it starts with one, else -1."""
    text = str(record.get("captured_at") or "")
    return int(text[:4]) if len(text) >= 4 and text[:4].isdigit() else -1


class Reject(NamedTuple):
    """A rejected record of any kind (``panorama``, ``tile``, ``poi``, ``cell``) with its reason."""

    kind: str
    id: str
    reason: str
    detail: str
    record: dict[str, Any]
    row: int = -1  # input row, for records that have one
    metro: str = ""  # where known when the record was rejected
    cell: str = ""
