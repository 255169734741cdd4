"""The streamed ledger summary against pandas over the whole table, and the audit's ledger checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from unigeo.cli import cli
from unigeo.core.sample import KEPT, LEDGER_SCHEMA, NOT_SELECTED, REJECTED, SPLITS, sample_key
from unigeo.outputs.ledger import RowCounts, scan, summarize, summarize_frame


def random_ledger(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    status = rng.choice([KEPT, NOT_SELECTED, REJECTED], n, p=[0.5, 0.3, 0.2])
    metro = np.where((status == REJECTED) & (rng.random(n) < 0.4), "", rng.choice(["a", "b", "c"], n))
    return pd.DataFrame({
        "row": rng.permutation(n), "pano_id": [f"p{i}" for i in range(n)], "metro": metro,
        "cell": np.where(metro == "", "", rng.choice([f"89c{i:03x}" for i in range(40)], n)),
        "split": np.where(status == REJECTED, "", rng.choice(list(SPLITS), n)), "status": status,
        "reason": np.where(status == REJECTED, rng.choice(["bad_date", "outside_metros"], n), ""),
        "detail": "", "year": rng.choice([-1, 2018, 2021, 2023], n)})


def pandas_counts(ledger: pd.DataFrame) -> dict:
    """The manifest's counts computed the plain way, over the whole table."""
    def status_counts(rows: pd.DataFrame) -> dict:
        s = rows["status"].value_counts()
        reasons = rows[rows["status"] == REJECTED]["reason"].value_counts().sort_index()
        return {"inputs": len(rows), "kept": int(s.get(KEPT, 0)), "not_selected": int(s.get(NOT_SELECTED, 0)),
                "rejected": int(s.get(REJECTED, 0)), "rejected_by_reason": {k: int(v) for k, v in reasons.items()}}

    samples = ledger[ledger["status"] == KEPT].drop_duplicates(["metro", "cell", "split"])

    def per_split(rows: pd.DataFrame) -> dict:
        return {split: int((rows["split"] == split).sum()) for split in SPLITS}

    per_metro = {m: {**status_counts(rows), "samples": per_split(samples[samples["metro"] == m])}
                 for m, rows in ledger[ledger["metro"] != ""].groupby("metro")}
    return {"overall": {**status_counts(ledger), "samples": per_split(samples)}, "per_metro": per_metro,
            "unassigned": status_counts(ledger[ledger["metro"] == ""])}


@pytest.mark.parametrize("batch_rows", [7, 1000, 10**6])
def test_a_streamed_summary_equals_pandas_over_the_whole_ledger(tmp_path: Path, batch_rows: int) -> None:
    ledger = random_ledger(3000)
    for i, start in enumerate((0, 1000, 2000)):
        part = ledger.iloc[start:start + 1000]
        pq.write_table(pa.Table.from_pandas(part, schema=LEDGER_SCHEMA, preserve_index=False),
                       tmp_path / f"ledger-{i}.parquet", row_group_size=500)
    paths = sorted(str(p) for p in tmp_path.glob("*.parquet"))
    summary = summarize(scan(paths, batch_rows=batch_rows), input_rows=3000)
    assert summary.counts() == pandas_counts(ledger)
    kept = ledger[ledger["status"] == KEPT]
    for (metro, split), rows in kept.groupby(["metro", "split"]):
        keys, panoramas = summary.kept_samples()[(metro, split)]
        assert keys == sorted({sample_key(c, split) for c in rows["cell"]}) and panoramas == len(rows)
    per_cell = kept.groupby(["metro", "cell", "split"]).size()
    limit = int(per_cell.quantile(0.9))
    over = per_cell[per_cell > limit]
    assert sorted(summary.over(limit)) == sorted((m, c, s, int(n)) for (m, c, s), n in over.items())
    years = ledger.groupby(["year", "status"]).size()
    assert dict(summary.years) == {(int(y), s): int(n) for (y, s), n in years.items()}
    assert summary.n_rows == 3000 and summary.rows.distinct == 3000 and summary.rows.missing(3000) == (0, [])


def test_row_counts_find_repeated_missing_and_foreign_rows() -> None:
    counts = RowCounts(10)
    counts.add(np.array([0, 1, 2, 2, 5]))
    counts.add(np.array([2, 7, 12, -3]))
    assert counts.total == 9 and counts.negative == 1 and counts.distinct == 6
    assert counts.repeated() == (1, [2])
    assert counts.missing(10) == (5, [3, 4, 6, 8, 9])
    assert counts.missing(15, limit=3) == (9, [3, 4, 6])  # 12 came
    assert counts.missing(30, limit=16) == (24, [3, 4, 6, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21])
    assert counts.beyond(10) == 1
    many = RowCounts()
    many.add(np.zeros(300, dtype=np.int64))  # 300 times one row: the byte stops at 255, the row is repeated
    assert many.repeated() == (1, [0]) and many.seen[0] == 255


