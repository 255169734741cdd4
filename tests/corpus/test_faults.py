"""Fault injection: panoramas read through a filesystem whose reads fail transiently give the same
shards as a clean run; a file that does not exist is a reject; a file that never reads fails the build
(the runner's retries are for that) and leaves the earlier build as it was; a sample lost inside the job
fails the build's reconciliation (exit 1) and leaves the earlier build as it was."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import fsspec
import pandas as pd
import pytest
from fsspec.implementations.local import LocalFileSystem

from tests.corpus.test_bad_inputs import audit_ok, build, copy_world, snapshot
from unigeo.core import reasons
from unigeo.pipeline import imagery, render, transforms
from unigeo.pipeline.shards import EncodedSample


class FlakyFileSystem(LocalFileSystem):
    """Local files under ``flaky://``; opening a file named in ``failures`` raises ``ConnectionResetError``
    that many times first (a dropped connection to an object store)."""

    protocol = "flaky"
    failures: ClassVar[dict[str, int]] = {}
    opened: ClassVar[dict[str, int]] = {}

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        path = str(path)
        if path.startswith("flaky://"):
            path = path[len("flaky://"):]
        return super()._strip_protocol(path)

    def _open(self, path: str, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
        name = Path(path).name
        tries = self.opened[name] = self.opened.get(name, 0) + 1
        if "r" in mode and tries <= self.failures.get(name, 0):
            raise ConnectionResetError(f"injected: connection reset reading {name} (try {tries})")
        return super()._open(path, mode, *args, **kwargs)


@pytest.fixture
def flaky(tiny_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the tiny world whose panorama URIs are ``flaky://`` URLs; no retry waits."""
    fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)
    monkeypatch.setattr(render, "READ_BACKOFF_S", 0.0)
    FlakyFileSystem.failures, FlakyFileSystem.opened = {}, {}
    world = copy_world(tiny_world, tmp_path / "world")
    index = pd.read_parquet(world / "panos.parquet")
    index["uri"] = [f"flaky://{world / u}" for u in index["uri"]]
    index.to_parquet(world / "panos.parquet", index=False)
    return world


def shard_digests(out: Path) -> list[tuple[str, str]]:
    return [(s["shard"], s["sha256"]) for s in json.loads((out / "manifest.json").read_text())["shards"]]


def test_transient_read_errors_are_retried_to_the_same_shards(flaky: Path, tmp_path: Path) -> None:
    clean = build(flaky, tmp_path / "clean")
    assert clean.exit_code == 0, clean.output
    names = sorted(p.name for p in (flaky / "panos").glob("*.jpg"))
    FlakyFileSystem.failures = {n: 1 + i % 3 for i, n in enumerate(names[::2])}  # 1-3 failures, every other file
    FlakyFileSystem.opened = {}
    faulty = build(flaky, tmp_path / "faulty")
    assert faulty.exit_code == 0, faulty.output
    assert any(FlakyFileSystem.opened.get(n, 0) > 1 for n in FlakyFileSystem.failures)  # faults did happen
    assert shard_digests(tmp_path / "faulty") == shard_digests(tmp_path / "clean")
    ledgers = [pd.concat(pd.read_parquet(p) for p in sorted((tmp_path / o / "ledger").glob("*.parquet")))
               .sort_values("row").reset_index(drop=True) for o in ("clean", "faulty")]
    pd.testing.assert_frame_equal(*ledgers)
    audit_ok(tmp_path / "faulty")


def test_a_missing_file_is_a_reject_not_a_retry(flaky: Path, tiny_build: Path, tmp_path: Path) -> None:
    kept = pd.concat(pd.read_parquet(p) for p in (tiny_build / "ledger").glob("*.parquet"))
    row = int(kept[kept["status"] == "kept"]["row"].min())  # a panorama every build selects
    index = pd.read_parquet(flaky / "panos.parquet")
    victim = Path(index["uri"].iloc[row][len("flaky://"):])
    victim.unlink()
    r = build(flaky, tmp_path / "out")
    assert r.exit_code == 0, r.output
    ledger = pd.concat(pd.read_parquet(p) for p in (tmp_path / "out" / "ledger").glob("*.parquet")).set_index("row")
    assert ledger.loc[row, "reason"] == reasons.MISSING_FILE and victim.name in ledger.loc[row, "detail"]
    assert FlakyFileSystem.opened.get(victim.name, 0) == 1  # tried once, never retried
    audit_ok(tmp_path / "out")


def test_a_file_that_never_reads_fails_the_build_and_keeps_the_earlier_one(flaky: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    first = build(flaky, out)
    assert first.exit_code == 0, first.output
    before = snapshot(out)
    kept = json.loads((out / "manifest.json").read_text())["counts"]["overall"]["kept"]
    assert kept > 0
    names = sorted(p.name for p in (flaky / "panos").glob("*.jpg"))
    FlakyFileSystem.failures = dict.fromkeys(names, 10**6)  # the store is down
    r = build(flaky, out, "--max-panos", "1")
    assert r.exit_code == 1 and "build failed" in r.output and "ConnectionResetError" in r.output
    assert snapshot(out) == before
    audit_ok(out)


# ---------------------------------------------------------------- samples lost inside the job


def drop_from_shard_writer(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    """A shard writer that loses sample ``key`` from its shard, as a data plane that drops elements would:
    the tar and its stats agree with each other, one sample short."""
    original = transforms._WriteShard.process

    def lossy(self: Any, element: Any) -> Any:
        shard, group = element
        return original(self, (shard, [s for s in group if s.key != key]))

    monkeypatch.setattr(transforms._WriteShard, "process", lossy)


def drop_before_the_plan(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    """The imagery stage loses rendered sample ``key`` on its way to the shards (its ledger rows and
    summary still arrive)."""
    original = imagery._RenderSample.process

    def lossy(self: Any, element: Any) -> Any:
        for out in original(self, element):
            if isinstance(out, EncodedSample) and out.key == key:
                continue
            yield out

    monkeypatch.setattr(imagery._RenderSample, "process", lossy)


@pytest.mark.parametrize(("inject", "message"), [
    (drop_from_shard_writer, "riverton-train-000000.tar: 1 samples, expected 2 (1 missing)"),
    (drop_before_the_plan, "riverton train plan: {short} samples, expected {train} (1 missing)"),
])
def test_a_sample_lost_inside_the_job_fails_the_build_and_keeps_the_earlier_one(
        inject: Any, message: str, tiny_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "data"
    first = build(tiny_world, out, "--shard-max-samples", "2")
    assert first.exit_code == 0, first.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["reconciliation"]["samples"] == manifest["reconciliation"]["in_shards"] > 2
    first_shard = json.loads((out / "shards" / "train" / "riverton-train-000000.stats.json").read_text())
    before = snapshot(out)
    inject(monkeypatch, first_shard["first_key"])
    r = build(tiny_world, out, "--shard-max-samples", "2")
    assert r.exit_code == 1, r.output
    assert "build not published" in r.output and "Traceback" not in r.output
    train = manifest["counts"]["overall"]["samples"]["train"]
    assert message.format(short=train - 1, train=train) in r.output, r.output
    assert snapshot(out) == before
    audit_ok(out)
