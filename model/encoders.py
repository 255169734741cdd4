"""The modality encoders, on ``torch.nn`` only, trained from scratch (small enough for a CPU).

Each maps its input to a ``(B, dim)`` vector; ``UniGeoModel`` projects and L2-normalises. In eval
mode none of them mixes samples of a batch (BatchNorm uses its running statistics; LayerNorm and
attention work within a sample), so an item's embedding does not depend on what else is in its batch.

The image CNN normalises with BatchNorm, not per-sample GroupNorm: GroupNorm after every convolution
rescales each image's activations over all its positions, which removes the image's absolute colour,
and in these scenes colour is the cue shared by a facade in a crop and its roof in the aerial tile
(with GroupNorm the street-view/aerial pair loss stayed at ln(batch): nothing was learned). A second,
fixed branch gives the tower the image's colour distribution directly: a joint RGB histogram.

Street view defaults to ``HistogramEncoder``, a linear map of that histogram alone. A build renders a
fixed set of crops (one per panorama at the defaults: ~5,800 in the medium world's training split),
and the CNN learns those exact images: its training losses on the street-view pairs fall while the
test crops, new images of the same places, retrieve at chance. A histogram has no layout to
memorise, and a linear map of it keeps the one cue that transfers to a new crop: its colours.
"""

from __future__ import annotations

import torch
from torch import nn

# Per-channel statistics of 8-bit RGB mapped to roughly zero mean, unit variance.
RGB_MEAN, RGB_STD = 0.45 * 255, 0.25 * 255


class ConvBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a (strided) residual shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.GELU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.skip = (nn.Identity() if stride == 1 and c_in == c_out
                     else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.skip(x))


@torch.no_grad()
def colour_histogram(x: torch.Tensor, bins: int) -> torch.Tensor:
    """uint8 RGB (B, 3, H, W) -> the fraction of pixels in each of ``bins**3`` joint RGB bins (B, bins**3)."""
    q = x.long() * bins // 256
    index = ((q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]).flatten(1)
    index += torch.arange(x.shape[0], device=x.device)[:, None] * bins ** 3
    counts = torch.bincount(index.flatten(), minlength=x.shape[0] * bins ** 3).view(x.shape[0], -1)
    return counts.float() / index.shape[1]


class ImageEncoder(nn.Module):
    """RGB images (street-view crops, aerial tiles), uint8 (B, 3, H, W) in: a small residual CNN beside
    an MLP on the square root of the image's joint RGB histogram (``colour_bins`` per channel; 0: none).
    ``widths=()`` leaves the CNN out: the tower sees only the colour histogram."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256), colour_bins: int = 8,
                 colour_dim: int = 256) -> None:
        super().__init__()
        if not (widths or colour_bins):
            raise ValueError("an image encoder needs the CNN (widths) or the colour histogram (colour_bins)")
        self.stem = (nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.GELU())
                     if widths else None)
        self.stages = nn.Sequential(*(ConvBlock(a, b, 2) for a, b in zip(widths[:-1], widths[1:])))
        self.colour_bins = colour_bins
        self.colour = (nn.Sequential(nn.Linear(colour_bins ** 3, colour_dim), nn.GELU(),
                                     nn.Linear(colour_dim, colour_dim)) if colour_bins else None)
        self.out_dim = (widths[-1] if widths else 0) + (colour_dim if colour_bins else 0)
        self.norm = nn.LayerNorm(self.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.stem is not None:
            parts.append(self.stages(self.stem((x.float() - RGB_MEAN) / RGB_STD)).mean(dim=(2, 3)))
        if self.colour is not None:
            parts.append(self.colour(colour_histogram(x, self.colour_bins).sqrt()))
        return self.norm(torch.cat(parts, dim=1))


class HistogramEncoder(nn.Module):
    """RGB images, uint8 (B, 3, H, W) in: a linear map of the square root of the joint RGB histogram
    (``bins`` per channel). It sees which colours an image holds and in what shares, not where."""

    def __init__(self, bins: int = 6, dim: int = 256) -> None:
        super().__init__()
        self.bins, self.out_dim = bins, dim
        self.linear = nn.Linear(bins ** 3, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(colour_histogram(x, self.bins).sqrt())


def _encoder(dim: int, heads: int, depth: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


class DSMEncoder(nn.Module):
    """A one-channel ViT over height above ground: patch tokens, register tokens, a class token.

    Patches without a single valid height are masked out of attention; the class token's output is
    the embedding.
    """

    def __init__(self, px: int = 64, patch: int = 8, dim: int = 128, depth: int = 3, heads: int = 4,
                 registers: int = 4) -> None:
        super().__init__()
        if px % patch:
            raise ValueError(f"DSM size {px} is not a multiple of the patch size {patch}")
        self.patch, self.registers = patch, registers
        self.embed = nn.Conv2d(1, dim, patch, patch)
        n = (px // patch) ** 2
        self.pos = nn.Parameter(torch.randn(1, n, dim) * 0.02)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.reg = nn.Parameter(torch.randn(1, registers, dim) * 0.02)
        self.blocks = _encoder(dim, heads, depth)
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim

    def no_weight_decay(self) -> set[str]:
        return {"pos", "cls", "reg"}

    def forward(self, height: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        b = height.shape[0]
        tokens = self.embed(height * valid) .flatten(2).transpose(1, 2) + self.pos
        patch_valid = nn.functional.max_pool2d(valid.float(), self.patch).flatten(1) > 0
        x = torch.cat([self.cls.expand(b, -1, -1), self.reg.expand(b, -1, -1), tokens], dim=1)
        keep = torch.cat([torch.ones(b, 1 + self.registers, dtype=torch.bool, device=x.device), patch_valid], 1)
        x = self.blocks(x, src_key_padding_mask=~keep)
        return self.norm(x[:, 0])


class TextEncoder(nn.Module):
    """A small transformer over WordPiece ids; the [CLS] token's output is the embedding."""

    def __init__(self, vocab: int, max_len: int = 96, dim: int = 128, depth: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, dim, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(1, max_len, dim) * 0.02)
        self.blocks = _encoder(dim, heads, depth)
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim

    def no_weight_decay(self) -> set[str]:
        return {"pos", "tok.weight"}

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.tok(ids) + self.pos[:, : ids.shape[1]]
        x = self.blocks(x, src_key_padding_mask=~mask)
        return self.norm(x[:, 0])
