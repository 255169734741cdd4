"""Pretrained image backbones: a SigLIP vision tower (SigLIP, or SigLIP 2 at fixed resolution, which
share transformers' ``Siglip`` classes) loaded from a local folder written by ``save_pretrained``.
Nothing is downloaded: the folder must hold ``config.json`` and the weights. The ``siglip`` extra."""

from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F
from torch import nn

from unigeo.core.errors import UniGeoError


class SiglipImageEncoder(nn.Module):
    """uint8 (B, 3, H, W) -> the tower's pooled output (B, hidden); images resized to its input size
    and scaled to [-1, 1] as SigLIP's processor does."""

    def __init__(self, path: str) -> None:
        super().__init__()
        try:
            from transformers import SiglipModel, SiglipVisionModel
        except ImportError as e:
            raise UniGeoError("the siglip backbone needs transformers: pip install 'unigeo[siglip]'") from e
        config_path = os.path.join(path, "config.json")
        if not os.path.exists(config_path):
            raise UniGeoError(f"{path} holds no config.json: save the model there with save_pretrained()")
        with open(config_path) as f:
            kind = json.load(f).get("model_type")
        if kind == "siglip":
            self.tower = SiglipModel.from_pretrained(path, local_files_only=True).vision_model
        elif kind == "siglip_vision_model":
            vision = SiglipVisionModel.from_pretrained(path, local_files_only=True)
            self.tower = getattr(vision, "vision_model", vision)  # transformers 4 wraps the tower, 5 does not
        else:
            raise UniGeoError(f"{path}: model_type {kind!r} is not a SigLIP model (siglip or siglip_vision_model)")
        self.size = int(self.tower.config.image_size)
        self.out_dim = int(self.tower.config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 127.5 - 1.0
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.tower(pixel_values=x).pooler_output
