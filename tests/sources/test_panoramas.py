from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from unigeo.core import reasons
from unigeo.core.errors import SourceError
from unigeo.sources.panoramas import read_panorama_index, validate_panoramas

GOOD = {"pano_id": "p0", "lat": 42.35, "lon": -71.08, "heading_deg": 90.0,
        "captured_at": "2019-05-01T10:00:00Z", "uri": "panos/p0.jpg"}


def one(**changes: object) -> pd.DataFrame:
    return pd.DataFrame([GOOD, {**GOOD, "pano_id": "x", **changes}])


@pytest.mark.parametrize(("changes", "reason"), [
    ({"pano_id": ""}, reasons.MISSING_PANO_ID),
    ({"pano_id": None}, reasons.MISSING_PANO_ID),
    ({"lat": 95.0}, reasons.BAD_LAT),
    ({"lat": "north"}, reasons.BAD_LAT),
    ({"lat": None}, reasons.BAD_LAT),
    ({"lon": 200.0}, reasons.BAD_LON),
    ({"lon": float("nan")}, reasons.BAD_LON),
    ({"lat": 0.0, "lon": 0.0}, reasons.NULL_ISLAND),
    ({"heading_deg": None}, reasons.BAD_HEADING),
    ({"heading_deg": "east"}, reasons.BAD_HEADING),
    ({"heading_deg": 360.0}, reasons.HEADING_OUT_OF_RANGE),
    ({"heading_deg": -0.5}, reasons.HEADING_OUT_OF_RANGE),
    ({"captured_at": None}, reasons.MISSING_DATE),
    ({"captured_at": ""}, reasons.MISSING_DATE),
    ({"captured_at": "yesterday"}, reasons.BAD_DATE),
    ({"captured_at": "2021-02-30"}, reasons.BAD_DATE),
    ({"captured_at": "2021-13-01T00:00:00"}, reasons.BAD_DATE),
    ({"captured_at": "05/01/2019"}, reasons.BAD_DATE),
    ({"uri": ""}, reasons.MISSING_URI),
    ({"uri": None}, reasons.MISSING_URI),
])
def test_each_bad_row_kind_is_rejected_with_its_reason(changes: dict, reason: str) -> None:
    table = validate_panoramas(one(**changes))
    assert list(table.good["pano_id"]) == ["p0"]
    assert table.rejects[["row", "reason"]].values.tolist() == [[1, reason]]
    assert table.rejects["detail"].iloc[0] != ""


def test_same_id_with_different_position_rejects_every_row_of_that_id() -> None:
    df = pd.DataFrame([GOOD, {**GOOD, "lat": 42.36}, {**GOOD, "pano_id": "p1"}])
    table = validate_panoramas(df)
    assert list(table.good["pano_id"]) == ["p1"]
    assert sorted(table.rejects["row"]) == [0, 1]
    assert set(table.rejects["reason"]) == {reasons.DUPLICATE_ID_CONFLICT}


def test_identical_repeat_keeps_the_first_row() -> None:
    df = pd.DataFrame([GOOD, {**GOOD, "pano_id": "p1"}, GOOD])
    table = validate_panoramas(df)
    assert list(table.good["row"]) == [0, 1]
    assert table.rejects[["row", "reason"]].values.tolist() == [[2, reasons.DUPLICATE_ROW]]
    assert "repeats row 0" in table.rejects["detail"].iloc[0]


def test_a_bad_duplicate_does_not_condemn_the_good_row() -> None:
    df = pd.DataFrame([GOOD, {**GOOD, "lat": 123.0}])
    table = validate_panoramas(df)
    assert list(table.good["row"]) == [0]
    assert table.rejects["reason"].tolist() == [reasons.BAD_LAT]


@pytest.mark.parametrize(("text", "year"), [
    ("2023-01-01", 2023), ("2023-01-01T00:30:00+02:00", 2023), ("2022-12-31T23:59:59Z", 2022),
    ("2017-06-01 12:00", 2017), ("2024-02-29T08:00:00.123", 2024),
])
def test_year_is_the_local_date_as_written(text: str, year: int) -> None:
    table = validate_panoramas(pd.DataFrame([{**GOOD, "captured_at": text}]))
    assert table.good["year"].tolist() == [year] and table.good["captured_at"].tolist() == [text]


