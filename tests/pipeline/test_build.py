"""``unigeo build`` on the tiny synthetic world, end to end, then ``unigeo audit``."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from tests.conftest import TINY_BUILD_ARGS
from unigeo.cli import cli
from unigeo.pipeline.shards import encode_sample, write_tar


def build(world: Path, out: Path, *extra: str) -> dict:
    result = CliRunner().invoke(cli, ["-q", "build", "--config", str(world / "sources.yaml"), "--out", str(out),
                                      *TINY_BUILD_ARGS, *extra])
    assert result.exit_code == 0, result.output
    return json.loads((out / "manifest.json").read_text())


def audit(out: Path) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["audit", str(out)])
    return result.exit_code, json.loads(result.output)


@pytest.fixture
def built(tiny_build: Path) -> Path:
    return tiny_build


def test_build_accounts_for_every_panorama(built: Path, tiny_world_info: dict) -> None:
    m = json.loads((built / "manifest.json").read_text())
    c = m["counts"]["overall"]
    assert c["inputs"] == tiny_world_info["counts"]["index_rows"]
    assert c["inputs"] == c["kept"] + c["not_selected"] + c["rejected"]
    assert c["kept"] > 0 and c["not_selected"] > 0 and c["samples"]["train"] > 0 and c["samples"]["test"] > 0
    reasons = c["rejected_by_reason"]
    assert {"outside_metros", "year_out_of_range", "bad_date", "duplicate_id_conflict"} <= set(reasons)
    metro = m["counts"]["per_metro"]["riverton"]
    assert metro["cells"] > 10 and metro["inputs"] + m["counts"]["unassigned"]["inputs"] == c["inputs"]
    assert m["options"]["level"] == 16 and m["options"]["max_panos"] == 2 and m["seed"] == 0
    assert m["counters"]["ingest/rows_in"] == c["inputs"]
    ledger = pd.read_parquet(next((built / "ledger").glob("*.parquet")))
    assert sorted(ledger["row"]) == list(range(c["inputs"]))
    rejects = [json.loads(line) for f in (built / "rejects").glob("*.jsonl") for line in f.read_text().splitlines()]
    panoramas = [r for r in rejects if r["kind"] == "panorama"]
    assert len(panoramas) == c["rejected"] and all(r["reason"] and r["record"] for r in rejects)
    kinds = m["counts"]["overall"]["rejects_by_kind"]
    assert sum(kinds["panorama"].values()) == c["rejected"]
    assert sum(sum(v.values()) for v in kinds.values()) == len(rejects)


def test_shards_hold_the_kept_panoramas_in_their_split(built: Path) -> None:
    m = json.loads((built / "manifest.json").read_text())
    assert m["shards"] and all(s["samples"] <= 4 for s in m["shards"])
    seen = []
    for s in m["shards"]:
        assert Path(built / s["shard"]).name.startswith(f"riverton-{s['split']}-")
        with tarfile.open(built / s["shard"]) as tar:
            for info in tar:
                if not info.name.endswith(".json"):
                    continue
                meta = json.loads(tar.extractfile(info).read())  # type: ignore[union-attr]
                assert info.name == f"{meta['cell']}_{meta['split']}.json" and meta["split"] == s["split"]
                years = {int(p["captured_at"][:4]) for p in meta["panoramas"]}
                assert (years == {2023}) if s["split"] == "test" else (2023 not in years)
                assert 1 <= len(meta["panoramas"]) <= 2
                seen += [p["row"] for p in meta["panoramas"]]
    assert len(seen) == len(set(seen)) == m["counts"]["overall"]["kept"]


def test_audit_passes_on_a_clean_build(built: Path) -> None:
    code, result = audit(built)
    assert code == 0 and result["ok"], result["violations"]
    assert result["checked"]["ledger_rows"] == result["checked"]["input_rows"]


def corrupt_copy(built: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(built, out)
    return out


def test_audit_catches_a_corrupted_shard(built: Path, tmp_path: Path) -> None:
    out = corrupt_copy(built, tmp_path)
    shard = out / json.loads((out / "manifest.json").read_text())["shards"][0]["shard"]
    data = bytearray(shard.read_bytes())
    data[700] ^= 0xFF
    shard.write_bytes(bytes(data))
    code, result = audit(out)
    assert code == 1 and any("sha256" in v for v in result["violations"])


def test_audit_catches_a_missing_ledger_row(built: Path, tmp_path: Path) -> None:
    out = corrupt_copy(built, tmp_path)
    path = next((out / "ledger").glob("*.parquet"))
    ledger = pd.read_parquet(path)
    ledger.iloc[1:].to_parquet(path)
    code, result = audit(out)
    assert code == 1 and any("missing from the ledger" in v for v in result["violations"])


def test_audit_catches_split_leakage(built: Path, tmp_path: Path) -> None:
    """A 2023 panorama moved into a train sample, with the manifest's checksum updated to hide it."""
    out = corrupt_copy(built, tmp_path)
    manifest = json.loads((out / "manifest.json").read_text())
    entry = next(s for s in manifest["shards"] if s["split"] == "train")
    path = out / entry["shard"]
    samples: dict[str, dict] = {}
    with tarfile.open(path) as tar:
        for i in tar:
            key, _, ext = i.name.partition(".")
            data = tar.extractfile(i).read()  # type: ignore[union-attr]
            samples.setdefault(key, {})[ext] = json.loads(data) if ext == "json" else data
    first = sorted(samples)[0]
    samples[first]["json"]["panoramas"][0]["captured_at"] = "2023-05-01T00:00:00Z"
    buf = io.BytesIO()
    entry["bytes"], entry["sha256"] = write_tar(
        buf, [encode_sample("riverton", "train", k, members) for k, members in samples.items()])
    path.write_bytes(buf.getvalue())
    (out / "manifest.json").write_text(json.dumps(manifest))
    code, result = audit(out)
    assert code == 1 and any("of 2023 in a train sample" in v for v in result["violations"])
    assert not any("sha256" in v for v in result["violations"])


