"""Panorama index: a Parquet or CSV table with one row per street-level 360-degree panorama.

Columns: ``pano_id, lat, lon, heading_deg, captured_at, uri``. ``heading_deg`` is the compass bearing
of the panorama's centre column; ``captured_at`` an ISO-8601 date or date-time; ``uri`` the JPEG,
relative to the index file's folder or absolute or a URL. Extra columns are kept.

Validation is vectorised (a million rows take about a second) and never raises for a bad row: each
input row comes back either in ``good`` or in ``rejects`` with a reason from ``unigeo.core.reasons``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from unigeo.core import reasons
from unigeo.core.errors import SourceError
from unigeo.core.fileio import open_binary, parent, resolve_all
from unigeo.core.sample import CAPTURE_DATE

REQUIRED_COLUMNS = ("pano_id", "lat", "lon", "heading_deg", "captured_at", "uri")
REJECT_COLUMNS = ("row", "pano_id", "reason", "detail")


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


@dataclass(frozen=True)
class IndexChunk:
    """A piece of a panorama index that one worker reads: a Parquet row group, or a whole CSV."""

    path: str
    part: int  # Parquet row group; -1 for CSV
    row_offset: int  # input row number of the chunk's first row (CSV: the source's first row)
    n_rows: int  # -1 when unknown before reading (CSV)
    base_dir: str = ""  # what relative uris resolve against (default: the index's folder)

    @property
    def uri_base(self) -> str:
        return self.base_dir or parent(self.path)


def _format(path: str) -> str:
    lower = path.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    raise SourceError(path, "unknown panorama index format", "use a .parquet or .csv file")


def _check_columns(path: str, columns: list[str]) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise SourceError(path, f"missing columns {missing}; found {columns}",
                          f"the index needs columns {list(REQUIRED_COLUMNS)}")


def index_chunks(path: str, row_offset: int = 0, base_dir: str = "") -> list[IndexChunk]:
    """Split an index into chunks without reading its rows (Parquet: footer only; CSV: header); rows are
    numbered from ``row_offset`` (an index after others in the config continues their numbering).

    Raises:
        SourceError: unknown format, unreadable file, or a required column missing.
    """
    fmt = _format(path)
    try:
        with open_binary(path) as f:
            if fmt == "csv":
                header = pd.read_csv(f, nrows=0).columns.tolist()
                _check_columns(path, header)
                return [IndexChunk(path, -1, row_offset, -1, base_dir)]
            meta = pq.ParquetFile(f).metadata
            _check_columns(path, list(meta.schema.names))
            chunks, offset = [], row_offset
            for i in range(meta.num_row_groups):
                n = meta.row_group(i).num_rows
                chunks.append(IndexChunk(path, i, offset, n, base_dir))
                offset += n
            return chunks
    except SourceError:
        raise
    except FileNotFoundError as e:
        raise SourceError(path, "panorama index not found") from e
    except Exception as e:  # pyarrow/pandas parser errors
        raise SourceError(path, f"cannot read panorama index: {e}") from e


def index_sources(paths: Sequence[str], base_dir: str = "") -> list[IndexChunk]:
    """The chunks of several indexes read as one, rows numbered on from one to the next (a CSV followed by
    another index is read through once to count its rows); ``base_dir`` resolves the uris of a single index
    (default: each index's folder)."""
    chunks: list[IndexChunk] = []
    offset = 0
    for i, path in enumerate(paths):
        these = index_chunks(path, offset, base_dir if len(paths) == 1 else "")
        chunks += these
        if i < len(paths) - 1:
            offset += count_rows(these)
    return chunks


def count_rows(chunks: list[IndexChunk]) -> int:
    """The rows of an index's chunks (a CSV is read through once to count them)."""
    if all(c.n_rows >= 0 for c in chunks):
        return sum(c.n_rows for c in chunks)
    return sum(len(df) for c in chunks for _, df in read_chunk(c))


def read_chunk(chunk: IndexChunk, csv_rows: int = 200_000) -> Iterator[tuple[int, pd.DataFrame]]:
    """Raw rows of a chunk as (row_offset, DataFrame) pieces; CSV values stay text."""
    with open_binary(chunk.path) as f:
        if chunk.part < 0:
            offset = chunk.row_offset
            for df in pd.read_csv(f, dtype=str, keep_default_na=False, na_values=[""], chunksize=csv_rows):
                yield offset, df
                offset += len(df)
        else:
            yield chunk.row_offset, pq.ParquetFile(f).read_row_group(chunk.part).to_pandas()


def read_panorama_index(path: str) -> PanoramaTable:
    """Read and validate a whole panorama index (rows checked, then duplicates resolved).

    Raises:
        SourceError: the file cannot be read, or a required column is missing.
    """
    return read_indexes([index_chunks(path)])


def read_indexes(indexes: list[list[IndexChunk]]) -> PanoramaTable:
    """Read and validate several indexes as one (their rows numbered on), duplicates resolved across them."""
    parts = [check_rows(df, chunk.uri_base, offset) for chunks in indexes for chunk in chunks
             for offset, df in read_chunk(chunk)]
    good = pd.concat([p.good for p in parts], ignore_index=True) if parts else pd.DataFrame()
    rejects = pd.concat([p.rejects for p in parts], ignore_index=True) if parts else pd.DataFrame()
    return drop_duplicates(PanoramaTable(good, rejects))


def _text(series: pd.Series) -> pd.Series:
    """Values as stripped strings, with missing values as ''."""
    if series.dtype != object and pd.api.types.is_string_dtype(series.dtype):  # Arrow-backed text: vectorised
        return series.fillna("").str.strip()
    out = series.astype(object).where(series.notna(), "")
    if pd.api.types.infer_dtype(out, skipna=False) != "string":  # numbers, timestamps, mixed
        out = out.map(lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v))
    return out.str.strip()


