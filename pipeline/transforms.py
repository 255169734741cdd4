"""The build job's PTransforms: thin wiring around the pure functions of ``pipeline`` and ``sources``.

Each transform is a dataclass that checks its arguments when the pipeline is built. DoFns are
idempotent: a retried bundle recomputes the same elements, and shard files are written to a
temporary name and renamed, so a retry overwrites a file with the same bytes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import numpy as np
import shapely
from apache_beam.pvalue import TaggedOutput
from shapely.geometry.base import BaseGeometry

from unigeo.core.fileio import create, rename, write_bytes
from unigeo.core.sample import JSON, REJECTED, LedgerRow, Reject, SampleKey, capture_year, member_kind
from unigeo.pipeline.cells import cell_center, check_level, children_in, parent_cells
from unigeo.pipeline.coders import SampleKeyCoder  # noqa: F401  registers the key coder
from unigeo.pipeline.locate import assign, select
from unigeo.pipeline.metrics import inc_counter
from unigeo.pipeline.shards import EncodedSample, ShardId, plan_shards, write_tar
from unigeo.pipeline.staging import load_metros
from unigeo.pipeline.types import Pano
from unigeo.sources.panoramas import (
    DUPLICATE_VALUES,
    IndexChunk,
    check_rows,
    index_chunks,
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


class _CheckRows(beam.DoFn):
    def __init__(self, base_dir: str) -> None:
        self.base_dir = base_dir

    def process(self, chunk: IndexChunk) -> Iterator[Any]:
        for offset, df in read_chunk(chunk):
            table = check_rows(df, self.base_dir, offset)
            inc_counter("ingest", "rows_in", len(df))
            inc_counter("ingest", "rows_valid", len(table.good))
            good: list[dict[str, Any]] = table.good.to_dict(orient="records")  # type: ignore[assignment]
            for r in good:
                yield Pano(int(r["row"]), str(r["pano_id"]), float(r["lat"]), float(r["lon"]),
                           float(r["heading_deg"]), str(r["captured_at"]), int(r["year"]), str(r["uri"]))
            raw: list[dict[str, Any]] = df.to_dict(orient="records")  # type: ignore[assignment]
            rejected: list[dict[str, Any]] = table.rejects.to_dict(orient="records")  # type: ignore[assignment]
            for r in rejected:
                inc_counter("ingest", f"rejected/{r['reason']}")
                row = int(r["row"])
                yield TaggedOutput(REJECTS, Reject("panorama", str(r["pano_id"]), str(r["reason"]), str(r["detail"]),
                                                   _raw(raw[row - offset]), row))


class _ResolveDuplicates(beam.DoFn):
    def process(self, element: tuple[str, Iterable[Pano]]) -> Iterator[Any]:
        _, group = element
        panos = list(group)
        if len(panos) == 1:
            yield panos[0]
            return
        values = [(p.row, tuple(getattr(p, c) for c in DUPLICATE_VALUES)) for p in panos]
        verdicts = resolve_duplicates(values)
        for p in panos:
            if p.row in verdicts:
                reason, detail = verdicts[p.row]
                inc_counter("ingest", f"rejected/{reason}")
                yield TaggedOutput(REJECTS, Reject("panorama", p.pano_id, reason, detail, dict(p.as_json()), p.row))
            else:
                yield p


@dataclass(eq=False)
class ReadPanoramas(beam.PTransform):
    """Panorama index -> valid, de-duplicated ``Pano`` elements (``good``) and ``Reject``s (``rejects``).

    The index is split into chunks when the pipeline is built (a bad or incomplete index fails then).
    """

    path: str
    base_dir: str
    chunks: list[IndexChunk] = field(init=False)

    def __post_init__(self) -> None:
        super().__init__()
        self.chunks = index_chunks(self.path)

    def expand(self, pbegin: Any) -> dict[str, Any]:
        checked = (pbegin
                   | "Chunks" >> beam.Create(self.chunks)
                   | "Spread" >> beam.Reshuffle()
                   | "CheckRows" >> beam.ParDo(_CheckRows(self.base_dir)).with_outputs(REJECTS, main="good"))
        unique = (checked.good
                  | "ById" >> beam.Map(lambda p: (p.pano_id, p))
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
    def __init__(self, metros_path: str, level: int, holdout_year: int, years: tuple[int, int]):
        self.metros_path = metros_path
        self.level = level
        self.holdout_year = holdout_year
        self.years = years
        self._metros: list[tuple[str, BaseGeometry]] = []

    def setup(self) -> None:
        self._metros = _prepared(load_metros(self.metros_path))

    def process(self, p: Pano) -> Iterator[Any]:
        result = assign(p, self._metros, self.level, self.holdout_year, self.years)
        if isinstance(result, Reject):
            inc_counter("assign", f"rejected/{result.reason}")
            yield TaggedOutput(REJECTS, result)
            return
        inc_counter("assign", result.split)
        yield result, p


@dataclass(eq=False)
class AssignCells(beam.PTransform):
    """``Pano`` -> ``(SampleKey, Pano)``; panoramas outside every metro or out of the year range are rejected."""

    metros: str  # the staged metros (pipeline.staging), loaded on the workers
    level: int
    holdout_year: int
    years: tuple[int, int]

    def __post_init__(self) -> None:
        super().__init__()
        check_level(self.level)
        if self.years[0] > self.years[1]:
            raise ValueError(f"empty year range {self.years}")

    def expand(self, panos: Any) -> Any:
        return panos | "Assign" >> beam.ParDo(
            _Assign(self.metros, self.level, self.holdout_year, self.years)).with_outputs(REJECTS, main="keyed")


class _Select(beam.DoFn):
    def __init__(self, max_panos: int, seed: int, level: int) -> None:
        self.max_panos = max_panos
        self.seed = seed
        self.level = level

    def process(self, element: tuple[SampleKey, Iterable[Pano]]) -> Iterator[Any]:
        key, group = element
        panos = list(group)
        sample, not_selected = select(key, panos, self.max_panos, self.seed, self.level)
        inc_counter("select", "selected", len(sample["panoramas"]))
        inc_counter("select", "not_selected", len(not_selected))
        inc_counter("select", f"samples/{key.split}")
        for row in not_selected:
            yield TaggedOutput(LEDGER, row)
        yield key, sample


@dataclass(eq=False)
class SelectPanoramas(beam.PTransform):
    """``(SampleKey, Pano)`` -> one ``(SampleKey, sample json)`` per key with up to ``max_panos``
    panoramas chosen by farthest-point sampling, and a ``not_selected`` ``LedgerRow`` for each other
    panorama (``ledger``); the imagery stage writes the selected panoramas' rows."""

    max_panos: int
    seed: int
    level: int

    def __post_init__(self) -> None:
        super().__init__()
        if self.max_panos < 1:
            raise ValueError(f"max_panos must be >= 1, got {self.max_panos}")

    def expand(self, keyed: Any) -> Any:
        return (keyed
                | "TypeKeys" >> beam.Map(lambda kv: kv).with_output_types(tuple[SampleKey, Pano])
                | "GroupByCell" >> beam.GroupByKey()
                | "FarthestPoints" >> beam.ParDo(_Select(self.max_panos, self.seed, self.level))
                .with_outputs(LEDGER, main="samples"))


