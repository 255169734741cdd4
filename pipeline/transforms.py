"""The build job's PTransforms: thin wiring around the pure functions of ``pipeline`` and ``sources``.

Each transform is a dataclass that checks its arguments when the pipeline is built. DoFns are
idempotent: a retried bundle recomputes the same elements, and shard files are written to a
temporary name and renamed, so a retry overwrites a file with the same bytes.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import shapely
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue
from shapely.geometry.base import BaseGeometry

from unigeo.core.fileio import create, rename, write_bytes
from unigeo.core.sample import (
    CELLS_SCHEMA,
    LEDGER_SCHEMA,
    REJECTED,
    LedgerRow,
    Reject,
    capture_year,
    keys_sha256,
    member_kind,
)
from unigeo.pipeline.cells import cell_centers, check_level, children_in, parent_cells
from unigeo.pipeline.coders import SampleKeyCoder  # noqa: F401  registers the key coder
from unigeo.pipeline.locate import PANO_COLUMNS, assign_batch, panos_of, partition_of, select_batch
from unigeo.pipeline.metrics import inc_counter
from unigeo.pipeline.shards import (
    PLAN_FOLDER,
    EncodedSample,
    SampleFile,
    ShardId,
    load_sample,
    plan_record,
    plan_shards,
    spill_sample,
    write_tar,
)
from unigeo.pipeline.staging import load_metros
from unigeo.pipeline.types import RowBatch, rows
from unigeo.sources.panoramas import (
    DUPLICATE_VALUES,
    IndexChunk,
    check_rows,
    index_sources,
    read_chunk,
    resolve_duplicates,
)

REJECTS = "rejects"
LEDGER = "ledger"


def _raw(record: dict[str, Any]) -> dict[str, Any]:
    """A raw input record as JSON-safe values."""
    out: dict[str, Any] = {}
    for k, v in record.items():
        if v is None or isinstance(v, (bool, int, str)):
            out[str(k)] = v
        elif isinstance(v, float):
            out[str(k)] = v if np.isfinite(v) else str(v)
        else:
            out[str(k)] = str(v)
    return out


# ---------------------------------------------------------------- panoramas in
# Panoramas travel as DataFrame batches (``locate.PANO_COLUMNS``) keyed by a partition number, rejects and
# ledger rows as ``types.RowBatch``es: a million rows make a few thousand elements, not millions.

ROWS_PER_PART = 25_000  # rows a partition of the location stages holds on average


def location_parts(chunks: list[IndexChunk]) -> int:
    """How many partitions the duplicate check and the cell grouping use for an index."""
    rows = sum(c.n_rows for c in chunks if c.n_rows > 0) or ROWS_PER_PART * 8
    return int(min(4096, max(8, rows // ROWS_PER_PART)))


def _by_part(df: pd.DataFrame, column: str, parts: int) -> Iterator[tuple[int, pd.DataFrame]]:
    if df.empty:
        return
    part = partition_of(df[column], parts)
    for number in np.unique(part).tolist():
        yield number, df[part == number]


class _CheckRows(beam.DoFn):
    def __init__(self, parts: int) -> None:
        self.parts = parts

    def process(self, chunk: IndexChunk) -> Iterator[Any]:
        for offset, df in read_chunk(chunk):
            table = check_rows(df, chunk.uri_base, offset)
            inc_counter("ingest", "rows_in", len(df))
            inc_counter("ingest", "rows_valid", len(table.good))
            yield from _by_part(table.good[PANO_COLUMNS], "pano_id", self.parts)
            if table.rejects.empty:
                continue
            rejected: list[dict[str, Any]] = table.rejects.to_dict(orient="records")  # type: ignore[assignment]
            raw: list[dict[str, Any]] = df.iloc[table.rejects["row"].to_numpy() - offset].to_dict(  # type: ignore[assignment]
                orient="records")
            for reason, n in table.rejects["reason"].value_counts().items():
                inc_counter("ingest", f"rejected/{reason}", int(n))
            yield TaggedOutput(REJECTS, rows(Reject("panorama", str(r["pano_id"]), str(r["reason"]), str(r["detail"]),
                                                    _raw(record), int(r["row"])) for r, record in zip(rejected, raw)))


class _ResolveDuplicates(beam.DoFn):
    def process(self, element: tuple[int, Iterable[pd.DataFrame]]) -> Iterator[Any]:
        df = pd.concat(list(element[1]), ignore_index=True).sort_values("row", ignore_index=True)
        repeated = df[df["pano_id"].duplicated(keep=False)]
        verdicts: dict[int, tuple[str, str]] = {}
        for _, group in repeated.groupby("pano_id", sort=False):
            verdicts.update(resolve_duplicates(list(zip(group["row"].tolist(),
                                                        zip(*(group[c].tolist() for c in DUPLICATE_VALUES))))))
        if verdicts:
            lost = df["row"].isin(verdicts).to_numpy()
            rejects = []
            for p in panos_of(df[lost]):
                reason, detail = verdicts[p.row]
                inc_counter("ingest", f"rejected/{reason}")
                rejects.append(Reject("panorama", p.pano_id, reason, detail, dict(p.as_json()), p.row))
            yield TaggedOutput(REJECTS, rows(rejects))
            df = df[~lost].reset_index(drop=True)
        if not df.empty:
            yield df


@dataclass(eq=False)
class ReadPanoramas(beam.PTransform):
    """Panorama indexes -> valid, de-duplicated panoramas (``good``: DataFrame batches of ``PANO_COLUMNS``)
    and batches of rejects (``rejects``: ``Reject`` fields as plain tuples).

    ``path`` is one index (its relative uris resolve against ``base_dir``) or several, read as one: rows are
    numbered on from one index to the next, each index's uris resolve against its own folder. The indexes
    are split into chunks when the pipeline is built (a bad or incomplete index fails then); ``parts``
    partitions by pano_id bring every row of one id together for the duplicate check.
    """

    path: str | tuple[str, ...]
    base_dir: str = ""
    chunks: list[IndexChunk] = field(init=False)
    parts: int = field(init=False)

    def __post_init__(self) -> None:
        super().__init__()
        self.chunks = index_sources((self.path,) if isinstance(self.path, str) else self.path, self.base_dir)
        self.parts = location_parts(self.chunks)

    def expand(self, pbegin: Any) -> dict[str, Any]:
        checked = (pbegin
                   | "Chunks" >> beam.Create(self.chunks)
                   | "Spread" >> beam.Reshuffle()
                   | "CheckRows" >> beam.ParDo(_CheckRows(self.parts)).with_outputs(REJECTS, main="good"))
        unique = (checked.good
                  | "GroupById" >> beam.GroupByKey()
                  | "Duplicates" >> beam.ParDo(_ResolveDuplicates()).with_outputs(REJECTS, main="good"))
        rejects = (checked[REJECTS], unique[REJECTS]) | "AllRejects" >> beam.Flatten()
        return {"good": unique.good, REJECTS: rejects}


# ---------------------------------------------------------------- cells and splits


def _prepared(metros: list[tuple[str, BaseGeometry]]) -> list[tuple[str, BaseGeometry]]:
    for _, g in metros:
        shapely.prepare(g)
    return metros


class _Assign(beam.DoFn):
    def __init__(self, metros_path: str, level: int, holdout_year: int, years: tuple[int, int], parts: int):
        self.metros_path = metros_path
        self.level = level
        self.holdout_year = holdout_year
        self.years = years
        self.parts = parts
        self._metros: list[tuple[str, BaseGeometry]] = []

    def setup(self) -> None:
        self._metros = _prepared(load_metros(self.metros_path))

    def process(self, df: pd.DataFrame) -> Iterator[Any]:
        keyed, rejects = assign_batch(df, self._metros, self.level, self.holdout_year, self.years)
        if rejects:
            for reason, n in Counter(r.reason for r in rejects).items():
                inc_counter("assign", f"rejected/{reason}", n)
            yield TaggedOutput(REJECTS, rows(rejects))
        for split, n in keyed["split"].value_counts().items():
            inc_counter("assign", str(split), int(n))
        yield from _by_part(keyed, "cell", self.parts)


@dataclass(eq=False)
class AssignCells(beam.PTransform):
    """Panorama batches -> ``(partition, batch)`` with ``metro``, ``cell`` and ``split`` columns, every row of
    a cell in the same partition (``keyed``); panoramas outside every metro or out of the year range are
    rejected (batches of ``Reject`` fields as plain tuples)."""

    metros: str  # the staged metros (pipeline.staging), loaded on the workers
    level: int
    holdout_year: int
    years: tuple[int, int]
    parts: int = 64

    def __post_init__(self) -> None:
        super().__init__()
        check_level(self.level)
        if self.years[0] > self.years[1]:
            raise ValueError(f"empty year range {self.years}")

    def expand(self, panos: Any) -> Any:
        return panos | "Assign" >> beam.ParDo(
            _Assign(self.metros, self.level, self.holdout_year, self.years, self.parts)
        ).with_outputs(REJECTS, main="keyed")


class _Select(beam.DoFn):
    def __init__(self, max_panos: int, seed: int, level: int) -> None:
        self.max_panos = max_panos
        self.seed = seed
        self.level = level

    def process(self, element: tuple[int, Iterable[pd.DataFrame]]) -> Iterator[Any]:
        df = pd.concat(list(element[1]), ignore_index=True)
        samples, not_selected = select_batch(df, self.max_panos, self.seed, self.level)
        inc_counter("select", "selected", sum(len(sample["panoramas"]) for _, sample in samples))
        inc_counter("select", "not_selected", len(not_selected))
        for split, n in Counter(key.split for key, _ in samples).items():
            inc_counter("select", f"samples/{split}", n)
        if not_selected:
            yield TaggedOutput(LEDGER, rows(not_selected))
        yield from samples


@dataclass(eq=False)
class SelectPanoramas(beam.PTransform):
    """``(partition, batch)`` -> one ``(SampleKey, sample json)`` per key with up to ``max_panos``
    panoramas chosen by farthest-point sampling, and batches of ``not_selected`` ledger rows (``LedgerRow``
    fields as plain tuples) for the others (``ledger``); the imagery stage writes the selected panoramas'
    rows."""

    max_panos: int
    seed: int
    level: int

    def __post_init__(self) -> None:
        super().__init__()
        if self.max_panos < 1:
            raise ValueError(f"max_panos must be >= 1, got {self.max_panos}")

    def expand(self, keyed: Any) -> Any:
        return (keyed
                | "GroupByCell" >> beam.GroupByKey()
                | "FarthestPoints" >> beam.ParDo(_Select(self.max_panos, self.seed, self.level))
                .with_outputs(LEDGER, main="samples"))


def reject_to_ledger(r: Reject) -> LedgerRow:
    return LedgerRow(r.row, r.id, r.metro, r.cell, "", REJECTED, r.reason, r.detail,
                     capture_year(r.record.get("captured_at")))


def rejects_to_ledger(batch: RowBatch) -> RowBatch:
    """A batch of rejects as the ledger rows of the rejected panoramas."""
    return rows(reject_to_ledger(Reject(*r)) for r in batch)


# ---------------------------------------------------------------- ledger and rejects sinks

TABLE_ROWS = 200_000  # most ledger rows in one Arrow table (a Parquet row group)


def ledger_table(batch: RowBatch) -> pa.Table:
    columns = list(zip(*batch)) if batch else [()] * len(LEDGER_SCHEMA)
    return pa.Table.from_arrays([pa.array(list(c), type=f.type) for c, f in zip(columns, LEDGER_SCHEMA)],
                                schema=LEDGER_SCHEMA)


class _LedgerTables(beam.DoFn):
    """Batches of ledger rows -> Arrow tables of up to ``TABLE_ROWS`` rows (at least one per bundle)."""

    def start_bundle(self) -> None:
        self._rows: RowBatch = []

    def process(self, batch: RowBatch) -> Iterator[pa.Table]:
        self._rows += batch
        if len(self._rows) >= TABLE_ROWS:
            yield ledger_table(self._rows)
            self._rows = []

    def finish_bundle(self) -> Iterator[WindowedValue]:
        if self._rows:
            yield WindowedValue(ledger_table(self._rows), MIN_TIMESTAMP, (GlobalWindow(),))
            self._rows = []


@dataclass(eq=False)
class WriteLedger(beam.PTransform):
    """Batches of ledger rows (``LedgerRow`` fields as plain tuples) -> ``DIR/ledger/ledger-*.parquet``."""

    prefix: str

    def __post_init__(self) -> None:
        super().__init__()

    def expand(self, rows: Any) -> Any:
        return (rows
                | "Tables" >> beam.ParDo(_LedgerTables())
                | "Write" >> beam.io.WriteToParquetBatched(self.prefix, LEDGER_SCHEMA, file_name_suffix=".parquet"))


def reject_lines(batch: RowBatch) -> Iterator[str]:
    """A batch of rejects as one block of JSON lines (none for an empty batch)."""
    if batch:
        yield "\n".join(Reject(*r).as_json() for r in batch)


# ---------------------------------------------------------------- metro covering


class _Parents(beam.DoFn):
    def __init__(self, metros_path: str, parent_level: int) -> None:
        self.metros_path = metros_path
        self.parent_level = parent_level

    def process(self, _: Any) -> Iterator[tuple[str, str]]:
        for name, geom in load_metros(self.metros_path):
            for parent in parent_cells(geom, self.parent_level):
                yield name, parent


class _Children(beam.DoFn):
    def __init__(self, metros_path: str, level: int) -> None:
        self.metros_path = metros_path
        self.level = level
        self._geoms: dict[str, BaseGeometry] = {}

    def setup(self) -> None:
        self._geoms = dict(_prepared(load_metros(self.metros_path)))

    def process(self, element: tuple[str, str]) -> Iterator[pa.Table]:
        name, parent = element
        tokens = children_in(self._geoms[name], parent, self.level)
        if not tokens:
            return
        lat, lon = cell_centers(tokens)
        inc_counter("cover", f"cells/{name}", len(tokens))
        yield pa.table({"metro": [name] * len(tokens), "cell": tokens, "lat": lat, "lon": lon}, schema=CELLS_SCHEMA)


@dataclass(eq=False)
class CoverMetros(beam.PTransform):
    """Metros -> every S2 cell at ``level`` that intersects each, as Arrow tables of ``CELLS_SCHEMA``
    (one per parent cell)."""

    metros: str  # the staged metros (pipeline.staging), loaded on the workers
    level: int
    parent_level: int

    def __post_init__(self) -> None:
        super().__init__()
        check_level(self.level)
        if not 0 <= self.parent_level <= self.level:
            raise ValueError(f"parent level {self.parent_level} must be in 0..{self.level}")

    def expand(self, pbegin: Any) -> Any:
        return (pbegin
                | "Start" >> beam.Create([None])
                | "Parents" >> beam.ParDo(_Parents(self.metros, self.parent_level))
                | "SpreadParents" >> beam.Reshuffle()
                | "Children" >> beam.ParDo(_Children(self.metros, self.level)))


# ---------------------------------------------------------------- shards


class _SpillSample(beam.DoFn):
    """``EncodedSample`` -> ``SampleFile``: the bytes go to a file, a small record goes on."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def process(self, sample: EncodedSample) -> Iterator[SampleFile]:
        yield spill_sample(self.out_dir, sample)