def test_audit_catches_a_missing_shard_and_a_bad_manifest(built: Path, tmp_path: Path) -> None:
    out = corrupt_copy(built, tmp_path)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / manifest["shards"][0]["shard"]).unlink()
    code, result = audit(out)
    assert code == 1 and any("missing" in v for v in result["violations"])
    (out / "manifest.json").write_text("{")
    assert audit(out)[0] == 1


# Samples of ~2.6 MB (768-px tiles) in shards of at most 3 MB: 12 shards, 36 MB, that is 36 times the send
# queues of the scaled-down data plane (``small_send_queues``).
LARGE_SHARDS = ("--tile-px", "768", "--shard-max-mb", "3")


@pytest.mark.slow
@pytest.mark.usefixtures("small_send_queues")
def test_large_shards_are_whole_and_identical_on_every_runner_mode(tiny_world: Path, tmp_path: Path) -> None:
    modes = {"in_memory": (), "multi_processing": ("--direct_running_mode=multi_processing", "--direct_num_workers=2"),
             "multi_threading": ("--direct_running_mode=multi_threading", "--direct_num_workers=2")}
    manifests = {mode: build(tiny_world, tmp_path / mode, *LARGE_SHARDS, *args) for mode, args in modes.items()}

    def digests(m: dict) -> list[tuple[str, str]]:
        return [(s["shard"], s["sha256"]) for s in m["shards"]]

    first = manifests["in_memory"]
    assert first["counts"]["overall"]["shard_bytes"] > 30 * 2**20
    assert all(sum(s["split"] == split for s in first["shards"]) >= 4 for split in ("train", "test"))
    for mode, m in manifests.items():
        r = m["reconciliation"]
        samples = m["counts"]["overall"]["samples"]
        assert r["samples"] == r["planned"] == r["in_shards"] == samples["train"] + samples["test"], mode
        assert digests(m) == digests(first), mode
        assert audit(tmp_path / mode)[0] == 0, mode
        left = sorted(p.name for p in (tmp_path / mode).iterdir() if p.name.startswith("."))
        assert left == [], f"{mode} left {left}"  # no staging folder, no sample files


def test_a_rebuild_replaces_earlier_outputs(built: Path, tiny_world: Path, tmp_path: Path) -> None:
    out = corrupt_copy(built, tmp_path)
    (out / "shards" / "train" / "riverton-train-000099.tar").write_bytes(b"stale")
    m = build(tiny_world, out, "--max-panos", "1")
    assert not (out / "shards" / "train" / "riverton-train-000099.tar").exists()
    assert m["options"]["max_panos"] == 1 and audit(out)[0] == 0


def test_location_stages_alone_read_no_image(tiny_world: Path, tmp_path: Path) -> None:
    m = build(tiny_world, tmp_path / "loc", "--no-imagery")
    c = m["counts"]["overall"]
    assert m["options"]["imagery"] is None
    assert c["members"] == {"json": c["samples"]["train"] + c["samples"]["test"]}
    assert "corrupt_jpeg" not in c["rejected_by_reason"]
    assert audit(tmp_path / "loc")[0] == 0


def test_bad_options_and_configs_fail_before_running(tiny_world: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(cli, ["build", "--config", str(tiny_world / "sources.yaml"), "--out", str(tmp_path),
                            "--years", "2024-2017"])
    assert r.exit_code == 2 and "2017-2024" in r.output  # a usage error
    r = runner.invoke(cli, ["build", "--config", str(tmp_path / "none.yaml"), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "not found" in r.output
    assert not (tmp_path / "manifest.json").exists()


def test_manifest_counts_bytes_per_member_kind(built: Path) -> None:
    from unigeo.core.sample import member_kind
    from unigeo.outputs.readers import iter_shard

    manifest = json.loads((built / "manifest.json").read_text())
    found: dict[str, int] = {}
    for s in manifest["shards"]:
        for _, members in iter_shard(str(built / s["shard"])):
            for ext, data in members.items():
                found[member_kind(ext)] = found.get(member_kind(ext), 0) + len(data)
    assert manifest["counts"]["overall"]["member_bytes"] == found and found["dsm.npy"] > 0


def test_sample_json_names_its_sources_relative_to_the_config(tiny_world: Path, tiny_build: Path) -> None:
    """No build machine's absolute path in a sample: panorama uris and tile files are relative to the folder
    of sources.yaml and resolve there to the files the build read."""
    from unigeo.outputs.readers import iter_shard

    manifest = json.loads((tiny_build / "manifest.json").read_text())
    seen = 0
    for s in manifest["shards"]:
        for _, members in iter_shard(str(tiny_build / s["shard"])):
            meta = json.loads(members["json"])
            paths = [p["uri"] for p in meta["panoramas"]]
            paths += [f for kind in ("aerial", "dsm") if meta.get(kind) for f in meta[kind]["files"]]
            for path in paths:
                assert not Path(path).is_absolute() and str(tiny_world) not in path, path
                assert (tiny_world / path).is_file(), path
                seen += 1
    assert seen > 20