def reject_to_ledger(r: Reject) -> LedgerRow:
    return LedgerRow(r.row, r.id, r.metro, r.cell, "", REJECTED, r.reason, r.detail,
                     capture_year(r.record.get("captured_at")))


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

    def process(self, element: tuple[str, str]) -> Iterator[dict[str, Any]]:
        name, parent = element
        geom = self._geoms[name]
        for token in children_in(geom, parent, self.level):
            lat, lon = cell_center(token)
            inc_counter("cover", f"cells/{name}")
            yield {"metro": name, "cell": token, "lat": lat, "lon": lon}


@dataclass(eq=False)
class CoverMetros(beam.PTransform):
    """Metros -> every S2 cell at ``level`` that intersects each, as ``{metro, cell, lat, lon}`` rows."""

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


class _WriteShard(beam.DoFn):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir.rstrip("/")

    def process(self, element: tuple[tuple[str, str, int], Iterable[EncodedSample]]) -> Iterator[dict[str, Any]]:
        shard = ShardId(*element[0])
        group = element[1]
        samples = sorted(group, key=lambda s: s.key)
        folder = f"{self.out_dir}/shards/{shard.split}"
        final = f"{folder}/{shard.name}.tar"
        tmp = f"{final}.tmp-{uuid.uuid4().hex}"
        with create(tmp) as f:
            nbytes, sha = write_tar(f, samples)
        rename(tmp, final)  # a retried bundle replaces the file with the same bytes
        panoramas = sum(len(json.loads(dict(s.members)[JSON])["panoramas"]) for s in samples)
        members: dict[str, int] = {}
        member_bytes: dict[str, int] = {}
        for s in samples:
            for ext, data in s.members:
                kind = member_kind(ext)
                members[kind] = members.get(kind, 0) + 1
                member_bytes[kind] = member_bytes.get(kind, 0) + len(data)
        stats = {"shard": f"shards/{shard.split}/{shard.name}.tar", "metro": shard.metro, "split": shard.split,
                 "number": shard.number, "samples": len(samples), "bytes": nbytes, "sha256": sha,
                 "panoramas": panoramas, "members": dict(sorted(members.items())),
                 "member_bytes": dict(sorted(member_bytes.items())),
                 "first_key": samples[0].key, "last_key": samples[-1].key}
        write_bytes(f"{folder}/{shard.name}.stats.json", json.dumps(stats, indent=2, sort_keys=True).encode())
        inc_counter("shards", "written")
        inc_counter("shards", "bytes", nbytes)
        yield stats


