"""A ``--tile-encoding compact`` build trains and evaluates: the trainer asks for member kinds (``aerial``,
``dsm``), which a compact build stores as ``aerial.webp`` and ``dsm.png``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from unigeo.cli import cli
from unigeo.core.build_files import read_manifest
from unigeo.model.modalities import build_modalities, missing_from_build
from unigeo.model.train import train

from .conftest import small_model, small_train


def test_a_compact_manifest_holds_every_modality(tiny_build_compact: Path) -> None:
    manifest = read_manifest(str(tiny_build_compact))
    members = manifest["counts"]["overall"]["members"]
    assert members.get("aerial.webp") and members.get("dsm.png") and not members.get("aerial.png")
    assert build_modalities(manifest) == ("sv", "aerial", "dsm", "text", "coords")
    # A manifest that counts no aerial member of either encoding still lacks it, named by both files.
    bare = {"counts": {"overall": {"members": {k: v for k, v in members.items() if not k.startswith("aerial")}}}}
    assert missing_from_build(("aerial", "dsm"), bare) == {"aerial": "aerial.png or aerial.webp"}


@pytest.mark.slow
def test_a_compact_build_trains_one_step_and_evaluates(tiny_build_compact: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(small_train(tiny_build_compact, run, epochs=1), small_model())
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert any(np.isfinite(r.get("loss", np.nan)) for r in log), log
    r = CliRunner().invoke(cli, ["eval", "--data", str(tiny_build_compact), "--checkpoint", str(run / "model.pt"),
                                 "--out", str(run / "eval")])
    assert r.exit_code == 0, r.output
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert {"sv->aerial", "aerial->dsm", "dsm->coords"} <= set(metrics["pairs"])
    assert metrics["pairs"]["aerial->dsm"]["n_queries"] > 0
    emb = np.load(run / "eval" / "embeddings.npz")
    assert emb["aerial"].shape[0] > 0 and emb["dsm"].shape[0] > 0
