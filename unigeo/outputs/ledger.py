"""The ledger read as a stream: what the manifest, the self-check, the report and the audit need of it, in
memory that grows with the number of samples, never with the number of panoramas.

The ledger has a row per input panorama (60M at the paper's scale). ``scan`` reads its Parquet files
through a pyarrow dataset, only the columns asked for, in record batches of ``BATCH_ROWS``;
``summarize`` folds the batches into a ``LedgerSummary``: counts per (metro, status, reason) and per
(year, status), the kept panoramas per sample, and a byte per input row that says how often the row
came (so duplicate and missing rows are found with vectorised counts, not a set of row numbers).
pyarrow is already a core dependency and its dataset reader streams Parquet row groups from local
disks and from any fsspec filesystem alike, so no query engine is added for this.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from fsspec.core import url_to_fs
from pyarrow.fs import FSSpecHandler, PyFileSystem

from unigeo.core.fileio import glob, is_url
from unigeo.core.sample import KEPT, LEDGER_SCHEMA, NOT_SELECTED, REJECTED, SPLITS, sample_key

BATCH_ROWS = 1 << 18
MERGE_ROWS = 1 << 20  # partial per-sample groups merged once they pass this (plus twice the merged ones)
SUMMARY_COLUMNS = ("row", "metro", "cell", "split", "status", "reason", "year")
MAX_LISTED = 50
_KEPT_SCHEMA = pa.schema([("metro", pa.string()), ("cell", pa.string()), ("split", pa.string()),
                          ("panoramas", pa.int64())])


def ledger_files(out: str) -> list[str]:
    return glob(out, "ledger/*.parquet")


def scan(paths: list[str], columns: Iterable[str] = SUMMARY_COLUMNS, batch_rows: int = BATCH_ROWS
         ) -> Iterator[pa.RecordBatch]:
    """Record batches of ``columns`` of the Parquet files ``paths`` (local or URLs), in file order."""
    if not paths:
        return
    if is_url(paths[0]):
        fs, _ = url_to_fs(paths[0])
        dataset = ds.dataset([url_to_fs(p)[1] for p in paths], schema=LEDGER_SCHEMA, format="parquet",
                             filesystem=PyFileSystem(FSSpecHandler(fs)))
    else:
        dataset = ds.dataset(paths, schema=LEDGER_SCHEMA, format="parquet")
    # No read-ahead: by default pyarrow decodes up to 16 batches of 4 files ahead (GBs at 60M rows).
    yield from dataset.to_batches(columns=list(columns), batch_size=batch_rows, use_threads=False,
                                  batch_readahead=1, fragment_readahead=1)


class RowCounts:
    """How often each input row number came, a byte per row (255 stands for 255 or more), grown as
    larger row numbers come; rows below zero are counted apart."""

    def __init__(self, expected: int = 0) -> None:
        self.seen = np.zeros(max(0, expected), dtype=np.uint8)
        self.total = 0
        self.negative = 0

    def add(self, rows: np.ndarray) -> None:
        self.total += len(rows)
        bad = rows < 0
        if bad.any():
            self.negative += int(bad.sum())
            rows = rows[~bad]
        if not len(rows):
            return
        top = int(rows.max()) + 1
        if top > len(self.seen):
            self.seen = np.concatenate([self.seen, np.zeros(max(top, 2 * len(self.seen)) - len(self.seen), np.uint8)])
        unique, times = np.unique(rows, return_counts=True)
        self.seen[unique] = np.minimum(self.seen[unique].astype(np.int64) + times, 255).astype(np.uint8)

    @property
    def distinct(self) -> int:
        return int(np.count_nonzero(self.seen))

    def repeated(self, limit: int = MAX_LISTED) -> tuple[int, list[int]]:
        """How many rows came more than once, and the first ``limit`` of them."""
        rows = np.flatnonzero(self.seen > 1)
        return len(rows), rows[:limit].tolist()

    def missing(self, n_inputs: int, limit: int = MAX_LISTED) -> tuple[int, list[int]]:
        """How many of the rows ``0 .. n_inputs - 1`` never came, and the first ``limit`` of them."""
        seen = self.seen[:n_inputs]
        rows = np.flatnonzero(seen == 0)
        gone = len(rows) + max(0, n_inputs - len(seen))
        listed = rows[:limit].tolist()
        if len(listed) < limit:
            listed += list(range(len(seen), min(n_inputs, len(seen) + limit - len(listed))))
        return gone, listed

    def beyond(self, n_inputs: int) -> int:
        """Distinct row numbers at or above ``n_inputs`` (rows that no input has)."""
        return int(np.count_nonzero(self.seen[n_inputs:])) if len(self.seen) > n_inputs else 0


@dataclass
class LedgerSummary:
    """What a pass over the ledger found: ``groups`` counts rows per (metro, status, reason) ("" where
    none), ``years`` per (year, status), ``kept`` has a row per sample with its kept panoramas, ``rows``
    counts each input row number."""

    groups: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    years: Counter[tuple[int, str]] = field(default_factory=Counter)
    kept: pa.Table = field(default_factory=_KEPT_SCHEMA.empty_table)
    rows: RowCounts = field(default_factory=RowCounts)

    @property
    def n_rows(self) -> int:
        return self.rows.total

    def status_counts(self, metro: str | None = None) -> dict[str, Any]:
        """inputs, kept, not_selected, rejected and rejects by reason of every row (``metro`` None) or of
        one metro's rows ("" for rows rejected before any metro was known)."""
        status: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        for (m, s, reason), n in self.groups.items():
            if metro is None or m == metro:
                status[s] += n
                if s == REJECTED:
                    reasons[reason] += n
        return {"inputs": sum(status.values()), "kept": status[KEPT], "not_selected": status[NOT_SELECTED],
                "rejected": status[REJECTED], "rejected_by_reason": dict(sorted(reasons.items()))}

    def samples_per_split(self, metro: str | None = None) -> dict[str, int]:
        kept = self.kept if metro is None else self.kept.filter(pc.equal(self.kept["metro"], metro))
        splits = Counter(kept["split"].to_pylist())
        return {split: int(splits.get(split, 0)) for split in SPLITS}

    def counts(self) -> dict[str, Any]:
        """Counts overall, per metro, and for rows rejected before any metro was known (``unassigned``):
        the manifest's ``counts`` before cells and shards are added."""
        per_metro = {}
        for metro in sorted({m for m, _, _ in self.groups if m}):
            per_metro[metro] = {**self.status_counts(metro), "samples": self.samples_per_split(metro)}
        return {"overall": {**self.status_counts(), "samples": self.samples_per_split()}, "per_metro": per_metro,
                "unassigned": self.status_counts("")}

    def statuses(self) -> set[str]:
        return {s for _, s, _ in self.groups}

    def kept_samples(self) -> dict[tuple[str, str], tuple[list[str], int]]:
        """(metro, split) -> the sample keys the ledger kept, sorted, and its kept panoramas."""
        found: dict[tuple[str, str], tuple[list[str], int]] = {}
        groups = self.kept.group_by(["metro", "split"]).aggregate([("panoramas", "sum")])
        for metro, split, panoramas in zip(groups["metro"].to_pylist(), groups["split"].to_pylist(),
                                           groups["panoramas_sum"].to_pylist()):
            mine = self.kept.filter(pc.and_(pc.equal(self.kept["metro"], metro), pc.equal(self.kept["split"], split)))
            keys = sorted(sample_key(c, split) for c in mine["cell"].to_pylist())
            found[(metro, split)] = (keys, int(panoramas))
        return dict(sorted(found.items()))

    def over(self, max_panos: int) -> list[tuple[str, str, str, int]]:
        """(metro, cell, split, kept) of the samples that kept more than ``max_panos`` panoramas."""
        big = self.kept.filter(pc.greater(self.kept["panoramas"], max_panos))
        return list(zip(big["metro"].to_pylist(), big["cell"].to_pylist(), big["split"].to_pylist(),
                        big["panoramas"].to_pylist()))


