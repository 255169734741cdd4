"""The trainer's corpus: bad shards, bad checkpoints, used run folders and wrong flags, each through the
CLI. Every case ends in one line naming the file, sample, flag or modality, with exit 1 (failed) or 2
(usage), no traceback, and nothing of the user's lost."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from unigeo.cli import cli
from unigeo.core.sample import TRAIN

from ..conftest import TINY_BUILD_ARGS

pytestmark = pytest.mark.usefixtures("tiny_build")

FAST = ["--epochs", "1", "--batch-size", "4", "--workers", "0", "--no-progress"]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, ["-q", *args])


def error_line(r: Result) -> str:
    """The command's one error line (click prints usage errors after the usage text)."""
    assert "Traceback" not in r.output, r.output
    assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit), repr(r.exception)
    lines = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, r.output
    return lines[0]


def copy_build(build: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "build"
    shutil.copytree(build, dst)
    return dst


def manifest_shard(build: Path, split: str) -> tuple[Path, dict]:
    manifest = json.loads((build / "manifest.json").read_text())
    entry = next(s for s in manifest["shards"] if s["split"] == split and s["samples"] > 0)
    return build / entry["shard"], entry


def rewrite_member(shard: Path, suffix: str, data: bytes) -> str:
    """Replace the first member ending in ``suffix`` by ``data``; the build's manifest is updated with the
    new size and sha256, so that only the member is bad. Returns the member's sample key."""
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else b"") for m in tar.getmembers()]  # type: ignore[union-attr]
    target = next(m.name for m, _ in members if m.name.endswith(suffix))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for m, content in members:
            content = data if m.name == target else content
            m.size = len(content)
            tar.addfile(m, io.BytesIO(content))
    shard.write_bytes(buf.getvalue())
    build = shard.parents[2]
    manifest = json.loads((build / "manifest.json").read_text())
    for s in manifest["shards"]:
        if build / s["shard"] == shard:
            s["bytes"], s["sha256"] = len(buf.getvalue()), hashlib.sha256(buf.getvalue()).hexdigest()
    (build / "manifest.json").write_text(json.dumps(manifest))
    return target.split(".", 1)[0]


