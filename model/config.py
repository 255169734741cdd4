"""The trainer's configuration, declared once: ``TrainConfig`` (how to train) and ``ModelConfig`` (the
architecture, saved in every checkpoint). A field made with ``option`` is also an option of
``unigeo train`` (its flag, default, help and range come from here: ``unigeo.cli.dataclass_options``);
the others are set in code. Torch-free, so that ``unigeo train --help`` needs no trainer install.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from unigeo.core.options import check_ranges, option

COORDS_KINDS = ("multiscale", "rff", "mlp")
DEFAULT_SIGMAS = (2.0**0, 2.0**4, 2.0**8, 2.0**12, 2.0**14, 2.0**16)
IMAGE_TOWERS = ("scratch", "colour", "efficientnet-lite0", "siglip:DIR")
SV_TOWERS = ("auto", "histogram", "image")
TEXT_TOWERS = ("scratch", "minilm", "siglip:DIR")


def check_tower(kind: str, value: str, choices: tuple[str, ...]) -> None:
    """``value`` is one of ``choices``, where ``siglip:DIR`` stands for any ``siglip:`` + a folder."""
    if value.startswith("siglip:") and "siglip:DIR" in choices:
        if not value[len("siglip:"):]:
            raise ValueError(f"--{kind}-tower siglip:DIR needs the local folder that holds the SigLIP model")
        return
    if value not in choices:
        raise ValueError(f"--{kind}-tower must be one of {' | '.join(choices)}, got {value!r}")


def _registered() -> tuple[str, ...]:
    from unigeo.model.modalities import names

    return names()


@dataclass(frozen=True)
class TrainConfig:
    """How to train (the architecture is ``ModelConfig``).

    Args:
        data, out: the build folder (DIR, local or an fsspec URL) and the run folder (RUN).
        weight_decay, warmup: AdamW's decoupled weight decay; warm-up as a fraction of all steps, then
            cosine decay to zero.
        clip: gradient norm clipping (0: off).
        log_every: steps between log lines.
        progress: a progress bar on stderr.
        The options' help says the rest.
    """

    data: str
    out: str
    epochs: int = option(60, "Epochs of the schedule.", min=1)
    stop_after: int = option(0, "Stop after this many epochs in total (the schedule still spans --epochs); "
                                "--resume later.", min=0)
    batch_size: int = option(256, "Samples per step on each process (under torchrun every process's samples "
                                  "are the negatives of every other's).", min=2)
    views: int = option(2, "Street-view crops of each location per step, their embeddings averaged; "
                           "evaluation embeds every crop on its own.", min=1)
    crop_min_scale: float = option(1.0, "Street-view augmentation: each crop is cut to a random square holding at "
                                        "least this share of its area (1: the whole crop).", min=0.05, max=1.0)
    lr: float = option(2e-3, "Peak AdamW learning rate (warm-up, then cosine decay).", min=0, min_open=True)
    weight_decay: float = 0.05
    warmup: float = 0.05
    clip: float = 1.0
    seed: int = option(0, "Seed of the model's initialisation, the data order and augmentation.")
    device: str = option("cpu", "Where to train.", choices=("cpu", "cuda"))
    workers: int = option(-1, "Dataloader worker processes per training process; -1: the cores the training "
                              "threads leave (0 on a 2-core CPU: measured by bench/bench_train.py), "
                              "4 per process on CUDA.", min=-1)
    shuffle_buffer: int = option(256, "Samples in each dataloader worker's shuffle buffer (raw samples, ~0.4 MB "
                                      "each in the medium world). A build's training shards are random draws over "
                                      "the metro (build --train-shard-order mixed), so a small buffer already "
                                      "mixes batches; with S2-ordered shards it gives batches of nearby places.",
                                 min=1)
    decode_cache_mb: int = option(1024, "Memory for decoded inputs (resized images, DSM grids, token ids) kept from "
                                        "one epoch to the next where samples decode in the training process "
                                        "(--workers 0, as on a 2-core CPU): there decoding is most of an epoch. "
                                        "0: decode every epoch.", min=0)
    log_every: int = 10
    resume: bool = option(False, "Continue the run in RUN from its last checkpoint, with its saved configuration "
                                 "(a flag given with another value is an error; a larger --epochs extends it).")
    overwrite: bool = option(False, "Start again in a RUN that holds a run: its model.pt, config.json, log.jsonl "
                                    "and tokenizer.json are replaced (nothing else in RUN is touched).")
    progress: bool = True
    tokenizer: str = option("", "Use this tokenizer.json (e.g. another run's) instead of fitting one on the "
                                "training texts.", show_default=False)

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture; saved in every checkpoint so that evaluation rebuilds the same model.

    Args:
        modalities: which modalities of the registry (``unigeo.model.modalities``: sv, aerial, dsm, text,
            coords) are trained, at least two; default all.
        dim: shared embedding size.
        dsm_px, dsm_patch, dsm_registers: DSM grid, ViT patch size and register tokens.
        text_len, vocab: tokens per description and vocabulary size (set from the tokenizer).
        coords_sigmas: scales of the coordinate encoder's random Fourier features.
        seed: initialisation (the trainer sets it from ``TrainConfig.seed``).
        The options' help says the rest.
    """

    modalities: tuple[str, ...] = field(default_factory=_registered)
    dim: int = 256
    image_px: int = option(64, "Street-view crops and aerial tiles are resized to this before their encoders.",
                           min=16)
    dsm_px: int = 64
    dsm_patch: int = 8
    dsm_registers: int = 4
    text_len: int = 96
    vocab: int = 4096
    coords: str = option("multiscale", "Coordinate encoder: scale tokens + self-attention, concatenated Fourier "
                                       "features + MLP, or an MLP on the projected coordinates.", choices=COORDS_KINDS)
    coords_depth: int = option(2, "Self-attention blocks of the multiscale coordinate encoder.", min=0)
    coords_pool: str = option("concat", "How the multiscale encoder pools its scale tokens: side by side into an "
                                        "MLP, or their mean.", choices=("concat", "mean"))
    coords_sigmas: tuple[float, ...] = field(default=DEFAULT_SIGMAS)
    image_tower: str = option("scratch", "Street-view and aerial encoder: scratch|colour|efficientnet-lite0|"
                                         "siglip:DIR: a small CNN from scratch beside a colour-histogram MLP, "
                                         "that MLP alone, ImageNet EfficientNet-Lite0 (weights from the train "
                                         "extra), or the SigLIP vision tower saved in the local folder DIR "
                                         "(siglip extra).")
    sv_tower: str = option("auto", "Street-view encoder: auto|histogram|image: a linear map of the crop's colour "
                                   "histogram (no layout for the tower to memorise: the build's crops are a "
                                   "fixed set), the --image-tower's encoder, or auto: histogram with the scratch "
                                   "image tower, the image tower otherwise.", choices=SV_TOWERS)
    text_tower: str = option("scratch", "Description encoder: scratch|minilm|siglip:DIR: a small transformer from "
                                        "scratch, all-MiniLM-L6-v2 (minilm extra), or the SigLIP text tower saved "
                                        "in DIR with its tokenizer.json (siglip extra).")
    seed: int = 0

    def __post_init__(self) -> None:
        registered = _registered()
        unknown = set(self.modalities) - set(registered)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; choose from {', '.join(registered)}")
        if len(set(self.modalities)) < 2:
            raise ValueError("at least two modalities are needed to align them")
        if self.coords not in COORDS_KINDS:
            raise ValueError(f"--coords must be one of {', '.join(COORDS_KINDS)}, got {self.coords!r}")
        check_tower("image", self.image_tower, IMAGE_TOWERS)
        check_tower("text", self.text_tower, TEXT_TOWERS)
        check_ranges(self)

    def street_view_tower(self) -> str:
        """What encodes street view: ``histogram`` or the image tower's kind."""
        if self.sv_tower == "histogram" or (self.sv_tower == "auto" and self.image_tower == "scratch"):
            return "histogram"
        return self.image_tower

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        if d.get("image_backbone") == "siglip":  # configs written before the tower options
            d = {**d, "image_tower": f"siglip:{d.get('siglip_path', '')}"}
        if "sv_tower" not in d:  # configs written before street view had a tower of its own
            d = {**d, "sv_tower": "image"}
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known}
        return cls(**kw)