class _WriteShard(beam.DoFn):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir.rstrip("/")

    def process(self, element: tuple[tuple[str, str, int], Iterable[SampleFile]]) -> Iterator[dict[str, Any]]:
        shard = ShardId(*element[0])
        records = sorted(element[1], key=lambda r: r.key)
        folder = f"{self.out_dir}/shards/{shard.split}"
        final = f"{folder}/{shard.name}.tar"
        tmp = f"{final}.tmp-{uuid.uuid4().hex}"
        with create(tmp) as f:  # one sample in memory at a time
            nbytes, sha = write_tar(f, map(load_sample, records), ordered=True)
        rename(tmp, final)  # a retried bundle replaces the file with the same bytes
        members: Counter[str] = Counter()
        member_bytes: Counter[str] = Counter()
        for r in records:
            for ext, n in r.members:
                members[member_kind(ext)] += 1
                member_bytes[member_kind(ext)] += n
        stats = {"shard": shard.path, "metro": shard.metro, "split": shard.split,
                 "number": shard.number, "samples": len(records), "bytes": nbytes, "sha256": sha,
                 "panoramas": sum(r.panoramas for r in records), "members": dict(sorted(members.items())),
                 "member_bytes": dict(sorted(member_bytes.items())),
                 "first_key": records[0].key, "last_key": records[-1].key,
                 "keys_sha256": keys_sha256(r.key for r in records)}
        write_bytes(f"{folder}/{shard.name}.stats.json", json.dumps(stats, indent=2, sort_keys=True).encode())
        inc_counter("shards", "written")
        inc_counter("shards", "bytes", nbytes)
        yield stats