@pytest.fixture(scope="module")
def finished_run(tiny_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("trainer_corpus") / "run"
    r = invoke("train", "--data", str(tiny_build), "--out", str(run), *FAST)
    assert r.exit_code == 0, r.output
    return run


def run_copy(run: Path, tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst, {p.name: p.read_bytes() for p in dst.iterdir() if p.is_file()}


# ---------------------------------------------------------------- bad shards


def test_a_truncated_training_shard_is_found_before_training(tiny_build: Path, tmp_path: Path) -> None:
    build = copy_build(tiny_build, tmp_path)
    shard, entry = manifest_shard(build, TRAIN)
    shard.write_bytes(shard.read_bytes()[: entry["bytes"] // 2])
    r = invoke("train", "--data", str(build), "--out", str(tmp_path / "run"), *FAST)
    assert r.exit_code == 1
    line = error_line(r)
    assert str(shard) in line and f"lists {entry['bytes']}" in line
    assert not (tmp_path / "run").exists()  # a command that fails before it starts leaves nothing behind


def test_a_missing_training_shard_is_named(tiny_build: Path, tmp_path: Path) -> None:
    build = copy_build(tiny_build, tmp_path)
    shard, _ = manifest_shard(build, TRAIN)
    shard.unlink()
    r = invoke("train", "--data", str(build), "--out", str(tmp_path / "run"), *FAST)
    assert r.exit_code == 1 and str(shard) in error_line(r) and "missing" in error_line(r)


def test_a_missing_test_shard_is_named_by_eval(tiny_build: Path, finished_run: Path, tmp_path: Path) -> None:
    build = copy_build(tiny_build, tmp_path)
    shard, _ = manifest_shard(build, "test")
    shard.unlink()
    out = tmp_path / "eval"
    r = invoke("eval", "--data", str(build), "--checkpoint", str(finished_run / "model.pt"), "--out", str(out))
    assert r.exit_code == 1 and str(shard) in error_line(r)
    assert not out.exists()


def test_a_shard_that_is_not_a_tar_is_named(tiny_build: Path, tmp_path: Path) -> None:
    build = copy_build(tiny_build, tmp_path)
    shard, entry = manifest_shard(build, TRAIN)
    shard.write_bytes(os.urandom(entry["bytes"]))  # the listed size, garbage inside
    r = invoke("train", "--data", str(build), "--out", str(tmp_path / "run"), *FAST)
    assert r.exit_code == 1
    assert str(shard) in error_line(r) and "unreadable" in error_line(r)


@pytest.mark.parametrize(("suffix", "data", "what"), [
    (".json", b"{not json", "json member"),
    (".sv.000.jpg", b"\xff\xd8 not a jpeg", "sv.jpg member"),
    (".aerial.png", b"\x89PNG broken", "aerial.png member"),
    (".dsm.npy", b"garbage", "dsm.npy member"),
])
def test_a_garbage_member_names_its_sample_and_shard(tiny_build: Path, tmp_path: Path, suffix: str, data: bytes,
                                                      what: str) -> None:
    build = copy_build(tiny_build, tmp_path)
    shard, _ = manifest_shard(build, TRAIN)
    key = rewrite_member(shard, suffix, data)
    r = invoke("train", "--data", str(build), "--out", str(tmp_path / "run"), *FAST)
    assert r.exit_code == 1
    line = error_line(r)
    assert f"sample {key}" in line and str(shard) in line and what in line
    events = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "bad_sample" and key in events[-1]["error"]


# ---------------------------------------------------------------- checkpoints


class RunsACommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_crafted_to_run_a_command_is_refused_without_running_it(tiny_build: Path,
                                                                              tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil = tmp_path / "model.pt"
    torch.save({"model": RunsACommand(marker), "model_config": {}}, evil)
    r = invoke("eval", "--data", str(tiny_build), "--checkpoint", str(evil))
    assert r.exit_code == 1
    assert "refused" in error_line(r) and str(evil) in error_line(r)
    assert not marker.exists()


def test_a_run_folder_as_checkpoint_points_at_its_model(tiny_build: Path, finished_run: Path) -> None:
    r = invoke("eval", "--data", str(tiny_build), "--checkpoint", str(finished_run))
    assert r.exit_code == 1 and f"use {finished_run / 'model.pt'}" in error_line(r)


@pytest.mark.parametrize("name", ["config.json", "log.jsonl"])
def test_a_file_that_is_not_a_checkpoint_is_named(tiny_build: Path, finished_run: Path, name: str) -> None:
    r = invoke("eval", "--data", str(tiny_build), "--checkpoint", str(finished_run / name))
    assert r.exit_code == 1 and "is not a checkpoint" in error_line(r) and name in error_line(r)


def test_a_truncated_checkpoint_is_named(tiny_build: Path, finished_run: Path, tmp_path: Path) -> None:
    cut = tmp_path / "model.pt"
    cut.write_bytes((finished_run / "model.pt").read_bytes()[:5000])
    r = invoke("eval", "--data", str(tiny_build), "--checkpoint", str(cut))
    assert r.exit_code == 1 and "not a readable checkpoint" in error_line(r) and str(cut) in error_line(r)


def test_a_missing_checkpoint_is_named(tiny_build: Path, tmp_path: Path) -> None:
    r = invoke("eval", "--data", str(tiny_build), "--checkpoint", str(tmp_path / "nope.pt"))
    assert r.exit_code == 1 and "not found" in error_line(r)


def test_eval_warns_when_the_build_differs_from_the_training_build(tiny_build: Path, finished_run: Path,
                                                                  tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    build = copy_build(tiny_build, tmp_path)
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["created"] = "another day"
    (build / "manifest.json").write_text(json.dumps(manifest))
    r = CliRunner().invoke(cli, ["eval", "--data", str(build), "--checkpoint", str(finished_run / "model.pt"),
                                 "--out", str(tmp_path / "eval")])
    assert r.exit_code == 0, r.output
    assert "trained on another build" in caplog.text
    assert "not writable" not in r.output + caplog.text  # no PyTorch warning about read-only arrays


# ---------------------------------------------------------------- run folders and flags


def test_a_used_run_folder_is_refused(tiny_build: Path, finished_run: Path, tmp_path: Path) -> None:
    run, before = run_copy(finished_run, tmp_path)
    r = invoke("train", "--data", str(tiny_build), "--out", str(run), *FAST)
    assert r.exit_code == 2
    assert "holds a run" in error_line(r) and "--overwrite" in error_line(r)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_resume_and_overwrite_together_are_a_usage_error(tiny_build: Path, finished_run: Path,
                                                         tmp_path: Path) -> None:
    run, before = run_copy(finished_run, tmp_path)
    r = invoke("train", "--data", str(tiny_build), "--out", str(run), "--resume", "--overwrite")
    assert r.exit_code == 2 and "give one" in error_line(r)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


@pytest.mark.parametrize(("flag", "value", "saved"), [
    ("--modalities", "sv,aerial", "sv,aerial,dsm,text,coords"),
    ("--epochs", "0", None),
    ("--batch-size", "8", "4"),
    ("--image-tower", "colour", "scratch"),
])
def test_resume_with_a_different_flag_names_it_and_both_values(tiny_build: Path, finished_run: Path,
                                                               tmp_path: Path, flag: str, value: str,
                                                               saved: str | None) -> None:
    run, before = run_copy(finished_run, tmp_path)
    r = invoke("train", "--data", str(tiny_build), "--out", str(run), "--resume", flag, value)
    assert r.exit_code == 2
    line = error_line(r)
    if saved is not None:
        assert f"{flag} {value} differs from the run's {saved}" in line
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_resume_of_a_finished_run_says_so_and_changes_nothing(tiny_build: Path, finished_run: Path,
                                                              tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    run, before = run_copy(finished_run, tmp_path)
    r = CliRunner().invoke(cli, ["train", "--data", str(tiny_build), "--out", str(run), "--resume",
                                 "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "is finished (1 of 1 epochs)" in caplog.text
    assert (run / "model.pt").read_bytes() == before["model.pt"]


def test_resume_with_a_longer_schedule_extends_the_run(tiny_build: Path, finished_run: Path, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    run, _ = run_copy(finished_run, tmp_path)
    r = CliRunner().invoke(cli, ["train", "--data", str(tiny_build), "--out", str(run), "--resume", "--epochs", "2",
                                 "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "extends the run's schedule of 1 epochs" in caplog.text
    assert torch.load(run / "model.pt", weights_only=True)["epoch"] == 1


def test_resume_in_a_folder_without_a_run_leaves_nothing(tiny_build: Path, tmp_path: Path) -> None:
    r = invoke("train", "--data", str(tiny_build), "--out", str(tmp_path / "none"), "--resume")
    assert r.exit_code == 2 and "holds no run" in error_line(r)
    assert not (tmp_path / "none").exists()


def test_a_modality_the_build_lacks_is_named_with_what_it_has(tiny_world: Path, tmp_path: Path) -> None:
    build = tmp_path / "locations"
    r = invoke("build", "--config", str(tiny_world / "sources.yaml"), "--out", str(build), *TINY_BUILD_ARGS,
               "--no-imagery")
    assert r.exit_code == 0, r.output
    r = invoke("train", "--data", str(build), "--out", str(tmp_path / "run"), "--modalities", "sv,aerial,coords",
               *FAST)
    assert r.exit_code == 2
    line = error_line(r)
    assert "has no sv, aerial" in line and "sv.jpg" in line and "it holds" in line and "coords" in line
    assert not (tmp_path / "run").exists()


def test_a_build_folder_that_is_not_a_build_is_named(tmp_path: Path) -> None:
    r = invoke("train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), *FAST)
    assert r.exit_code == 1 and "manifest.json not found" in error_line(r)
    assert not (tmp_path / "run").exists()
