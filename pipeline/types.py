"""Element types of the build job that are not part of the output format (those live in
``unigeo.core.sample``): small, immutable, picklable."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from unigeo.core.sample import PanoramaMeta


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

    def as_json(self) -> PanoramaMeta:
        return {"pano_id": self.pano_id, "row": self.row, "lat": self.lat, "lon": self.lon,
                "heading_deg": self.heading_deg, "captured_at": self.captured_at, "uri": self.uri}


# Rejects and ledger rows travel between stages as batches of plain tuples (the fields of ``Reject`` /
# ``LedgerRow``): Beam encodes plain tuples natively, named tuples by pickling, 3x slower.
RowBatch = list[tuple[Any, ...]]


def rows(records: Iterable[tuple[Any, ...]]) -> RowBatch:
    """Named tuples (``Reject``, ``LedgerRow``) as the plain tuples batches carry."""
    return [tuple(r) for r in records]
