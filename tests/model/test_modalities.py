"""The modality registry is the one place a modality is declared: a toy modality (the mean colour of
the aerial tile, through a small MLP) is added with one ``register`` call and then decoded, batched,
embedded, aligned by the loss, evaluated and trained from the CLI like the built-in ones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from unigeo.model import modalities
from unigeo.model.modalities import REGISTRY, DecodeContext, Modality, register


def _decode_tone(ctx: DecodeContext) -> tuple[dict[str, Any], bool]:
    from unigeo.core.sample import tile_member
    from unigeo.model.data import rgb

    member = tile_member(ctx.raw, "aerial")
    if member is None:
        return {"tone": np.zeros(3, np.float32)}, False
    return {"tone": rgb(ctx.raw[member], 8).reshape(3, -1).mean(1).astype(np.float32) / 255}, True


class ToneEncoder(nn.Module):
    out_dim = 16

    def __init__(self) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(3, 16), nn.GELU(), nn.Linear(16, 16))

    def forward(self, tone: torch.Tensor) -> torch.Tensor:
        return self.mlp(tone)


@pytest.fixture
def tone() -> Iterator[Modality]:
    toy = register(Modality("tone", _decode_tone, ("tone",), lambda cfg: (ToneEncoder(), ToneEncoder.out_dim)))
    yield toy
    del REGISTRY["tone"]


def test_a_registered_modality_trains_and_evaluates_from_the_cli(tone: Modality, tiny_build: Path,
                                                                 tmp_path: Path) -> None:
    from click.testing import CliRunner

    from unigeo.cli import cli

    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", "--data", str(tiny_build), "--out", str(run), "--epochs", "1",
                                 "--batch-size", "4", "--workers", "0", "--image-px", "32",
                                 "--modalities", "tone,dsm,coords", "--no-progress"])
    assert r.exit_code == 0, r.output
    steps = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    pairs = next(s["pairs"] for s in steps if s.get("event") == "step")
    assert {"tone->dsm", "dsm->tone", "tone->coords", "coords->tone"} <= set(pairs)
    r = CliRunner().invoke(cli, ["eval", "--data", str(tiny_build), "--checkpoint", str(run / "model.pt"),
                                 "--out", str(tmp_path / "eval"), "--examples", "0"])
    assert r.exit_code == 0, r.output
    npz = np.load(tmp_path / "eval" / "embeddings.npz")
    assert npz["tone"].shape[1] == npz["dsm"].shape[1] and len(npz["tone_index"]) > 0
    assert "tone->cells" in r.output


def test_unknown_modalities_are_named_from_the_registry() -> None:
    from unigeo.model.network import ModelConfig

    with pytest.raises(ValueError, match="choose from sv, aerial, dsm, text, coords"):
        ModelConfig(modalities=("sv", "tone"))
    assert modalities.names() == ("sv", "aerial", "dsm", "text", "coords")