def test_a_frame_without_reason_or_year_summarizes() -> None:
    frame = pd.DataFrame({"row": [0, 1], "metro": ["m", "m"], "cell": ["89c1", "89c1"], "split": ["train", "train"],
                          "status": [KEPT, NOT_SELECTED]})
    s = summarize_frame(frame)
    assert s.counts()["per_metro"]["m"]["samples"] == {"train": 1, "test": 0} and s.kept_samples() == {
        ("m", "train"): (["89c1_train"], 1)}


# ---------------------------------------------------------------- the audit's ledger checks, on a real build

def audit(out: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["audit", str(out)])
    return result.exit_code, json.loads(result.output)["violations"]


@pytest.fixture
def copy(tiny_build: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(tiny_build, out)
    return out


def edit_ledger(out: Path, change) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    paths = sorted((out / "ledger").glob("*.parquet"))
    ledger = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    ledger = change(ledger.copy())
    for p in paths[1:]:
        p.unlink()
    pq.write_table(pa.Table.from_pandas(ledger, schema=LEDGER_SCHEMA, preserve_index=False), paths[0])
    return ledger


def test_audit_names_a_repeated_and_a_foreign_ledger_row(copy: Path) -> None:
    def change(ledger: pd.DataFrame) -> pd.DataFrame:
        extra = ledger[ledger["status"] == NOT_SELECTED].iloc[[0, 0]].copy()
        extra.iloc[1, extra.columns.get_loc("row")] = 10**6
        return pd.concat([ledger, extra], ignore_index=True)

    ledger = edit_ledger(copy, change)
    repeated = int(ledger[ledger["status"] == NOT_SELECTED]["row"].iloc[0])
    code, violations = audit(copy)
    assert code == 1
    assert f"ledger rows appear more than once: [{repeated}]" in violations
    assert any("1 ledger rows are not rows of the panorama index" in v for v in violations)


def test_audit_names_kept_rows_the_shards_do_not_hold_and_rows_in_another_sample(copy: Path) -> None:
    def change(ledger: pd.DataFrame) -> pd.DataFrame:
        kept = ledger.index[ledger["status"] == KEPT]
        ledger.loc[kept[0], "status"] = NOT_SELECTED  # the shards hold it: not kept any more
        other = ledger.loc[kept[1:], "cell"].ne(ledger.loc[kept[1], "cell"]).idxmax()
        ledger.loc[kept[1], "cell"] = ledger.loc[other, "cell"]  # kept, but in another sample
        ledger.loc[kept[1], "split"] = ledger.loc[other, "split"]
        return ledger

    ledger = edit_ledger(copy, change)
    code, violations = audit(copy)
    unkept = ledger[ledger["status"] == NOT_SELECTED]["row"]
    moved = ledger[ledger["status"] == KEPT].iloc[0]
    assert code == 1
    assert any(v.startswith("kept in ledger but not in shards: rows []; in shards but not kept: rows [")
               and any(str(r) in v for r in unkept) for v in violations)
    assert any(v.startswith(f"row {moved['row']}: ledger puts it in {sample_key(moved['cell'], moved['split'])}, "
                            "shards in ") for v in violations)


def test_audit_names_a_shard_row_outside_the_index_without_growing_for_it(copy: Path) -> None:
    """A shard's json giving a panorama row 10^12 is reported; the row-to-sample index does not grow to it."""
    import io
    import tarfile

    from unigeo.pipeline.shards import encode_sample, write_tar

    manifest = json.loads((copy / "manifest.json").read_text())
    entry = next(s for s in manifest["shards"] if s["split"] == "train")
    samples: dict[str, dict] = {}
    with tarfile.open(copy / entry["shard"]) as tar:
        for info in tar:
            key, _, ext = info.name.partition(".")
            data = tar.extractfile(info).read()  # type: ignore[union-attr]
            samples.setdefault(key, {})[ext] = json.loads(data) if ext == "json" else data
    first = sorted(samples)[0]
    samples[first]["json"]["panoramas"][0]["row"] = 10**12
    buf = io.BytesIO()
    entry["bytes"], entry["sha256"] = write_tar(buf, [encode_sample(entry["metro"], "train", k, m)
                                                      for k, m in samples.items()])
    (copy / entry["shard"]).write_bytes(buf.getvalue())
    (copy / "manifest.json").write_text(json.dumps(manifest))
    code, violations = audit(copy)
    assert code == 1
    assert any(f"of sample {first} has row {10**12}, not one of the manifest's" in v for v in violations)