def _plan(element: tuple[tuple[str, str], Iterable[tuple[str, int]]], max_samples: int,
          max_bytes: int) -> Iterator[tuple[str, tuple[str, str, int]]]:
    (metro, split), sizes = element
    for number, keys in enumerate(plan_shards(sizes, max_samples, max_bytes)):
        for key in keys:
            yield f"{metro}/{key}", (metro, split, number)  # a plain tuple: a deterministic GroupByKey key


@dataclass(eq=False)
class WriteShards(beam.PTransform):
    """``EncodedSample``s -> ``DIR/shards/{split}/{metro}-{split}-{NNNNNN}.tar`` plus a stats JSON each.

    Shards are planned from sample sizes alone (keys in S2 order, cut at ``max_samples`` or
    ``max_bytes``), so a worker holds one shard's samples at most, never a whole metro.
    """

    out_dir: str
    max_samples: int
    max_bytes: int

    def __post_init__(self) -> None:
        super().__init__()
        if self.max_samples < 1 or self.max_bytes < 1:
            raise ValueError("shard limits must be positive")

    def expand(self, samples: Any) -> Any:
        plan = (samples
                | "Sizes" >> beam.Map(lambda s: ((s.metro, s.split), (s.key, s.nbytes)))
                | "GroupSizes" >> beam.GroupByKey()
                | "Plan" >> beam.FlatMap(_plan, self.max_samples, self.max_bytes))
        return (samples
                | "ToShard" >> beam.Map(lambda s, shard_of: (shard_of[f"{s.metro}/{s.key}"], s),
                                        beam.pvalue.AsDict(plan))
                | "GroupShards" >> beam.GroupByKey()
                | "Write" >> beam.ParDo(_WriteShard(self.out_dir)))