def parse_capture_dates(values: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Parse ``captured_at`` values.

    Returns:
        (text, year, status): ISO text as written (or made from a timestamp), the year of the local
        date as written (no time-zone shift), and per row ``""``, ``missing_date`` or ``bad_date``.
    """
    text = _text(values)
    if text.dtype != object:  # Arrow-backed text: the regex runs in Arrow (RE2), not row by row
        import pyarrow as pa
        import pyarrow.compute as pc

        found = pc.extract_regex(pa.array(text), CAPTURE_DATE.pattern)
        if isinstance(found, pa.ChunkedArray):  # an empty or multi-chunk column
            found = found.combine_chunks() if found.num_chunks else pa.array([], found.type)
        m = pd.Series(found.field("date").to_numpy(zero_copy_only=False), index=text.index, dtype=object)
    else:
        m = text.str.extract(CAPTURE_DATE)["date"]
    day = pd.to_datetime(m, format="%Y-%m-%d", errors="coerce")
    status = pd.Series("", index=values.index, dtype=object)
    status[day.isna()] = reasons.BAD_DATE
    status[text == ""] = reasons.MISSING_DATE
    year = day.dt.year.fillna(-1).astype(np.int64)
    return text, year, status


def check_rows(df: pd.DataFrame, base_dir: str = ".", row_offset: int = 0) -> PanoramaTable:
    """Row-level checks (everything but duplicates); ``row_offset`` numbers the rows of a chunk."""
    df = df.reset_index(drop=True)
    n = len(df)
    rows = np.arange(row_offset, row_offset + n, dtype=np.int64)
    reason = pd.Series("", index=df.index, dtype=object)
    detail = pd.Series("", index=df.index, dtype=object)

    def flag(mask: pd.Series, code: str, what: Callable[[pd.Series], pd.Series] | str) -> None:
        """Flag the rows of ``mask`` not flagged yet; ``what`` gives the detail of those rows alone."""
        mask = mask & (reason == "")
        if not mask.any():
            return
        reason[mask] = code
        detail[mask] = what(mask) if callable(what) else what

    pano_id = _text(df["pano_id"])
    lat = pd.to_numeric(df["lat"], errors="coerce").astype(float)
    lon = pd.to_numeric(df["lon"], errors="coerce").astype(float)
    heading = pd.to_numeric(df["heading_deg"], errors="coerce").astype(float)
    captured, year, date_status = parse_capture_dates(df["captured_at"])
    uri = _text(df["uri"])

    if "reject_reason" in df.columns:  # a service's record that is no panorama (unigeo.sources.streetlevel)
        given = _text(df["reject_reason"])
        reason[given != ""] = given[given != ""]
        if "reject_detail" in df.columns:
            detail[given != ""] = _text(df["reject_detail"])[given != ""]
    flag(pano_id == "", reasons.MISSING_PANO_ID, "pano_id is empty")
    flag(~lat.between(-90, 90), reasons.BAD_LAT, lambda m: "lat=" + _text(df["lat"][m]))
    flag(~lon.between(-180, 180), reasons.BAD_LON, lambda m: "lon=" + _text(df["lon"][m]))
    flag((lat == 0) & (lon == 0), reasons.NULL_ISLAND, "lat=0 lon=0 is a placeholder position")
    flag(heading.isna(), reasons.BAD_HEADING, lambda m: "heading_deg=" + _text(df["heading_deg"][m]))
    flag((heading < 0) | (heading >= 360), reasons.HEADING_OUT_OF_RANGE,
         lambda m: "heading_deg=" + _text(df["heading_deg"][m]) + " is outside [0, 360)")
    flag(date_status == reasons.MISSING_DATE, reasons.MISSING_DATE, "captured_at is empty")
    flag(date_status == reasons.BAD_DATE, reasons.BAD_DATE,
         lambda m: "captured_at=" + captured[m] + " is not an ISO-8601 date")
    flag(uri == "", reasons.MISSING_URI, "uri is empty")

    ok = (reason == "").to_numpy()
    good = df[ok].copy()
    good.insert(0, "row", rows[ok])
    good["pano_id"] = pano_id[ok]
    good["lat"] = lat[ok]
    good["lon"] = lon[ok]
    good["heading_deg"] = heading[ok]
    good["captured_at"] = captured[ok]
    good["year"] = year[ok]
    good["uri"] = resolve_all(uri[ok].tolist(), base_dir)
    rejects = pd.DataFrame({"row": rows[~ok], "pano_id": pano_id[~ok].to_numpy(),
                            "reason": reason[~ok].to_numpy(), "detail": detail[~ok].to_numpy()},
                           columns=list(REJECT_COLUMNS))
    return PanoramaTable(good=good.reset_index(drop=True), rejects=rejects)


def resolve_duplicates(rows: list[tuple[int, tuple[object, ...]]]) -> dict[int, tuple[str, str]]:
    """Verdicts for the rows that share one pano_id: ``{row: (reason, detail)}`` for each loser.

    Each entry is ``(row, values)`` with the values that define a panorama (position, heading, date,
    uri). Identical repeats keep their first row (``duplicate_row``); differing values make the id
    ambiguous, and every row of it is rejected (``duplicate_id_conflict``).
    """
    if len(rows) < 2:
        return {}
    rows = sorted(rows, key=lambda r: r[0])
    if len({values for _, values in rows}) > 1:
        detail = f"pano_id appears in rows {[r for r, _ in rows]} with different position, heading, date or uri"
        return {r: (reasons.DUPLICATE_ID_CONFLICT, detail) for r, _ in rows}
    first = rows[0][0]
    return {r: (reasons.DUPLICATE_ROW, f"repeats row {first}") for r, _ in rows[1:]}


DUPLICATE_VALUES = ("lat", "lon", "heading_deg", "captured_at", "uri")


def drop_duplicates(table: PanoramaTable) -> PanoramaTable:
    """Apply ``resolve_duplicates`` to every repeated pano_id of a checked table."""
    good = table.good
    if good.empty:
        return table
    repeated = good[good["pano_id"].duplicated(keep=False)]
    verdicts: dict[int, tuple[str, str]] = {}
    for _, group in repeated.groupby("pano_id", sort=False):
        values = list(zip(group["row"], zip(*(group[c] for c in DUPLICATE_VALUES))))
        verdicts.update(resolve_duplicates(values))
    if not verdicts:
        return table
    lost = good["row"].isin(verdicts)
    extra = pd.DataFrame({"row": good.loc[lost, "row"].to_numpy(), "pano_id": good.loc[lost, "pano_id"].to_numpy(),
                          "reason": [verdicts[r][0] for r in good.loc[lost, "row"]],
                          "detail": [verdicts[r][1] for r in good.loc[lost, "row"]]}, columns=list(REJECT_COLUMNS))
    rejects = pd.concat([table.rejects, extra], ignore_index=True).sort_values("row", ignore_index=True)
    return PanoramaTable(good=good[~lost].reset_index(drop=True), rejects=rejects)


def validate_panoramas(df: pd.DataFrame, base_dir: str = ".") -> PanoramaTable:
    """Row checks, then duplicate resolution, on an in-memory index. ``base_dir`` resolves relative URIs."""
    return drop_duplicates(check_rows(df, base_dir))