def test_every_row_is_accounted_for_once() -> None:
    rng = np.random.default_rng(1)
    n = 500
    df = pd.DataFrame({
        "pano_id": rng.integers(0, 400, n).astype(str),
        "lat": rng.uniform(-100, 100, n), "lon": rng.uniform(-200, 200, n),
        "heading_deg": rng.uniform(-50, 400, n),
        "captured_at": rng.choice(["2019-01-01", "bad", "", "2023-07-04T10:00:00Z"], n),
        "uri": rng.choice(["a.jpg", ""], n),
    })
    table = validate_panoramas(df)
    rows = sorted(table.good["row"].tolist() + table.rejects["row"].tolist())
    assert rows == list(range(n))
    assert table.good["pano_id"].is_unique


def test_csv_and_parquet_read_the_same(tmp_path: Path) -> None:
    df = pd.DataFrame([GOOD, {**GOOD, "pano_id": "p1", "captured_at": "bad"}])
    df.to_csv(tmp_path / "i.csv", index=False)
    df.to_parquet(tmp_path / "i.parquet", index=False)
    a, b = read_panorama_index(str(tmp_path / "i.csv")), read_panorama_index(str(tmp_path / "i.parquet"))
    assert a.good["uri"].tolist() == b.good["uri"].tolist() == [str(tmp_path / "panos" / "p0.jpg")]
    assert a.rejects["reason"].tolist() == b.rejects["reason"].tolist() == [reasons.BAD_DATE]


def test_timestamp_typed_dates_are_accepted(tmp_path: Path) -> None:
    df = pd.DataFrame([GOOD])
    df["captured_at"] = pd.to_datetime(df["captured_at"])
    df.to_parquet(tmp_path / "i.parquet")
    table = read_panorama_index(str(tmp_path / "i.parquet"))
    assert table.good["year"].tolist() == [2019]


def test_missing_columns_is_an_error_naming_them(tmp_path: Path) -> None:
    pd.DataFrame([{k: v for k, v in GOOD.items() if k != "heading_deg"}]).to_csv(tmp_path / "i.csv", index=False)
    with pytest.raises(SourceError, match=r"missing columns \['heading_deg'\]"):
        read_panorama_index(str(tmp_path / "i.csv"))


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        read_panorama_index(str(tmp_path / "none.csv"))
    (tmp_path / "i.xlsx").write_text("x")
    with pytest.raises(SourceError, match="unknown panorama index format"):
        read_panorama_index(str(tmp_path / "i.xlsx"))


def test_chunks_number_rows_across_row_groups(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from unigeo.sources.panoramas import index_chunks, read_chunk

    df = pd.DataFrame([{**GOOD, "pano_id": f"p{i}"} for i in range(7)])
    df.loc[5, "lat"] = 100.0
    pq.write_table(pa.Table.from_pandas(df), tmp_path / "i.parquet", row_group_size=3)
    chunks = index_chunks(str(tmp_path / "i.parquet"))
    assert [(c.part, c.row_offset, c.n_rows) for c in chunks] == [(0, 0, 3), (1, 3, 3), (2, 6, 1)]
    pieces = [piece for c in chunks for piece in read_chunk(c)]
    assert [(offset, len(d)) for offset, d in pieces] == [(0, 3), (3, 3), (6, 1)]
    table = read_panorama_index(str(tmp_path / "i.parquet"))
    assert table.rejects[["row", "reason"]].values.tolist() == [[5, reasons.BAD_LAT]]
    df.to_csv(tmp_path / "i.csv", index=False)
    csv_chunks = index_chunks(str(tmp_path / "i.csv"))
    assert [(c.part, c.n_rows) for c in csv_chunks] == [(-1, -1)]
    assert [(o, len(d)) for o, d in read_chunk(csv_chunks[0], csv_rows=4)] == [(0, 4), (4, 3)]


def test_resolving_many_paths_equals_resolving_each() -> None:
    from unigeo.core.fileio import resolve, resolve_all

    paths = ["a.jpg", "panos/a.jpg", "./a.jpg", "../a.jpg", "x/../a.jpg", "/abs/a.jpg", "gs://b/a.jpg", "a//b.jpg",
             "dir/", "a/./b", ".hidden/a.jpg", "..x/a", "a..b/c", "file:///t/a"]
    for base in ["/tmp/in", "/tmp/in/", "gs://bucket/idx", "rel/dir", "/", ".", "./sub"]:
        assert resolve_all(paths, base) == [resolve(p, base) for p in paths], base
