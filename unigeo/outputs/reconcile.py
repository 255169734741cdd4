"""A build's self-check before it publishes: ledger, shard plan and shard stats agree, sample by sample.

Three records of the same samples come from different parts of the job: the ledger (the panoramas the
imagery stage kept, so the sample keys ``{cell}_{split}`` it rendered), the shard plan (the samples that
reached the shard planner, ``DIR/plan/{metro}-{split}.json``) and each shard's stats (the samples its
writer put in the tar). Each records a sample count and a SHA-256 of the sorted sample keys per shard or
per metro and split, so comparing them proves that every kept sample is in exactly one shard, the one
its plan chose, without re-reading a shard. Only small files are read: the plans, the stats (which the
manifest reads anyway) and two columns of the samples table (a row per sample); the ledger comes as the
summary the manifest folds it into anyway (``unigeo.outputs.ledger``), in memory bounded by the samples.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from unigeo.core.build_files import read_json, read_samples
from unigeo.core.errors import ReconciliationError
from unigeo.core.fileio import glob
from unigeo.core.sample import keys_sha256
from unigeo.outputs.ledger import LedgerSummary


@dataclass
class Reconciliation:
    """What was compared (``checked``) and every disagreement found (``problems``, empty when all agree)."""

    problems: list[str] = field(default_factory=list)
    checked: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def read_plans(out: str) -> list[dict[str, Any]]:
    """Every metro and split's shard plan (``DIR/plan/*.json``)."""
    return [read_json(p) for p in glob(out, "plan/*.json")]


def _count(problems: list[str], what: str, got: int, expected: int, of: str) -> None:
    if got != expected:
        gap = f"{expected - got} missing" if got < expected else f"{got - expected} extra"
        problems.append(f"{what}: {got} {of}, expected {expected} ({gap})")


def reconcile(ledger: LedgerSummary, samples: pd.DataFrame | None, plans: list[dict[str, Any]],
              stats: list[dict[str, Any]], input_rows: int | None = None) -> Reconciliation:
    """Compare the ledger's kept samples, the samples table (``None``: not compared), the shard plans and
    the shard stats; every disagreement is a problem naming the shard or split and the counts.

    Checks: the ledger holds one row per input row the job read (``input_rows``, when given). Per metro
    and split: the plan holds exactly the ledger's sample keys; the samples table has a
    row per sample; the shards' panoramas add up to the ledger's kept panoramas. Per shard: it was
    written with the plan's sample count and keys; no shard was written that the plan lacks.
    """
    problems: list[str] = []
    if input_rows is not None:
        n, distinct = ledger.n_rows, ledger.rows.distinct  # distinct rows at or above 0
        if n != input_rows or distinct != n or ledger.rows.beyond(input_rows):
            problems.append(f"ledger: {n} rows ({distinct} distinct) for {input_rows} input rows")
    expected = ledger.kept_samples()
    plan_of = {(str(p["metro"]), str(p["split"])): p for p in plans}
    stats_of = {str(s["shard"]): s for s in stats}
    table = (samples.groupby(["metro", "split"]).size().to_dict() if samples is not None and len(samples)
             else {})
    planned_shards: set[str] = set()
    for group in sorted(set(expected) | set(plan_of)):
        name = f"{group[0]} {group[1]}"
        keys, panoramas = expected.get(group, ([], 0))
        plan = plan_of.get(group)
        if plan is None:
            problems.append(f"{name}: the ledger kept {len(keys)} samples but no shard plan was written")
            continue
        _count(problems, f"{name} plan", int(plan["samples"]), len(keys), "samples")
        if plan["samples"] == len(keys) and plan["keys_sha256"] != keys_sha256(keys):
            problems.append(f"{name} plan: {plan['samples']} samples, but not the ones the ledger kept")
        if samples is not None:
            _count(problems, f"{name} samples table", int(table.get(group, 0)), len(keys), "rows")
        in_shards = 0
        for entry in plan["shards"]:
            path = str(entry["shard"])
            planned_shards.add(path)
            got = stats_of.get(path)
            if got is None:
                problems.append(f"{path}: not written (planned {entry['samples']} samples)")
                continue
            in_shards += int(got.get("panoramas", 0))
            _count(problems, path, int(got["samples"]), int(entry["samples"]), "samples")
            if got["samples"] == entry["samples"] and got.get("keys_sha256") != entry["keys_sha256"]:
                problems.append(f"{path}: {got['samples']} samples, but not the ones its plan gave it")
        _count(problems, f"{name} shards", in_shards, panoramas, "panoramas")
    for path in sorted(set(stats_of) - planned_shards):
        problems.append(f"{path}: written with {stats_of[path]['samples']} samples but in no plan")
    checked = {"samples": sum(len(k) for k, _ in expected.values()),
               "planned": sum(int(p["samples"]) for p in plans),
               "in_shards": sum(int(s["samples"]) for s in stats),
               "shards": len(stats), "plans": len(plans)}
    return Reconciliation(problems, checked)


def check_build(out: str, ledger: LedgerSummary, stats: list[dict[str, Any]], input_rows: int | None = None
                ) -> dict[str, Any]:
    """Reconcile a written build with its ledger and shard stats (read by the caller, which needs them for
    the manifest); the plans and the samples table are read from ``out``. Returns what was checked, with
    the seconds the check took.

    Raises:
        ReconciliationError: any disagreement, each named.
    """
    started = time.perf_counter()
    result = reconcile(ledger, read_samples(out, ["metro", "split"]), read_plans(out), stats, input_rows)
    if not result.ok:
        raise ReconciliationError(result.problems)
    return {**result.checked, "seconds": round(time.perf_counter() - started, 4)}
