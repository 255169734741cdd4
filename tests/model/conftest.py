"""Fixtures of the trainer tests: a small model configuration and a short training run on the
tiny build (real shards written by ``unigeo build``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from unigeo.model.network import ModelConfig
from unigeo.model.train import TrainConfig, train

SMALL = dict(dim=32, image_px=32, dsm_px=32, text_len=48, coords_depth=1)


def one_step(loss: Callable[[], torch.Tensor], opt: torch.optim.Optimizer) -> tuple[float, float]:
    """The loss before and after one optimiser step on the same batch."""
    before = loss()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = loss()
    return float(before.detach()), float(after)


def small_model(**kw: object) -> ModelConfig:
    return ModelConfig(**{**SMALL, **kw})  # type: ignore[arg-type]


def small_train(data: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(epochs=2, batch_size=4, workers=0, log_every=1, progress=False, lr=1e-3)
    return TrainConfig(data=str(data), out=str(out), **{**base, **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny_run(tiny_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two epochs on the tiny build; RUN folder with model.pt, tokenizer.json, log.jsonl."""
    out = tmp_path_factory.mktemp("tiny_run")
    train(small_train(tiny_build, out), small_model())
    return out
