from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from unigeo.cli import cli
from unigeo.sources.config import load_config


def test_help_lists_every_command_of_the_contract() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "synth", "plan", "build", "report", "audit", "train", "eval"):
        assert f"  {command} " in result.output


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "nowhere", "--out", "r"], "manifest.json not found"),
    (["train", "--data", "d", "--out", "r", "--modalities", "sv,gps"], "unknown modality gps"),
    (["train", "--data", "d", "--out", "r", "--modalities", "sv"], "at least two modalities"),
    (["eval", "--data", "d", "--checkpoint", "nowhere/model.pt"], "checkpoint nowhere/model.pt not found"),
    (["train", "--data", "d", "--out", "r", "--device", "cuda"], "no CUDA device"),
    (["eval", "--data", "d", "--checkpoint", "r/model.pt", "--device", "cuda"], "no CUDA device"),
])
def test_train_and_eval_refuse_bad_arguments_with_a_clear_message(args: list[str], message: str,
                                                                    tmp_path: Path) -> None:
    import os

    import torch

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = CliRunner().invoke(cli, args)
    finally:
        os.chdir(cwd)
    assert result.exit_code in (1, 2), result.output
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_synth_writes_a_world_and_reads_it_back(tmp_path: Path) -> None:
    out = tmp_path / "w"
    result = CliRunner().invoke(cli, ["synth", "--out", str(out), "--size", "tiny", "--seed", "3",
                                      "--pano-width", "256", "--no-faults", "--json", "-q"])
    assert result.exit_code == 0, result.output
    assert "panoramas: 40 rows, 40 valid; rejected none" in result.output
    assert "aerial: " in result.output and "EPSG:3857" in result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert summary["seed"] == 3 and summary["faults"] == [] and summary["panoramas"]["width"] == 256
    cfg = load_config(str(out / "sources.yaml"))
    assert len(cfg.aerial) == 2 and len(cfg.dsm) == 1


def test_synth_rejects_bad_options(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["synth", "--out", str(tmp_path), "--size", "huge"])
    assert result.exit_code == 2 and "huge" in result.output
    result = CliRunner().invoke(cli, ["synth", "--out", str(tmp_path), "--pano-width", "101"])
    assert result.exit_code == 2 and "even number" in result.output


def test_synth_refuses_a_folder_that_holds_other_things(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "data").mkdir()
    result = CliRunner().invoke(cli, ["synth", "--out", str(tmp_path), "--size", "tiny"])
    assert result.exit_code == 2, result.output
    assert "is not a synthetic world" in result.output and "data, notes.txt" in result.output
    assert "--overwrite" in result.output and "Traceback" not in result.output
    assert sorted(os.listdir(tmp_path)) == ["data", "notes.txt"]


@pytest.mark.slow
def test_synth_replaces_the_world_it_wrote_and_overwrites_only_when_told(tmp_path: Path) -> None:
    out = tmp_path / "w"

    def synth(*extra: str) -> None:
        result = CliRunner().invoke(cli, ["synth", "--out", str(out), "--size", "tiny", "--pano-width", "128",
                                          "--no-faults", "-q", *extra])
        assert result.exit_code == 0, result.output

    synth("--seed", "1")
    first = set(os.listdir(out / "panos"))
    synth("--seed", "2")  # a world written there before: replaced, never mixed
    index = pd.read_parquet(out / "panos.parquet")
    on_disk = {f"panos/{name}" for name in os.listdir(out / "panos")}
    assert on_disk == set(index["uri"]) and on_disk.isdisjoint(f"panos/{n}" for n in first)
    (out / "notes.txt").write_text("mine")
    synth("--seed", "3", "--overwrite")
    assert (out / "notes.txt").read_text() == "mine" and json.loads((out / "world.json").read_text())["seed"] == 3


@pytest.mark.slow
def test_demo_runs_synth_build_and_audit(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["-q", "demo", "--out", str(tmp_path / "d"), "--size", "tiny"])
    assert result.exit_code == 0, result.output
    assert '"ok": true' in result.output and "report/index.html" in result.output
    assert (tmp_path / "d" / "data" / "report" / "index.html").exists()
    manifest = json.loads((tmp_path / "d" / "data" / "manifest.json").read_text())
    overall = manifest["counts"]["overall"]
    assert overall["kept"] > 0 and manifest["shards"]
    # Every panorama is selected here (max 120 per cell): the truncated JPEG and the missing file fail
    # when their crops are rendered, and end as rejects, not crashes.
    assert overall["rejected_by_reason"]["corrupt_jpeg"] == 1 and overall["rejected_by_reason"]["missing_file"] == 1
    assert overall["members"]["sv.jpg"] == overall["kept"]
    assert overall["members"]["aerial.png"] > 0 and overall["members"]["dsm.npy"] > 0


def test_zero_crops_per_panorama_is_refused_before_any_work(tmp_path: Path) -> None:
    """0 crops would label every good panorama unreadable; skipping imagery is --no-imagery."""
    result = CliRunner().invoke(cli, ["build", "--config", str(tmp_path / "sources.yaml"), "--out",
                                      str(tmp_path / "out"), "--crops-per-pano", "0"])
    assert result.exit_code == 2
    assert "--crops-per-pano" in result.output and "x>=1" in result.output
    assert not (tmp_path / "out").exists()


def test_an_out_path_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    result = CliRunner().invoke(cli, ["build", "--config", str(tmp_path / "sources.yaml"), "--out", str(afile)])
    assert result.exit_code != 0 and "is a file" in result.output and "Traceback" not in result.output
    assert afile.read_text() == "mine"


@pytest.mark.slow
def test_quiet_multi_process_builds_print_nothing_but_the_result(tiny_world: Path, tmp_path: Path) -> None:
    """``-q`` holds for Beam's worker processes too: stderr stays empty, stdout holds the summary."""
    import subprocess
    import sys

    out = tmp_path / "b"
    r = subprocess.run([sys.executable, "-m", "unigeo", "-q", "build", "--config", str(tiny_world / "sources.yaml"),
                        "--out", str(out), "--direct_running_mode=multi_processing", "--direct_num_workers=2"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr == ""
    assert f"manifest: {out}/manifest.json" in r.stdout


@pytest.mark.slow
def test_verbose_build_logs_the_stages_not_each_operation(tiny_world: Path, tmp_path: Path) -> None:
    """``-v``: our debug lines and Beam's INFO (one line per stage), none of its per-operation DEBUG lines
    or its note on each string type hint, nor Pillow's PNG chunks; ``-vv`` adds Beam's DEBUG."""
    import subprocess
    import sys

    def stderr(*flags: str) -> str:
        out = tmp_path / f"b{len(flags)}"
        r = subprocess.run([sys.executable, "-m", "unigeo", *flags, "build", "--config",
                            str(tiny_world / "sources.yaml"), "--out", str(out)],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stderr

    v, vv = stderr("-v"), stderr("-v", "-v")
    assert "building " in v and "Running bundle for stage" not in v and "Converting string literal" not in v
    assert "start <DoOperation" not in v and "STREAM b" not in v and "start <DoOperation" in vv
    assert "Converting string literal" not in vv


def test_a_data_plane_failure_of_a_multi_worker_build_names_the_message_limit() -> None:
    from unigeo.cli.build import data_plane_hint

    multi = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    assert "2 GB" in data_plane_hint("RuntimeError: Channel closed prematurely.", multi)
    assert data_plane_hint("RuntimeError: Channel closed prematurely.", []) == ""
    assert data_plane_hint("ValueError: bad tile", multi) == ""
