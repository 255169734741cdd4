"""Each transform once in a TestPipeline on the build's local runner, on small real inputs."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from unigeo.core import reasons
from unigeo.core.sample import LedgerRow, Reject, SampleKey
from unigeo.pipeline.cells import cell_token, cover
from unigeo.pipeline.local import LocalRunner
from unigeo.pipeline.locate import KEY_COLUMNS, PANO_COLUMNS, panos_of
from unigeo.pipeline.shards import (
    SAMPLE_FOLDER,
    encode_sample,
    load_sample,
    remove_sample_files,
    sample_path,
    spill_sample,
    write_tar,
)
from unigeo.pipeline.staging import stage_inputs
from unigeo.pipeline.transforms import REJECTS, AssignCells, CoverMetros, ReadPanoramas, SelectPanoramas, WriteShards
from unigeo.pipeline.types import Pano
from unigeo.sources.metros import Metro
from unigeo.sources.panoramas import read_panorama_index

ROW = {"pano_id": "p", "lat": 42.35, "lon": -71.07, "heading_deg": 10.0, "captured_at": "2019-05-01", "uri": "a.jpg"}
METRO = box(-71.08, 42.34, -71.06, 42.36)


def pipeline() -> TestPipeline:
    """A test pipeline on ``LocalRunner``, the engine ``unigeo build`` runs locally."""
    return TestPipeline(runner=LocalRunner())


def staged(folder: Path, metros: list[tuple[str, BaseGeometry]]) -> str:
    """Metros staged as the build stages them (workers read them from the output folder)."""
    return stage_inputs(str(folder), [Metro(n, g, "test") for n, g in metros], None, None).metros


def batch(panos: list[Pano]) -> pd.DataFrame:
    """Panoramas as the batch the location stages pass along."""
    return pd.DataFrame(panos, columns=PANO_COLUMNS)


def keyed_rows(element: tuple[int, pd.DataFrame]) -> list[tuple[SampleKey, Pano]]:
    df = element[1]
    return [(SampleKey(m, c, s), p) for (m, c, s), p in zip(df[KEY_COLUMNS].itertuples(index=False, name=None),
                                                            panos_of(df))]


def pano(i: int, lat: float = 42.35, lon: float = -71.07, year: int = 2019) -> Pano:
    return Pano(i, f"p{i:03d}", lat, lon, 0.0, f"{year}-06-01", year, f"/x/p{i}.jpg")


def test_read_panoramas_across_row_groups(tmp_path: Path) -> None:
    rows = [{**ROW, "pano_id": f"p{i}", "lat": 42.35 + i * 1e-4} for i in range(6)]
    rows[1]["captured_at"] = "never"
    rows += [{**rows[0]}, {**rows[2], "lat": 42.0}]  # an exact repeat of row 0; p2 again elsewhere
    path = tmp_path / "i.parquet"
    pq.write_table(pa.Table.from_pandas(pd.DataFrame(rows)), path, row_group_size=3)
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    expected = read_panorama_index(str(path))
    with pipeline() as p:
        out = p | ReadPanoramas(str(path), str(tmp_path))
        assert_that(out["good"] | beam.FlatMap(panos_of) | beam.Map(lambda x: (x.row, x.pano_id)),
                    equal_to(list(zip(expected.good["row"], expected.good["pano_id"]))), label="good")
        assert_that(out[REJECTS] | beam.FlatMap(lambda rs: [Reject(*r) for r in rs])
                    | beam.Map(lambda r: (r.row, r.reason)),
                    equal_to([(1, reasons.BAD_DATE), (2, reasons.DUPLICATE_ID_CONFLICT), (6, reasons.DUPLICATE_ROW),
                              (7, reasons.DUPLICATE_ID_CONFLICT)]), label="rejects")
    assert sorted(expected.good["row"]) == [0, 3, 4, 5]


def test_assign_cells_keys_and_rejects(tmp_path: Path) -> None:
    metros = staged(tmp_path, [("boston", METRO)])
    inputs = [pano(0), pano(1, year=2023), pano(2, lat=42.5), pano(3, year=2015)]
    with pipeline() as p:
        out = p | beam.Create([batch(inputs)]) | AssignCells(metros, 16, 2023, (2017, 2024))
        cell = cell_token(42.35, -71.07, 16)
        assert_that(out.keyed | beam.FlatMap(keyed_rows) | beam.Map(lambda kv: (kv[0], kv[1].row)),
                    equal_to([(SampleKey("boston", cell, "train"), 0), (SampleKey("boston", cell, "test"), 1)]),
                    label="keyed")
        assert_that(out[REJECTS] | beam.FlatMap(lambda rs: [Reject(*r) for r in rs])
                    | beam.Map(lambda r: (r.row, r.reason, r.metro)),
                    equal_to([(2, reasons.OUTSIDE_METROS, ""), (3, reasons.YEAR_OUT_OF_RANGE, "boston")]),
                    label="rejects")


def test_overlapping_metros_give_a_cell_to_the_first_one(tmp_path: Path) -> None:
    metros = staged(tmp_path, [("a", box(-71.08, 42.34, -71.07, 42.36)), ("b", METRO)])
    # Inside b only, but its cell also touches a: a gets it.
    p0 = pano(0, lon=-71.0699)
    with pipeline() as p:
        out = p | beam.Create([batch([p0])]) | AssignCells(metros, 14, 2023, (2017, 2024))
        assert_that(out.keyed | beam.FlatMap(keyed_rows) | beam.Map(lambda kv: kv[0].metro), equal_to(["a"]))


def test_select_keeps_max_panos_by_farthest_points() -> None:
    key = SampleKey("boston", cell_token(42.35, -71.07, 16), "train")
    group = [pano(i, lat=42.35 + (i % 4) * 2e-4, lon=-71.07 + (i // 4) * 2e-4) for i in range(12)]
    with pipeline() as p:
        keyed = batch(group).assign(metro=key.metro, cell=key.cell, split=key.split)
        out = p | beam.Create([(0, keyed.iloc[:5]), (0, keyed.iloc[5:])]) | SelectPanoramas(max_panos=5, seed=0,
                                                                                              level=16)
        assert_that(out.samples | beam.Map(lambda kv: (kv[0], len(kv[1]["panoramas"]), kv[1]["panoramas_in_cell"])),
                    equal_to([(key, 5, 12)]), label="samples")
        assert_that(out.ledger | beam.FlatMap(lambda rs: [LedgerRow(*r) for r in rs]) | beam.Map(lambda r: r.status)
                    | beam.combiners.Count.PerElement(),
                    equal_to([("not_selected", 7)]), label="ledger")


def test_cover_metros_matches_the_pure_function(tmp_path: Path) -> None:
    geom = box(-71.075, 42.345, -71.065, 42.352)
    with pipeline() as p:
        cells = p | CoverMetros(staged(tmp_path, [("m", geom)]), 16, 12)
        assert_that(cells | beam.FlatMap(lambda t: t.column("cell").to_pylist()), equal_to(cover(geom, 16)))


def test_write_shards_bounds_and_reads_back(tmp_path: Path) -> None:
    samples = [encode_sample("m", "train", f"89e{i:03d}_train", {"json": {"i": i, "panoramas": [{}] * i}})
               for i in range(7)]
    with pipeline() as p:
        stats = p | beam.Create(samples) | WriteShards(str(tmp_path), max_samples=3, max_bytes=10**9)
        assert_that(stats | beam.Map(lambda s: (s["shard"], s["samples"], s["panoramas"])),
                    equal_to([("shards/train/m-train-000000.tar", 3, 3), ("shards/train/m-train-000001.tar", 3, 12),
                              ("shards/train/m-train-000002.tar", 1, 6)]))
    written = sorted(p.name for p in (tmp_path / "shards" / "train").iterdir())
    assert written == [f"m-train-00000{i}.{ext}" for i in range(3) for ext in ("stats.json", "tar")]
    stats0 = json.loads((tmp_path / "shards/train/m-train-000000.stats.json").read_text())
    assert stats0["first_key"] == "89e000_train" and stats0["bytes"] == (tmp_path / stats0["shard"]).stat().st_size


def test_write_shards_stream_sample_files_into_the_bytes_of_an_in_memory_tar(tmp_path: Path) -> None:
    """Shards written from the sample files hold byte for byte what one tar of the samples in memory holds;
    the files are where ``sample_path`` names them, and ``remove_sample_files`` deletes them."""
    rng = np.random.default_rng(0)
    samples = [encode_sample("m", split, f"89e{i:03d}_{split}",
                             {"json": {"i": i, "panoramas": [{"row": i}]}, "txt": f"place {i}".encode(),
                              "sv.000.jpg": rng.bytes(int(rng.integers(1, 3000)))})
               for i in range(9) for split in ("train", "test")]
    with pipeline() as p:
        _ = p | beam.Create(samples) | WriteShards(str(tmp_path), max_samples=100, max_bytes=10**9)
    for split in ("train", "test"):
        expected = io.BytesIO()
        write_tar(expected, [s for s in samples if s.split == split])
        assert (tmp_path / f"shards/{split}/m-{split}-000000.tar").read_bytes() == expected.getvalue()
    assert all(os.path.isfile(sample_path(str(tmp_path), s.metro, s.split, s.key)) for s in samples)
    remove_sample_files(str(tmp_path))
    assert not (tmp_path / SAMPLE_FOLDER).exists()
    remove_sample_files(str(tmp_path))  # nothing to delete is no error


def test_a_spilled_sample_reads_back_and_a_rewrite_is_the_same_file(tmp_path: Path) -> None:
    sample = encode_sample("m", "train", "89e001_train", {"json": {"panoramas": [{}, {}]}, "txt": b"a place"})
    record = spill_sample(str(tmp_path), sample)
    first = Path(record.path).read_bytes()
    assert spill_sample(str(tmp_path), sample) == record and Path(record.path).read_bytes() == first  # a retry
    assert load_sample(record) == sample and record.panoramas == 2 and record.nbytes == sample.nbytes
    assert sorted(os.listdir(Path(record.path).parent)) == ["89e001_train.tar"]  # no temporary file left
    with pytest.raises(ValueError, match="does not hold the members"):
        load_sample(record._replace(members=(("json", 1),)))
    with pytest.raises(ValueError, match="not a member of sample 89e002_train"):
        load_sample(record._replace(key="89e002_train"))


def test_batched_assign_and_select_equal_the_per_row_functions() -> None:
    """The batches the build passes give what ``assign`` and ``select`` give row by row, rejects included."""
    from shapely import prepare

    from unigeo.pipeline.locate import assign, assign_batch, select, select_batch

    metros = [("a", box(-71.08, 42.34, -71.07, 42.36)), ("b", METRO)]
    for _, g in metros:
        prepare(g)
    rng = np.random.default_rng(4)
    n = 600
    panos = [pano(i, lat=float(rng.uniform(42.335, 42.352)), lon=float(rng.uniform(-71.078, -71.062)),
                  year=int(rng.integers(2014, 2027))) for i in range(n)]
    keyed, rejects = assign_batch(batch(panos), metros, 16, 2023, (2017, 2024))
    expected = [assign(p, metros, 16, 2023, (2017, 2024)) for p in panos]
    assert rejects == [r for r in expected if isinstance(r, Reject)]
    got_keys = [k for k, _ in keyed_rows((0, keyed))]
    assert got_keys == [k for k in expected if isinstance(k, SampleKey)]
    assert {"outside_metros", "year_out_of_range"} <= {r.reason for r in rejects}
    assert {k.metro for k in got_keys} == {"a", "b"}
    samples, ledger = select_batch(keyed.sample(frac=1.0, random_state=0), 2, 7, 16)  # any row order
    groups: dict[SampleKey, list[Pano]] = {}
    for key, p in keyed_rows((0, keyed)):
        groups.setdefault(key, []).append(p)
    want = [select(key, groups[key], 2, 7, 16) for key in sorted(groups)]
    assert samples == [(key, s) for key, (s, _) in zip(sorted(groups), want)]
    assert sorted(ledger) == sorted(row for _, rows in want for row in rows) and ledger
