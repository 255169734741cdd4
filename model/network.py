"""The five-modality model: one encoder per modality, each projected to one L2-normalised
embedding size, and the learnable temperature of the all-to-all loss."""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from unigeo.model import modalities as registry
from unigeo.model.config import ModelConfig
from unigeo.model.encoders import ImageEncoder, TextEncoder
from unigeo.model.loss import LogitScale

__all__ = ["ModelConfig", "Projected", "UniGeoModel", "batch_to", "image_encoder", "ordered", "text_encoder"]

ordered = registry.ordered


class Projected(nn.Module):
    def __init__(self, encoder: nn.Module, d_in: int, dim: int) -> None:
        super().__init__()
        self.encoder, self.proj = encoder, nn.Linear(d_in, dim)

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.encoder(*args)), dim=-1)


def image_encoder(cfg: ModelConfig) -> tuple[nn.Module, int]:
    if cfg.image_tower.startswith("siglip:"):
        from unigeo.model.siglip import SiglipImageEncoder

        enc: nn.Module = SiglipImageEncoder(cfg.image_tower[len("siglip:"):])
    elif cfg.image_tower == "efficientnet-lite0":
        from unigeo.model.efficientnet import PretrainedEfficientNet

        enc = PretrainedEfficientNet()
    elif cfg.image_tower == "colour":
        enc = ImageEncoder(widths=())
    else:
        enc = ImageEncoder()
    return enc, cast(int, enc.out_dim)


def text_encoder(cfg: ModelConfig) -> tuple[nn.Module, int]:
    if cfg.text_tower.startswith("siglip:"):
        from unigeo.model.siglip import SiglipTextEncoder

        enc: nn.Module = SiglipTextEncoder(cfg.text_tower[len("siglip:"):])
    elif cfg.text_tower == "minilm":
        from unigeo.model.minilm import MiniLMEncoder

        enc = MiniLMEncoder()
    else:
        enc = TextEncoder(cfg.vocab, cfg.text_len)
    return enc, cast(int, enc.out_dim)


class UniGeoModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.modalities = ordered(cfg.modalities)
        torch.manual_seed(cfg.seed)
        enc: dict[str, nn.Module] = {}
        for m in self.modalities:
            e, d = registry.REGISTRY[m].encoder(cfg)
            enc[m] = Projected(e, d, cfg.dim)
        self.encoders = nn.ModuleDict(enc)
        self.logit_scale = LogitScale()

    def embed(self, modality: str, batch: dict[str, Any], rows: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings (n, dim) of one modality for the batch rows ``rows`` (default: all)."""
        return registry.embed_rows(registry.REGISTRY[modality], self.encoders[modality], batch, rows)

    def forward(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
        """Embeddings of every modality of a batch, each encoder run only on the rows that have it.

        Returns:
            modality -> (B, dim) embeddings (rows of absent members are zeros and never used),
            modality -> (B,) bool presence, and the logit scale (computed here so that DDP sees
            every parameter used inside the forward pass).
        """
        out, present = {}, {}
        for m in self.modalities:
            have = batch["present"][m]
            emb = torch.zeros(len(have), self.cfg.dim, device=have.device)
            if bool(have.any()):
                rows = torch.nonzero(have).squeeze(1)
                emb = emb.index_copy(0, rows, self.embed(m, batch, rows).to(emb.dtype))
            out[m], present[m] = emb, have
        return out, present, self.logit_scale()


def batch_to(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """Move a batch's tensors to ``device`` (nested ``present`` included)."""
    out: dict[str, Any] = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.to(device, non_blocking=True)
        elif isinstance(v, dict):
            out[k] = {m: t.to(device, non_blocking=True) for m, t in v.items()}
        else:
            out[k] = v
    return out
