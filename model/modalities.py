"""The modality registry: the one place where a modality of the trainer is declared.

A ``Modality`` says how a sample's members become arrays (``decode``), which of those arrays its
encoder takes, in order (``inputs``), how its encoder is built (``encoder``) and, where a location has
several of them, how those rows are pooled (``views``). The data path, the model, the loss, evaluation
and its page iterate ``REGISTRY`` in order; the encoders name their own parameters that take no weight
decay (``no_weight_decay``). Adding a modality is one ``register`` call: see
``tests/model/test_modalities.py``, which adds a toy one and trains a step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unigeo.core.sample import TEXT, SampleMeta, crop_members, decode_dsm, kind_count, member_names, tile_member

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from unigeo.model.data import DecodeSpec
    from unigeo.model.network import ModelConfig


class DecodeCache:
    """What a sample's members decode to before any randomness (a resized image, a DSM grid, token ids),
    kept from one epoch to the next: on a CPU that trains with no dataloader worker, decoding is most of
    an epoch. Holds up to ``max_bytes``, then keeps no more (the same samples stay cached every epoch).
    Cached arrays are read-only; a decoder that changes one copies it first."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.nbytes = max_bytes, 0
        self.items: dict[tuple[str, str], Any] = {}

    def get(self, key: tuple[str, str], make: Callable[[], Any]) -> Any:
        if key in self.items:
            return self.items[key]
        value = make()
        arrays = [a for a in (value if isinstance(value, tuple) else (value,)) if isinstance(a, np.ndarray)]
        size = sum(a.nbytes for a in arrays)
        if self.nbytes + size <= self.max_bytes:
            for a in arrays:
                a.flags.writeable = False
            self.items[key] = value
            self.nbytes += size
        return value


@dataclass
class DecodeContext:
    """What a modality's decoder may read: the sample's members and metadata, the decoding spec, the
    tokenizer, and per-sample randomness (``rng``, derived from seed, epoch and key; ``dihedral``,
    the rotation and mirror shared by the top-down modalities so that aerial and DSM stay aligned)."""

    raw: dict[str, Any]
    meta: SampleMeta
    spec: DecodeSpec
    tokenizer: Tokenizer | None
    epoch: int
    rng: np.random.Generator
    dihedral: tuple[int, bool]
    cache: DecodeCache | None = None

    def load(self, member: str, make: Callable[[], Any]) -> Any:
        """``make()``: a decode of ``member`` that uses no randomness, from the cache where there is one."""
        return make() if self.cache is None else self.cache.get((self.meta["key"], member), make)


# decode(ctx) -> (arrays to put in the item, whether the sample has the modality)
Decode = Callable[[DecodeContext], tuple[dict[str, Any], bool]]


@dataclass(frozen=True)
class Modality:
    """One modality of the trainer.

    Args:
        name: its name in ``--modalities``, batches, losses (``a->b``) and ``embeddings.npz``.
        decode: raw sample -> arrays (numpy; stacked into the batch when they are arrays) and presence.
        inputs: the batch keys its encoder takes, in this order.
        encoder: model configuration -> (encoder module, its output width).
        views: the key of a (views,) mask when the modality decodes several rows per location for
            training (their embeddings are averaged), and evaluation embeds each row on its own.
        member: the member kind it is decoded from (a ``MEMBER_KINDS`` key: ``aerial`` is ``aerial.png`` in a
            standard build, ``aerial.webp`` in a compact one); a build whose manifest counts no member of
            that kind cannot train the modality. None: not checked.
    """

    name: str
    decode: Decode
    inputs: tuple[str, ...]
    encoder: Callable[[ModelConfig], tuple[nn.Module, int]]
    views: str | None = None
    extra_keys: tuple[str, ...] = field(default=())  # item keys that are not batched (lists, strings)
    member: str | None = None


REGISTRY: dict[str, Modality] = {}


