"""The coordinate encoder: Equal Earth projection, random Fourier features at several scales (one
token per scale), self-attention over each location's own scale tokens, pooled to one embedding.

Attention is batch-first and runs over the scale axis of one location only, so a location's
embedding never depends on the other locations in its batch. ``kind`` selects the ablations: plain
multi-scale Fourier features concatenated into an MLP (``rff``), or an MLP on the projected
coordinates (``mlp``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from unigeo.model.config import COORDS_KINDS as KINDS

# Scales of the Fourier features on the unit Equal Earth square (half-width ~17,000 km): the finest,
# 2**16, has a period of ~260 m on the ground, the coarsest ~17,000 km.
from unigeo.model.config import DEFAULT_SIGMAS
from unigeo.model.geo import equal_earth_unit


class FourierFeatures(nn.Module):
    """Fixed random Fourier features of 2-D points at one scale: [cos 2pi xB, sin 2pi xB], B ~ N(0, sigma^2)."""

    def __init__(self, sigma: float, features: int, generator: torch.Generator) -> None:
        super().__init__()
        self.B: torch.Tensor
        self.register_buffer("B", torch.randn(2, features, generator=generator, dtype=torch.float64) * sigma)

    def forward(self, xy: torch.Tensor) -> torch.Tensor:
        angle = 2 * math.pi * (xy.to(torch.float64) @ self.B)  # float64: fine scales need the precision
        return torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1).to(torch.float32)


def mlp(d_in: int, d_hidden: int, d_out: int, layers: int = 2) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = d_in
    for _ in range(layers - 1):
        mods += [nn.Linear(d, d_hidden), nn.GELU()]
        d = d_hidden
    mods.append(nn.Linear(d, d_out))
    return nn.Sequential(*mods)


class CoordinateEncoder(nn.Module):
    """(lat, lon) in degrees -> (B, dim) embedding (not normalised; the model normalises every modality).

    Args:
        kind: ``multiscale`` (tokens + self-attention), ``rff`` (concatenated features + MLP) or ``mlp``.
        sigmas: scales of the random Fourier features.
        features: Fourier frequencies per scale (each gives a cos and a sin).
        depth: self-attention blocks (``multiscale`` only).
        pool: how the scale tokens become one vector (``multiscale`` only): ``concat`` (the tokens
            side by side into an MLP, so each scale keeps its own weights) or ``mean``.
        seed: seed of the fixed random frequencies.
    """

    def __init__(self, dim: int = 256, kind: str = "multiscale", sigmas: Sequence[float] = DEFAULT_SIGMAS,
                 features: int = 64, depth: int = 2, heads: int = 4, hidden: int = 512, pool: str = "concat",
                 seed: int = 0) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"coordinate encoder kind must be one of {KINDS}, got {kind!r}")
        if depth < 0 or not sigmas:
            raise ValueError("depth must be >= 0 and at least one sigma is needed")
        if pool not in ("concat", "mean"):
            raise ValueError(f"pool must be concat or mean, got {pool!r}")
        self.kind, self.pool = kind, pool
        self.head: nn.Module
        g = torch.Generator().manual_seed(seed)
        self.scales = nn.ModuleList(FourierFeatures(s, features, g) for s in sigmas) if kind != "mlp" else None
        if kind == "multiscale":
            self.tokens = nn.ModuleList(nn.Linear(2 * features, dim) for _ in sigmas)
            self.scale_embedding = nn.Parameter(torch.zeros(len(sigmas), dim))
            layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False) if depth else None
            self.norm = nn.LayerNorm(dim)
            self.head = mlp(dim * len(sigmas), hidden, dim) if pool == "concat" else nn.Linear(dim, dim)
        elif kind == "rff":
            self.head = mlp(2 * features * len(sigmas), hidden, dim, layers=3)
        else:
            self.head = mlp(2, hidden, dim, layers=4)

    def no_weight_decay(self) -> set[str]:
        return {"scale_embedding"} if hasattr(self, "scale_embedding") else set()

    def forward(self, lat: torch.Tensor, lon: torch.Tensor) -> torch.Tensor:
        xy = equal_earth_unit(lat, lon)
        if self.kind == "mlp":
            return self.head(xy.to(torch.float32))
        assert self.scales is not None
        feats = [ff(xy) for ff in self.scales]
        if self.kind == "rff":
            return self.head(torch.cat(feats, dim=-1))
        tokens = torch.stack([proj(f) for proj, f in zip(self.tokens, feats)], dim=1) + self.scale_embedding
        if self.blocks is not None:
            tokens = self.blocks(tokens)  # (B, scales, dim): attention within each location
        tokens = self.norm(tokens)
        return self.head(tokens.flatten(1) if self.pool == "concat" else tokens.mean(dim=1))
