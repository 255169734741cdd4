"""Panorama index: a Parquet or CSV table with one row per street-level 360-degree panorama.

Columns: ``pano_id, lat, lon, heading_deg, captured_at, uri``. ``heading_deg`` is the compass bearing
of the panorama's centre column; ``captured_at`` an ISO-8601 date or date-time; ``uri`` the JPEG,
relative to the index file's folder or absolute or a URL. Extra columns are kept.

Validation is vectorised (a million rows take about a second) and never raises for a bad row: each
input row comes back either in ``good`` or in ``rejects`` with a reason from ``unigeo.reasons``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sources.fileio import open_binary, parent, resolve
from unigeo import reasons
from unigeo.errors import SourceError

REQUIRED_COLUMNS = ("pano_id", "lat", "lon", "heading_deg", "captured_at", "uri")
REJECT_COLUMNS = ("row", "pano_id", "reason", "detail")
_DATE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
    r"(?:Z|[+-]\d{2}:?\d{2})?$"
)


@dataclass(frozen=True)
class PanoramaTable:
    """The validated index.

    Attributes:
        good: one row per usable panorama: ``row`` (0-based position in the input), the required
            columns (``captured_at`` as written, ``uri`` resolved), ``year`` (int) and any extra columns.
        rejects: one row per rejected input row: ``row, pano_id, reason, detail``.
    """

    good: pd.DataFrame
    rejects: pd.DataFrame

    @property
    def n_input(self) -> int:
        return len(self.good) + len(self.rejects)


def read_panorama_index(path: str) -> PanoramaTable:
    """Read and validate a panorama index.

    Raises:
        SourceError: the file cannot be read, or a required column is missing.
    """
    try:
        with open_binary(path) as f:
            if path.lower().endswith(".csv"):
                df = pd.read_csv(f, dtype=str, keep_default_na=False, na_values=[""])
            elif path.lower().endswith((".parquet", ".pq")):
                df = pd.read_parquet(f)
            else:
                raise SourceError(path, "unknown panorama index format", "use a .parquet or .csv file")
    except SourceError:
        raise
    except FileNotFoundError as e:
        raise SourceError(path, "panorama index not found") from e
    except Exception as e:  # pyarrow/pandas parser errors
        raise SourceError(path, f"cannot read panorama index: {e}") from e
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise SourceError(path, f"missing columns {missing}; found {list(df.columns)}",
                          f"the index needs columns {list(REQUIRED_COLUMNS)}")
    return validate_panoramas(df, base_dir=parent(path))


def _text(series: pd.Series) -> pd.Series:
    """Values as stripped strings, with missing values as ''."""
    out = series.astype(object).where(series.notna(), "")
    return out.map(lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v)).str.strip()


def parse_capture_dates(values: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Parse ``captured_at`` values.

    Returns:
        (text, year, status): ISO text as written (or made from a timestamp), the year of the local
        date as written (no time-zone shift), and per row ``""``, ``missing_date`` or ``bad_date``.
    """
    text = _text(values)
    m = text.str.extract(_DATE)["date"]
    day = pd.to_datetime(m, format="%Y-%m-%d", errors="coerce")
    status = pd.Series("", index=values.index, dtype=object)
    status[day.isna()] = reasons.BAD_DATE
    status[text == ""] = reasons.MISSING_DATE
    year = day.dt.year.fillna(-1).astype(np.int64)
    return text, year, status


def validate_panoramas(df: pd.DataFrame, base_dir: str = ".") -> PanoramaTable:
    """Validate index rows; see the module docstring. ``base_dir`` resolves relative URIs."""
    df = df.reset_index(drop=True)
    n = len(df)
    reason = pd.Series("", index=df.index, dtype=object)
    detail = pd.Series("", index=df.index, dtype=object)

    def flag(mask: pd.Series, code: str, what: pd.Series | str) -> None:
        mask = mask & (reason == "")
        reason[mask] = code
        detail[mask] = what[mask] if isinstance(what, pd.Series) else what

    pano_id = _text(df["pano_id"])
    lat = pd.to_numeric(df["lat"], errors="coerce").astype(float)
    lon = pd.to_numeric(df["lon"], errors="coerce").astype(float)
    heading = pd.to_numeric(df["heading_deg"], errors="coerce").astype(float)
    captured, year, date_status = parse_capture_dates(df["captured_at"])
    uri = _text(df["uri"])

    flag(pano_id == "", reasons.MISSING_PANO_ID, "pano_id is empty")
    flag(~lat.between(-90, 90), reasons.BAD_LAT, "lat=" + _text(df["lat"]))
    flag(~lon.between(-180, 180), reasons.BAD_LON, "lon=" + _text(df["lon"]))
    flag((lat == 0) & (lon == 0), reasons.NULL_ISLAND, "lat=0 lon=0 is a placeholder position")
    flag(heading.isna(), reasons.BAD_HEADING, "heading_deg=" + _text(df["heading_deg"]))
    flag((heading < 0) | (heading >= 360), reasons.HEADING_OUT_OF_RANGE,
         "heading_deg=" + _text(df["heading_deg"]) + " is outside [0, 360)")
    flag(date_status == reasons.MISSING_DATE, reasons.MISSING_DATE, "captured_at is empty")
    flag(date_status == reasons.BAD_DATE, reasons.BAD_DATE,
         "captured_at=" + captured + " is not an ISO-8601 date")
    flag(uri == "", reasons.MISSING_URI, "uri is empty")

    # Duplicates among otherwise good rows: identical repeats keep their first row; the same id with
    # different values is ambiguous, so every row of that id is rejected.
    ok = reason == ""
    values = pd.DataFrame({"pano_id": pano_id, "lat": lat, "lon": lon, "heading": heading,
                           "captured": captured, "uri": uri})[ok]
    repeated = values["pano_id"].duplicated(keep=False)
    if repeated.any():
        dup = values[repeated]
        variants = dup.drop_duplicates().groupby("pano_id").size()
        conflicting = set(variants[variants > 1].index)
        conflict_rows = dup.index[dup["pano_id"].isin(conflicting)]
        same_rows = dup.index[~dup["pano_id"].isin(conflicting) & dup.duplicated(keep="first")]
        first_row = dup.reset_index().groupby("pano_id")["index"].min()
        mask = pd.Series(False, index=df.index)
        mask[conflict_rows] = True
        flag(mask, reasons.DUPLICATE_ID_CONFLICT,
             "pano_id " + pano_id + " appears with different position, heading, date or uri")
        mask[:] = False
        mask[same_rows] = True
        flag(mask, reasons.DUPLICATE_ROW,
             "repeats row " + pano_id.map(first_row).fillna(-1).astype(int).astype(str))

    ok = reason == ""
    good = df[ok].copy()
    good.insert(0, "row", np.arange(n, dtype=np.int64)[ok.to_numpy()])
    good["pano_id"] = pano_id[ok]
    good["lat"] = lat[ok]
    good["lon"] = lon[ok]
    good["heading_deg"] = heading[ok]
    good["captured_at"] = captured[ok]
    good["year"] = year[ok]
    good["uri"] = [resolve(u, base_dir) for u in uri[ok]]
    rejects = pd.DataFrame({
        "row": np.arange(n, dtype=np.int64)[~ok.to_numpy()],
        "pano_id": pano_id[~ok].to_numpy(),
        "reason": reason[~ok].to_numpy(),
        "detail": detail[~ok].to_numpy(),
    }, columns=list(REJECT_COLUMNS))
    return PanoramaTable(good=good.reset_index(drop=True), rejects=rejects)