def register(modality: Modality) -> Modality:
    """Add (or replace) a modality; the registry's order is the canonical order of modalities."""
    REGISTRY[modality.name] = modality
    return modality


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def ordered(modalities: tuple[str, ...]) -> tuple[str, ...]:
    """Modalities in the registry's order."""
    return tuple(m for m in REGISTRY if m in modalities)


# ---------------------------------------------------------------- the five modalities


def _dihedral(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    a = np.rot90(a, k, axes=(-2, -1))
    return np.ascontiguousarray(a[..., ::-1] if flip else a)


def _decode_sv(ctx: DecodeContext) -> tuple[dict[str, Any], bool]:
    from unigeo.model.data import key_hash, random_box, rgb

    spec, px = ctx.spec, ctx.spec.image_px
    crops = [m for m in crop_members(ctx.meta) if m in ctx.raw]
    if spec.all_crops:  # evaluation: every crop, each its own query
        sv = np.stack([rgb(ctx.raw[m], px) for m in crops]) if crops else np.zeros((0, 3, px, px), np.uint8)
        return {"sv": sv, "sv_members": crops}, bool(crops)
    out = np.zeros((spec.views, 3, px, px), np.uint8)
    views = np.zeros(spec.views, bool)
    # Every crop of the location comes round in turn, ``views`` of them per epoch.
    first = key_hash(ctx.meta["key"]) + ctx.epoch * spec.views
    for j in range(min(spec.views, len(crops))):
        box = random_box(ctx.rng, spec.crop_min_scale) if spec.augment else None
        member = crops[(first + j) % len(crops)]
        crop = rgb(ctx.raw[member], px, box) if box else ctx.load(member, partial(rgb, ctx.raw[member], px))
        out[j] = crop[..., ::-1] if spec.augment and ctx.rng.random() < 0.5 else crop
        views[j] = True
    return {"sv": out, "sv_views": views}, bool(crops)


def _decode_aerial(ctx: DecodeContext) -> tuple[dict[str, Any], bool]:
    from unigeo.model.data import rgb

    px = ctx.spec.image_px
    member = tile_member(ctx.raw, "aerial")
    if member is None:
        return {"aerial": np.zeros((3, px, px), np.uint8)}, False
    return {"aerial": _dihedral(ctx.load(member, lambda: rgb(ctx.raw[member], px)), *ctx.dihedral)}, True


def _decode_dsm(ctx: DecodeContext) -> tuple[dict[str, Any], bool]:
    from unigeo.model.data import dsm_height

    px = ctx.spec.dsm_px
    height, valid = np.zeros((px, px), np.float32), np.zeros((px, px), bool)
    member = tile_member(ctx.raw, "dsm")
    decoded = (ctx.load(member, lambda: dsm_height(decode_dsm(ctx.raw[member]), px)) if member is not None
               else None)
    if decoded is not None:
        height, valid = _dihedral(decoded[0], *ctx.dihedral), _dihedral(decoded[1], *ctx.dihedral)
    return {"dsm": height[None], "dsm_valid": valid[None]}, decoded is not None


def _decode_text(ctx: DecodeContext) -> tuple[dict[str, Any], bool]:
    from unigeo.model.tokenizer import encode

    text = ctx.raw[TEXT].decode("utf-8").strip() if TEXT in ctx.raw else ""
    out: dict[str, Any] = {"text_str": text}
    if ctx.tokenizer is not None:
        tokenizer = ctx.tokenizer

        def tokens() -> tuple[np.ndarray, np.ndarray]:
            ids, mask = encode(tokenizer, [text], ctx.spec.text_len)
            return ids[0].numpy(), mask[0].numpy()

        out["text"], out["text_mask"] = ctx.load(TEXT, tokens)
    return out, bool(text)


def _decode_coords(ctx: DecodeContext) -> tuple[dict[str, Any], bool]:
    return {"lat": np.float64(ctx.meta["lat"]), "lon": np.float64(ctx.meta["lon"])}, True


def _image_encoder(cfg: ModelConfig) -> tuple[nn.Module, int]:
    from unigeo.model.network import image_encoder

    return image_encoder(cfg)


def _sv_encoder(cfg: ModelConfig) -> tuple[nn.Module, int]:
    from unigeo.model.encoders import HistogramEncoder

    if cfg.street_view_tower() == "histogram":
        enc = HistogramEncoder()
        return enc, enc.out_dim
    return _image_encoder(cfg)


def _dsm_encoder(cfg: ModelConfig) -> tuple[nn.Module, int]:
    from unigeo.model.encoders import DSMEncoder

    enc = DSMEncoder(cfg.dsm_px, cfg.dsm_patch, registers=cfg.dsm_registers)
    return enc, enc.out_dim


def _text_encoder(cfg: ModelConfig) -> tuple[nn.Module, int]:
    from unigeo.model.network import text_encoder

    return text_encoder(cfg)


def _coords_encoder(cfg: ModelConfig) -> tuple[nn.Module, int]:
    from unigeo.model.coords import CoordinateEncoder

    enc = CoordinateEncoder(cfg.dim, cfg.coords, cfg.coords_sigmas, depth=cfg.coords_depth, pool=cfg.coords_pool,
                            seed=cfg.seed)
    return enc, cfg.dim


register(Modality("sv", _decode_sv, ("sv",), _sv_encoder, views="sv_views", extra_keys=("sv_members",),
                  member="sv"))
register(Modality("aerial", _decode_aerial, ("aerial",), _image_encoder, member="aerial"))
register(Modality("dsm", _decode_dsm, ("dsm", "dsm_valid"), _dsm_encoder, member="dsm"))
register(Modality("text", _decode_text, ("text", "text_mask"), _text_encoder, extra_keys=("text_str",),
                  member="text"))
register(Modality("coords", _decode_coords, ("lat", "lon"), _coords_encoder, member="json"))


def missing_from_build(modalities: tuple[str, ...], manifest: dict[str, Any]) -> dict[str, str]:
    """The modalities a build cannot train, each with the member kind its manifest counts none of
    (an older manifest without member counts: none missing)."""
    counts = manifest.get("counts", {}).get("overall", {}).get("members")
    if not isinstance(counts, dict):
        return {}
    kinds = {m: REGISTRY[m].member for m in modalities}
    return {m: member_names(kind) for m, kind in kinds.items() if kind is not None and not kind_count(counts, kind)}


def build_modalities(manifest: dict[str, Any]) -> tuple[str, ...]:
    """The registered modalities a build holds."""
    return tuple(m for m in REGISTRY if not missing_from_build((m,), manifest))


# ---------------------------------------------------------------- embedding


def embed_rows(modality: Modality, encoder: nn.Module, batch: dict[str, Any],
               rows: torch.Tensor | None = None) -> torch.Tensor:
    """Embeddings (n, dim) of ``modality`` for the batch rows ``rows`` (default: all).

    Where the batch holds several views per row (``modality.views`` present and the first input one
    dimension deeper than a single view), each view is embedded and a row's views are averaged.
    """
    def pick(t: torch.Tensor) -> torch.Tensor:
        return t if rows is None else t[rows]

    args = [pick(batch[k]) for k in modality.inputs]
    if modality.views is not None and modality.views in batch and args[0].ndim == batch[modality.views].ndim + 3:
        views = pick(batch[modality.views])
        owner = torch.nonzero(views)[:, 0]
        per_view = encoder(*(a[views] for a in args))
        pooled = torch.zeros(len(views), per_view.shape[1], device=per_view.device, dtype=per_view.dtype)
        return F.normalize(pooled.index_add(0, owner, per_view), dim=-1)
    return encoder(*args)


def no_weight_decay(model: nn.Module) -> set[str]:
    """Names of the parameters that take no weight decay: every vector (norms, biases, the temperature)
    and whatever an encoder lists in its ``no_weight_decay()`` (position and class tokens, embedding
    tables)."""
    names = {n for n, p in model.named_parameters() if p.ndim < 2}
    for prefix, module in model.named_modules():
        listed = getattr(module, "no_weight_decay", None)
        if callable(listed):
            names |= {f"{prefix}.{n}" if prefix else n for n in listed()}
    return names
