"""The optional SigLIP backbone: a randomly initialised tower saved in transformers' format is
loaded back from its folder, bit for bit, and trains inside the five-modality model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unigeo.core.errors import UniGeoError
from unigeo.model.network import UniGeoModel

from .conftest import small_model

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tower(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = transformers.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                          num_attention_heads=2, image_size=32, patch_size=8)
    torch.manual_seed(1)
    model = transformers.SiglipVisionModel(cfg)
    out = tmp_path_factory.mktemp("siglip")
    model.save_pretrained(out)
    torch.save(getattr(model, "vision_model", model).state_dict(), out / "reference.pt")
    return out


def test_a_saved_tower_loads_back_with_the_same_weights(tower: Path) -> None:
    saved = torch.load(tower / "reference.pt")  # the weights of the model that was saved
    model = UniGeoModel(small_model(image_backbone="siglip", siglip_path=str(tower), modalities=("sv", "aerial")))
    for m in ("sv", "aerial"):
        loaded = model.encoders[m].encoder.tower.state_dict()
        assert loaded.keys() == saved.keys()
        assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    x = torch.randint(0, 255, (3, 3, 32, 32), dtype=torch.uint8)
    emb = model.embed("sv", {"sv": x})
    assert emb.shape == (3, 32) and torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)


def test_the_siglip_model_trains_from_the_cli(tower: Path, tiny_build: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from unigeo.cli import cli

    r = CliRunner().invoke(cli, ["train", "--data", str(tiny_build), "--out", str(tmp_path / "run"), "--epochs", "1",
                                 "--batch-size", "4", "--workers", "0", "--image-px", "32", "--siglip", str(tower),
                                 "--modalities", "sv,aerial,coords", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "run" / "model.pt").exists()


def test_a_folder_without_a_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UniGeoError, match="no config.json"):
        UniGeoModel(small_model(image_backbone="siglip", siglip_path=str(tmp_path)))
