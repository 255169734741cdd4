"""Element types of the build job that are not part of the output format (those live in
``unigeo.core.sample``): small, immutable, picklable."""

from __future__ import annotations

from typing import NamedTuple

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