def _merge_kept(parts: list[pa.Table]) -> pa.Table:
    merged = pa.concat_tables(parts).group_by(["metro", "cell", "split"]).aggregate([("panoramas", "sum")])
    return merged.rename_columns(["metro", "cell", "split", "panoramas"]).select(list(_KEPT_SCHEMA.names))


def summarize(batches: Iterable[pa.RecordBatch | pa.Table], input_rows: int = 0,
              each: Callable[[pa.Table], None] | None = None) -> LedgerSummary:
    """Fold ledger batches (``SUMMARY_COLUMNS``) into a ``LedgerSummary``; ``input_rows`` sizes the row
    counts up front (they grow as needed); ``each`` also sees every batch (one pass for two purposes)."""
    summary = LedgerSummary(rows=RowCounts(input_rows))
    kept_parts: list[pa.Table] = []
    pending = merged = 0
    for batch in batches:
        table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        if not table.num_rows:
            continue
        if each is not None:
            each(table)
        summary.rows.add(table["row"].to_numpy(zero_copy_only=False).astype(np.int64, copy=False))
        for part, key in ((("metro", "status", "reason"), summary.groups), (("year", "status"), summary.years)):
            g = table.select(list(part)).group_by(list(part)).aggregate([([], "count_all")])
            for values in zip(*(g[c].to_pylist() for c in part), g["count_all"].to_pylist()):
                *k, n = values
                key[tuple("" if v is None else v for v in k)] += n  # type: ignore[index]
        kept = table.filter(pc.equal(table["status"], KEPT))
        if kept.num_rows:
            g = kept.select(["metro", "cell", "split"]).group_by(["metro", "cell", "split"]).aggregate(
                [([], "count_all")])
            kept_parts.append(g.rename_columns(["metro", "cell", "split", "panoramas"]).cast(_KEPT_SCHEMA))
            pending += g.num_rows
            if pending > 2 * merged + MERGE_ROWS:  # partial groups stay within a few times the samples
                kept_parts = [_merge_kept(kept_parts)]
                merged = pending = kept_parts[0].num_rows
    if kept_parts:
        summary.kept = _merge_kept(kept_parts)
    return summary


def summarize_ledger(out: str, input_rows: int = 0, each: Callable[[pa.Table], None] | None = None
                     ) -> LedgerSummary:
    """``summarize`` over a build's ledger files."""
    return summarize(scan(ledger_files(out)), input_rows, each)


def summarize_frame(ledger: pd.DataFrame, input_rows: int = 0) -> LedgerSummary:
    """``summarize`` over a ledger held as a frame (small ledgers, tests)."""
    schema = pa.schema([LEDGER_SCHEMA.field(c) for c in SUMMARY_COLUMNS])
    defaults: dict[str, Any] = {"reason": "", "year": -1}
    frame = ledger.assign(**{c: v for c, v in defaults.items() if c not in ledger.columns})
    return summarize([pa.Table.from_pandas(frame[list(SUMMARY_COLUMNS)], schema=schema, preserve_index=False)],
                     input_rows)

