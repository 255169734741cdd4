"""The reconciliation of ledger, samples table, shard plan and shard stats, on hand-made records."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from unigeo.core.errors import ReconciliationError
from unigeo.core.sample import KEPT, NOT_SELECTED, keys_sha256, sample_key
from unigeo.outputs.ledger import LedgerSummary, summarize_frame
from unigeo.outputs.reconcile import reconcile
from unigeo.pipeline.shards import plan_record, plan_shards

CELLS = [f"89c25{i:03x}" for i in range(7)]


def ledger(split: str = "train", panos_per_cell: int = 2) -> LedgerSummary:
    rows = []
    for c in CELLS:
        for j in range(panos_per_cell):
            rows.append({"row": len(rows), "metro": "m", "cell": c, "split": split,
                         "status": KEPT if j == 0 else NOT_SELECTED})
    return summarize_frame(pd.DataFrame(rows))


def plan(split: str = "train") -> dict[str, Any]:
    sizes = sorted((sample_key(c, split), 1000 + i) for i, c in enumerate(CELLS))
    return plan_record("m", split, sizes, plan_shards(sizes, 3, 10**9))


def stats_of(p: dict[str, Any]) -> list[dict[str, Any]]:
    """The stats a writer that got exactly its plan would write (one kept panorama per sample)."""
    return [{"shard": e["shard"], "samples": e["samples"], "keys_sha256": e["keys_sha256"], "panoramas": e["samples"]}
            for e in p["shards"]]


def samples_table(keys: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"metro": ["m"] * len(keys), "split": ["train"] * len(keys)})


def test_agreeing_records_reconcile() -> None:
    p = plan()
    result = reconcile(ledger(), samples_table(CELLS), [p], stats_of(p), input_rows=14)
    assert result.ok, result.problems
    assert result.checked == {"samples": 7, "planned": 7, "in_shards": 7, "shards": 3, "plans": 1}
    assert [e["samples"] for e in p["shards"]] == [3, 3, 1]


def test_a_shard_short_of_its_plan_is_named_with_its_counts() -> None:
    p = plan()
    stats = stats_of(p)
    stats[1] = {**stats[1], "samples": 2, "panoramas": 2, "keys_sha256": keys_sha256(["x", "y"])}
    problems = reconcile(ledger(), None, [p], stats).problems
    assert f"{p['shards'][1]['shard']}: 2 samples, expected 3 (1 missing)" in problems
    assert "m train shards: 6 panoramas, expected 7 (1 missing)" in problems


def test_same_count_other_keys_missing_and_unplanned_shards_are_problems() -> None:
    p = plan()
    stats = stats_of(p)
    stats[0] = {**stats[0], "keys_sha256": keys_sha256(["a", "b", "c"])}
    unplanned = {"shard": "shards/train/m-train-000009.tar", "samples": 1, "keys_sha256": "0", "panoramas": 0}
    problems = reconcile(ledger(), None, [p], [stats[0], stats[1], unplanned]).problems
    assert any(p["shards"][0]["shard"] in x and "not the ones its plan gave it" in x for x in problems)
    assert f"{p['shards'][2]['shard']}: not written (planned 1 samples)" in problems
    assert "shards/train/m-train-000009.tar: written with 1 samples but in no plan" in problems


def test_a_sample_lost_before_the_plan_or_planned_twice_is_caught() -> None:
    lost = plan_record("m", "train", [(sample_key(c, "train"), 1) for c in CELLS[1:]],
                       plan_shards([(sample_key(c, "train"), 1) for c in CELLS[1:]], 3, 10**9))
    assert "m train plan: 6 samples, expected 7 (1 missing)" in reconcile(ledger(), None, [lost],
                                                                            stats_of(lost)).problems
    twice = sorted([(sample_key(c, "train"), 1) for c in CELLS] + [(sample_key(CELLS[0], "train"), 1)])
    doubled = plan_record("m", "train", twice, plan_shards(twice, 3, 10**9))
    assert "m train plan: 8 samples, expected 7 (1 extra)" in reconcile(ledger(), None, [doubled],
                                                                          stats_of(doubled)).problems
    swapped = [(sample_key(c, "train"), 1) for c in CELLS[1:]] + [("89c25fff_train", 1)]
    other = plan_record("m", "train", sorted(swapped), plan_shards(sorted(swapped), 3, 10**9))
    assert "m train plan: 7 samples, but not the ones the ledger kept" in reconcile(ledger(), None, [other],
                                                                                     stats_of(other)).problems


def test_missing_plan_samples_table_rows_and_ledger_rows_are_problems() -> None:
    p = plan()
    problems = reconcile(ledger(), samples_table(CELLS[:5]), [], stats_of(p), input_rows=15).problems
    assert "ledger: 14 rows (14 distinct) for 15 input rows" in problems
    assert "m train: the ledger kept 7 samples but no shard plan was written" in problems
    assert all("written with" in x for x in problems[2:])  # its shards are in no plan
    assert "m train samples table: 5 rows, expected 7 (2 missing)" in reconcile(
        ledger(), samples_table(CELLS[:5]), [p], stats_of(p)).problems


def test_the_error_lists_twenty_problems_and_counts_the_rest() -> None:
    e = ReconciliationError([f"problem {i}" for i in range(25)])
    text = str(e)
    assert text.startswith("25 disagreement(s)") and "problem 19" in text and "problem 20" not in text
    assert "... and 5 more" in text
    with pytest.raises(RuntimeError):
        raise e


def test_a_negative_row_in_place_of_an_input_row_is_a_problem() -> None:
    rows = [{"row": -1 if i == 3 else i, "metro": "m", "cell": CELLS[i // 2], "split": "train",
             "status": KEPT if i % 2 == 0 else NOT_SELECTED} for i in range(14)]
    problems = reconcile(summarize_frame(pd.DataFrame(rows)), None, [plan()], stats_of(plan()), input_rows=14).problems
    assert "ledger: 14 rows (13 distinct) for 14 input rows" in problems