def _to_shard(element: tuple[str, dict[str, list[Any]]]) -> Iterator[tuple[tuple[str, str, int], SampleFile]]:
    """A sample key's shards and sample records (joined) -> (shard, record). A key the plan listed twice
    (two samples under one key) goes to the lowest of its shards, deterministically."""
    key, joined = element
    shards, samples = list(joined["shard"]), list(joined["sample"])
    if samples and not shards:  # the plan is made from these very records: a bug, not bad input
        raise RuntimeError(f"sample {key} has no shard in the plan")
    for record in samples:
        yield min(shards), record


class _Plan(beam.DoFn):
    """One metro and split's sample sizes -> ``DIR/plan/{metro}-{split}.json`` and each key's shard."""

    def __init__(self, out_dir: str, max_samples: int, max_bytes: int, mix_seed: int | None) -> None:
        self.out_dir = out_dir.rstrip("/")
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.mix_seed = mix_seed

    def process(self, element: tuple[tuple[str, str], Iterable[tuple[str, int]]]
                ) -> Iterator[tuple[str, tuple[str, str, int]]]:
        (metro, split), group = element
        sizes = list(group)
        mix = self.mix_seed if split == "train" else None  # test shards stay in S2 order
        shards = plan_shards(sizes, self.max_samples, self.max_bytes, mix)
        record = plan_record(metro, split, sizes, shards)
        write_bytes(f"{self.out_dir}/{PLAN_FOLDER}/{metro}-{split}.json",
                    json.dumps(record, indent=2, sort_keys=True).encode())  # a retry writes the same bytes
        inc_counter("shards", "planned", len(shards))
        for number, keys in enumerate(shards):
            for key in keys:
                yield f"{metro}/{key}", (metro, split, number)  # a plain tuple: a deterministic GroupByKey key


