"""The optional SigLIP towers: a randomly initialised SigLIP model saved in transformers' format is
loaded back from its folder, bit for bit, and its vision and text towers train inside the
five-modality model from the CLI (``--image-tower siglip:DIR``, ``--text-tower siglip:DIR``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from unigeo.core.errors import UniGeoError
from unigeo.model.network import UniGeoModel
from unigeo.model.tokenizer import encode, load_tokenizer, save_tokenizer, train_tokenizer

from .conftest import small_model

transformers = pytest.importorskip("transformers")

WORDS = ["red brick building beside a park", "tall glass tower near the river", "a tree lined street"]


@pytest.fixture(scope="module")
def siglip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SigLIP model (vision and text towers) with a tokenizer.json beside it."""
    tok = train_tokenizer(WORDS * 5, vocab_size=120, min_frequency=1)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=8)
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                vocab_size=tok.get_vocab_size(), max_position_embeddings=24)
    torch.manual_seed(1)
    model = transformers.SiglipModel(transformers.SiglipConfig(vision_config=vision, text_config=text))
    out = tmp_path_factory.mktemp("siglip")
    model.save_pretrained(out)
    save_tokenizer(tok, str(out / "tokenizer.json"))
    torch.save({"vision": model.vision_model.state_dict(), "text": model.text_model.state_dict()}, out / "reference.pt")
    return out


def test_saved_towers_load_back_with_the_same_weights(siglip: Path) -> None:
    saved = torch.load(siglip / "reference.pt")
    model = UniGeoModel(small_model(image_tower=f"siglip:{siglip}", text_tower=f"siglip:{siglip}",
                                    modalities=("sv", "aerial", "text")))
    for m, part in (("sv", "vision"), ("aerial", "vision"), ("text", "text")):
        loaded = model.encoders[m].encoder.tower.state_dict()
        assert loaded.keys() == saved[part].keys()
        assert all(torch.equal(loaded[k], saved[part][k]) for k in saved[part])
    x = torch.randint(0, 255, (3, 3, 32, 32), dtype=torch.uint8)
    emb = model.embed("sv", {"sv": x})
    assert emb.shape == (3, 32) and torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    ids, mask = encode(load_tokenizer(str(siglip / "tokenizer.json")), WORDS, max_len=48)
    text = model.embed("text", {"text": ids, "text_mask": mask})
    assert text.shape == (3, 32) and not torch.allclose(text[0], text[1])


def test_the_siglip_towers_train_from_the_cli(siglip: Path, tiny_build: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from unigeo.cli import cli

    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", "--data", str(tiny_build), "--out", str(run), "--epochs", "1",
                                 "--batch-size", "4", "--workers", "0", "--image-px", "32",
                                 "--image-tower", f"siglip:{siglip}", "--text-tower", f"siglip:{siglip}",
                                 "--modalities", "sv,aerial,text,coords", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert (run / "model.pt").exists()
    # The run's tokenizer is the tower's own, not one fitted to the training texts.
    assert json.loads((run / "tokenizer.json").read_text())["model"]["vocab"] == \
        json.loads((siglip / "tokenizer.json").read_text())["model"]["vocab"]
    config = json.loads((run / "config.json").read_text())["model"]
    assert config["image_tower"] == config["text_tower"] == f"siglip:{siglip}"


def test_a_folder_without_a_model_or_a_tokenizer_is_a_clear_error(siglip: Path, tmp_path: Path) -> None:
    with pytest.raises(UniGeoError, match="no config.json"):
        UniGeoModel(small_model(image_tower=f"siglip:{tmp_path}"))
    from unigeo.model.tokenizer import pretrained_tokenizer

    with pytest.raises(UniGeoError, match="no tokenizer.json"):
        pretrained_tokenizer(f"siglip:{tmp_path}")
    with pytest.raises(ValueError, match="--image-tower must be one of"):
        small_model(image_tower="resnet50")
