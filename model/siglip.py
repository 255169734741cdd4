"""Pretrained SigLIP towers (SigLIP, or SigLIP 2 at fixed resolution, which share transformers'
``Siglip`` classes) loaded from a local folder written by ``save_pretrained``: the vision tower for
street view and aerial (``--image-tower siglip:DIR``), the text tower for descriptions
(``--text-tower siglip:DIR``, with the folder's ``tokenizer.json``). Nothing is downloaded: the folder
must hold ``config.json`` and the weights. The ``siglip`` extra."""

from __future__ import annotations

import json
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unigeo.core.errors import UniGeoError


def _load(path: str, part: str) -> Any:
    """The ``part`` ("vision" or "text") tower of the SigLIP model saved in ``path``."""
    try:
        from transformers import SiglipModel, SiglipTextModel, SiglipVisionModel
    except ImportError as e:
        raise UniGeoError("the SigLIP towers need transformers: pip install 'unigeo[siglip]'") from e
    config_path = os.path.join(path, "config.json")
    if not os.path.exists(config_path):
        raise UniGeoError(f"{path} holds no config.json: save the model there with save_pretrained()")
    with open(config_path) as f:
        kind = json.load(f).get("model_type")
    single: dict[str, tuple[str, Any]] = {"vision": ("siglip_vision_model", SiglipVisionModel),
                                          "text": ("siglip_text_model", SiglipTextModel)}
    if kind == "siglip":
        return getattr(SiglipModel.from_pretrained(path, local_files_only=True), f"{part}_model")
    if kind == single[part][0]:
        tower = single[part][1].from_pretrained(path, local_files_only=True)
        return getattr(tower, f"{part}_model", tower)  # transformers 4 wraps the tower, 5 does not
    raise UniGeoError(f"{path}: model_type {kind!r} is not a SigLIP model with a {part} tower "
                      f"(siglip or {single[part][0]})")


def siglip_tokenizer(path: str) -> Any:
    """The folder's ``tokenizer.json`` (HF tokenizers format), without fixed padding or truncation."""
    from tokenizers import Tokenizer

    file = os.path.join(path, "tokenizer.json")
    if not os.path.exists(file):
        raise UniGeoError(f"{path} holds no tokenizer.json: --text-tower siglip:DIR needs the model's tokenizer "
                          "saved beside it (tokenizer.save_pretrained)")
    tok = Tokenizer.from_file(file)
    tok.no_padding()
    tok.no_truncation()
    return tok


class SiglipTextEncoder(nn.Module):
    """Token ids (B, L) -> the text tower's pooled output (B, hidden). SigLIP was trained on texts padded
    to full length without an attention mask, so the mask is not passed; ids beyond the tower's
    positions are cut."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.tower = _load(path, "text")
        self.max_len = int(self.tower.config.max_position_embeddings)
        self.out_dim = int(self.tower.config.hidden_size)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.tower(input_ids=ids[:, : self.max_len]).pooler_output


class SiglipImageEncoder(nn.Module):
    """uint8 (B, 3, H, W) -> the tower's pooled output (B, hidden); images resized to its input size
    and scaled to [-1, 1] as SigLIP's processor does."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.tower = _load(path, "vision")
        self.size = int(self.tower.config.image_size)
        self.out_dim = int(self.tower.config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 127.5 - 1.0
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.tower(pixel_values=x).pooler_output