@dataclass(eq=False)
class WriteShards(beam.PTransform):
    """``EncodedSample``s -> ``DIR/shards/{split}/{metro}-{split}-{NNNNNN}.tar`` plus a stats JSON each, and
    the plan of each metro and split (``DIR/plan/{metro}-{split}.json``).

    Each sample's bytes go to a file of its own as soon as it is rendered (``DIR/.unigeo-samples/``,
    ``shards.spill_sample``); from there on only a small ``SampleFile`` record per sample travels through
    the runner. Shards are planned from sample sizes alone (cut at ``max_samples`` or ``max_bytes``); each
    key meets its shard in a keyed join (no worker holds a plan), and a shard's writer streams its samples'
    files into the tar in key order, one sample in memory at a time. Test shards take keys in S2 order;
    with ``mix_seed`` training shards take them in a seeded hash order (``plan_shards``), so that training
    batches mix the whole metro. The plan and the stats each carry the shard's sample count and key digest,
    so that the build can check, before it publishes, that every shard holds what its plan gave it. The
    sample files stay until the build deletes them (``remove_sample_files``), so a retried shard finds them.
    """

    out_dir: str
    max_samples: int
    max_bytes: int
    mix_seed: int | None = None

    def __post_init__(self) -> None:
        super().__init__()
        if self.max_samples < 1 or self.max_bytes < 1:
            raise ValueError("shard limits must be positive")

    def expand(self, samples: Any) -> Any:
        records = samples | "Spill" >> beam.ParDo(_SpillSample(self.out_dir))
        plan = (records
                | "Sizes" >> beam.Map(lambda r: ((r.metro, r.split), (r.key, r.nbytes)))
                | "GroupSizes" >> beam.GroupByKey()
                | "Plan" >> beam.ParDo(_Plan(self.out_dir, self.max_samples, self.max_bytes, self.mix_seed)))
        keyed = records | "ByKey" >> beam.Map(lambda r: (f"{r.metro}/{r.key}", r))
        return ({"shard": plan, "sample": keyed}
                | "JoinPlan" >> beam.CoGroupByKey()
                | "ToShard" >> beam.FlatMap(_to_shard)
                | "GroupShards" >> beam.GroupByKey()
                | "Write" >> beam.ParDo(_WriteShard(self.out_dir)))


