"""Reading a build's shards for training and evaluation, through webdataset and fsspec.

Every epoch has one plan, the same on every rank: the training shards in an order shuffled by
(seed, epoch), their samples numbered one after another. Rank ``r`` of ``W`` takes the contiguous
positions ``[r * N // W, (r + 1) * N // W)``, so each location is visited exactly once per epoch and
a rank reads only the shards its range touches; its dataloader workers split those shard slices
between them and shuffle through a buffer. Batches are cut in the main process so that every rank
takes the same number of steps (``steps_per_epoch``), with batch sizes differing by at most one:
no rank waits at the end of an epoch for a peer that has run out of data.

A sample decodes to numpy arrays: one street-view crop (rotating through the location's crops over
epochs), the aerial tile, the DSM as height above the tile's ground with a validity mask, the
tokenised description and the coordinates. A member the sample lacks is marked absent
(``present[m] = False``) and is masked out of the loss by the model, never fed in as zeros.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import webdataset as wds
from PIL import Image
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset import tariterators

from unigeo.core import build_files, fileio
from unigeo.core.errors import UniGeoError
from unigeo.core.sample import JSON, TEST, TEXT, TRAIN, SampleMeta, member_names
from unigeo.model.modalities import REGISTRY, DecodeCache, DecodeContext

BAD_SAMPLE = "__bad_sample__"  # an item that stands for a read error in a dataloader worker
DSM_SCALE_M = 20.0  # heights above ground are divided by this before the encoder


# ---------------------------------------------------------------- shards and the epoch plan


@dataclass(frozen=True)
class Shard:
    url: str
    samples: int
    bytes: int | None = None  # as the manifest lists it


class BadSampleError(UniGeoError):
    """A shard or a sample in it that cannot be read; the message names the shard and the sample."""


@dataclass(frozen=True)
class ShardSlice:
    url: str
    start: int  # first sample (position inside the shard) to keep
    stop: int  # one past the last


def read_manifest(data: str) -> dict[str, Any]:
    """``DIR/manifest.json``, or an error saying that ``--data`` must be a build folder."""
    try:
        return build_files.read_manifest(data)
    except FileNotFoundError as e:
        raise UniGeoError(f"{fileio.join(data, build_files.MANIFEST)} not found: --data must be the output "
                          "folder of `unigeo build`") from e


def list_shards(data: str, split: str, manifest: dict[str, Any] | None = None) -> list[Shard]:
    """The shards of one split listed in ``DIR/manifest.json``, with their sample counts."""
    manifest = manifest or read_manifest(data)
    root = build_files.build_root(data, manifest)  # a versioned build's files lie under the prefix it names
    shards = [Shard(fileio.join(root, s["shard"]), int(s["samples"]), s.get("bytes"))
              for s in manifest.get("shards", []) if s["split"] == split and int(s["samples"]) > 0]
    return sorted(shards, key=lambda s: s.url)


def check_shards(shards: Sequence[Shard]) -> None:
    """Every shard is there with the size the manifest lists, before any is read."""
    for shard in shards:
        size = fileio.size(shard.url)
        if size is None:
            raise BadSampleError(f"shard {shard.url} is listed in the manifest but missing")
        if shard.bytes is not None and size != shard.bytes:
            raise BadSampleError(f"shard {shard.url} has {size} bytes, the manifest lists {shard.bytes}: "
                                 "it was truncated or replaced after the build")


def rank_range(total: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous positions ``[start, stop)`` of an epoch's ``total`` samples that ``rank`` takes."""
    return rank * total // world_size, (rank + 1) * total // world_size


def steps_per_epoch(total: int, batch_size: int, world_size: int = 1) -> int:
    """Steps every rank takes per epoch: enough for the rank with the most samples."""
    return max(1, math.ceil(math.ceil(total / world_size) / batch_size))


def batch_sizes(n: int, steps: int) -> list[int]:
    """``n`` samples cut into ``steps`` batches whose sizes differ by at most one."""
    return [n // steps + (1 if i < n % steps else 0) for i in range(steps)]


def epoch_plan(shards: Sequence[Shard], epoch: int, seed: int, rank: int = 0, world_size: int = 1,
               shuffle: bool = True) -> list[ShardSlice]:
    """The shard slices ``rank`` reads in ``epoch`` (the shard order is the same on every rank)."""
    order = list(shards)
    if shuffle:
        perm = np.random.default_rng([seed, epoch, 1]).permutation(len(order))
        order = [order[i] for i in perm]
    start, stop = rank_range(sum(s.samples for s in order), rank, world_size)
    slices, offset = [], 0
    for s in order:
        lo, hi = max(start, offset), min(stop, offset + s.samples)
        if lo < hi:
            slices.append(ShardSlice(s.url, lo - offset, hi - offset))
        offset += s.samples
    return slices


def iter_raw(slices: Iterable[ShardSlice]) -> Iterator[dict[str, Any]]:
    """Raw samples (``__key__`` plus member bytes) of shard slices, read through fsspec; a shard that
    cannot be read, or holds fewer samples than its slice needs, raises ``BadSampleError`` naming it."""
    for sl in slices:
        last, i = None, -1
        try:
            with fileio.open_binary(sl.url) as stream:
                files = tariterators.tar_file_expander([{"url": sl.url, "stream": stream}])
                for i, sample in enumerate(tariterators.group_by_keys(files)):
                    if i >= sl.stop:
                        break
                    last = sample.get("__key__")
                    if i >= sl.start:
                        yield sample
        except (tarfile.TarError, OSError, EOFError, ValueError, KeyError) as e:
            where = f"after sample {last}" if last else "at its start"
            raise BadSampleError(f"shard {sl.url}: unreadable {where}: {_one_line(e)}") from None
        if i + 1 < sl.stop:
            raise BadSampleError(f"shard {sl.url} ends after {i + 1} samples; the manifest lists at least {sl.stop}")


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e.args[0] if e.args else e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# ---------------------------------------------------------------- decoding


@dataclass(frozen=True)
class DecodeSpec:
    """How members become arrays.

    Args:
        image_px: side of the street-view and aerial images fed to the encoders.
        dsm_px: side of the DSM grid fed to its encoder.
        text_len: tokens per description, [CLS] included.
        augment: random dihedral transform of aerial + DSM (jointly) and horizontal flip of the crop.
        all_crops: every crop of a location (evaluation) rather than ``views`` per step.
        views: street-view crops of a location per training step (fewer where it has fewer), different
            crops from one epoch to the next; ``sv`` is then (views, 3, px, px) with ``sv_views`` marking
            the real ones.
        crop_min_scale: with ``augment``, each street-view crop is cut to a random square holding this
            much of its area or more (1: the whole crop), as another viewpoint or field of view would.
    """

    image_px: int = 64
    dsm_px: int = 64
    text_len: int = 96
    augment: bool = False
    all_crops: bool = False
    views: int = 1
    crop_min_scale: float = 1.0


def rgb(data: bytes, px: int, box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """JPEG or PNG bytes -> (3, px, px) uint8, decoded at a reduced DCT scale where possible.

    ``box``: the part of the image to keep, (left, top, right, bottom) as fractions of its size.
    """
    with Image.open(io.BytesIO(data)) as src:
        if box is None:
            src.draft("RGB", (px, px))
        img = src.convert("RGB")
        w, h = img.size
        region = None if box is None else (box[0] * w, box[1] * h, box[2] * w, box[3] * h)
        if img.size != (px, px) or region is not None:
            img = img.resize((px, px), Image.Resampling.BILINEAR, box=region, reducing_gap=2.0)
        return np.ascontiguousarray(np.asarray(img).transpose(2, 0, 1))


def random_box(rng: np.random.Generator, min_scale: float) -> tuple[float, float, float, float] | None:
    """A random square part of an image holding ``min_scale``..1 of its area (None: the whole image)."""
    if min_scale >= 1.0:
        return None
    side = float(np.sqrt(rng.uniform(min_scale, 1.0)))
    left, top = rng.uniform(0, 1 - side, size=2)
    return float(left), float(top), float(left + side), float(top + side)


def dsm_height(dsm: np.ndarray, px: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A DSM tile -> (height above the tile's ground / DSM_SCALE_M, valid mask), both (px, px).

    The ground is the tile's 5th percentile of valid heights; cells are block-averaged over valid
    values only; a cell with no valid value is 0 and invalid. None when nothing in the tile is valid.
    """
    valid = np.isfinite(dsm)
    if not valid.any():
        return None
    ground = float(np.percentile(dsm[valid], 5))
    h, w = dsm.shape
    if h % px or w % px:
        rows = (np.arange(px) * h) // px
        cols = (np.arange(px) * w) // px
        dsm, valid = dsm[np.ix_(rows, cols)], valid[np.ix_(rows, cols)]
        fh = fw = 1
    else:
        fh, fw = h // px, w // px
    filled = np.where(valid, dsm - ground, 0.0).reshape(px, fh, px, fw)
    counts = valid.reshape(px, fh, px, fw).sum(axis=(1, 3))
    height = filled.sum(axis=(1, 3)) / np.maximum(counts, 1)
    return (height / DSM_SCALE_M).astype(np.float32), counts > 0


def key_hash(key: str) -> int:
    return zlib.crc32(key.encode())


class Decoder:
    """Raw sample -> dict of arrays, each modality of the registry decoding its members; picklable, so
    dataloader workers get a copy."""

    def __init__(self, spec: DecodeSpec, tokenizer: Tokenizer | None, seed: int = 0, cache_mb: float = 0) -> None:
        self.spec, self.tokenizer, self.seed = spec, tokenizer, seed
        self.epoch = 0
        self.cache = DecodeCache(int(cache_mb * 2**20)) if cache_mb > 0 else None

    def __getstate__(self) -> dict[str, Any]:
        # A dataloader worker gets an empty cache: it lives one epoch, so it never keeps one.
        return {**self.__dict__, "cache": None}

    def __call__(self, raw: dict[str, Any]) -> dict[str, Any]:
        where = f"sample {raw.get('__key__')} in shard {raw.get('__url__')}"
        if JSON not in raw:
            raise BadSampleError(f"{where} has no {JSON} member")
        try:
            meta: SampleMeta = json.loads(raw[JSON])
            key, cell = meta["key"], meta["cell"]
            if not isinstance(key, str):
                raise TypeError(f"key {key!r} is not a string")
        except (ValueError, KeyError, TypeError) as e:
            raise BadSampleError(f"{where}: its {JSON} member is not a sample's JSON ({_one_line(e)})") from None
        rng = np.random.default_rng([self.seed, self.epoch, key_hash(key)])
        dihedral = (int(rng.integers(4)), bool(rng.random() < 0.5)) if self.spec.augment else (0, False)
        ctx = DecodeContext(raw, meta, self.spec, self.tokenizer, self.epoch, rng, dihedral, self.cache)
        out: dict[str, Any] = {"key": key, "cell": cell}
        present = {}
        for name, modality in REGISTRY.items():
            try:
                arrays, present[name] = modality.decode(ctx)
            except Exception as e:  # any decoder's failure on this sample's bytes, named with the sample
                member = f"its {member_names(modality.member, raw)} member" if modality.member else f"its {name}"
                raise BadSampleError(f"{where}: {member} cannot be decoded ({_one_line(e)})") from None
            out.update(arrays)
        out["present"] = present
        return out


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack decoded samples into a batch of tensors (``present`` becomes (B,) bool per modality); the
    keys each modality declares as inputs or views are stacked, its other keys kept as lists."""
    first = items[0]
    batch: dict[str, Any] = {
        "key": [it["key"] for it in items], "cell": [it["cell"] for it in items],
        "present": {m: torch.tensor([it["present"][m] for it in items]) for m in first["present"]},
    }
    for modality in REGISTRY.values():
        for name in (*modality.inputs, *((modality.views,) if modality.views else ())):
            if name in first:
                batch[name] = torch.from_numpy(np.stack([np.asarray(it[name]) for it in items]))
        for name in modality.extra_keys:
            if name in first:
                batch[name] = [it[name] for it in items]
    return batch


# ---------------------------------------------------------------- the training stream


class ShardStream(IterableDataset):
    """One rank's samples of one epoch: its shard slices split between dataloader workers, shuffled
    through a buffer, decoded. ``set_epoch`` before iterating; the stream is deterministic given
    (seed, epoch, rank, world size, workers)."""

    def __init__(self, shards: Sequence[Shard], decoder: Decoder, seed: int = 0, rank: int = 0,
                 world_size: int = 1, shuffle: bool = True, shuffle_buffer: int = 256) -> None:
        super().__init__()
        self.shards, self.decoder, self.seed = list(shards), decoder, seed
        self.rank, self.world_size = rank, world_size
        self.shuffle, self.shuffle_buffer = shuffle, shuffle_buffer
        self.epoch = 0

    @property
    def total(self) -> int:
        return sum(s.samples for s in self.shards)

    def rank_samples(self) -> int:
        start, stop = rank_range(self.total, self.rank, self.world_size)
        return stop - start

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.decoder.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        plan = epoch_plan(self.shards, self.epoch, self.seed, self.rank, self.world_size, self.shuffle)
        raw: Iterator[dict[str, Any]] = iter_raw(plan[worker::workers])
        if self.shuffle and self.shuffle_buffer > 1:
            seed = int(np.random.default_rng([self.seed, self.epoch, self.rank, worker, 2]).integers(2**62))
            initial = min(64, self.shuffle_buffer)  # start yielding early: the buffer fills as it goes
            raw = wds.filters._shuffle(raw, bufsize=self.shuffle_buffer, initial=initial, seed=seed)
        try:
            for sample in raw:
                yield self.decoder(sample)
        except BadSampleError as e:  # handed to the main process as an item: a worker's exception would
            yield {BAD_SAMPLE: str(e)}  # arrive wrapped in its traceback


def _as_is(item: dict[str, Any]) -> dict[str, Any]:
    """The loader's per-item conversion: none. ``collate`` stacks the arrays of a batch itself (into new,
    writable arrays); torch's default conversion would wrap each decoded array, read-only cached ones too."""
    return item


def rank_batches(stream: ShardStream, batch_size: int, workers: int = 2,
                 loader_factory: Callable[..., DataLoader] = DataLoader) -> Iterator[dict[str, Any]]:
    """The epoch's batches on this rank: exactly ``steps_per_epoch`` of them, every sample once."""
    steps = steps_per_epoch(stream.total, batch_size, stream.world_size)
    sizes = batch_sizes(stream.rank_samples(), steps)
    loader = loader_factory(stream, batch_size=None, num_workers=workers, collate_fn=_as_is,
                            persistent_workers=False, prefetch_factor=8 if workers else None)
    it = iter(loader)
    for size in sizes:
        items = []
        for item in it:
            if BAD_SAMPLE in item:
                raise BadSampleError(item[BAD_SAMPLE])
            items.append(item)
            if len(items) == size:
                break
        if len(items) < size:
            raise RuntimeError(f"the epoch plan ran out of samples on rank {stream.rank}")
        yield collate(items)
    leftover = sum(1 for _ in it)
    if leftover:
        raise RuntimeError(f"the epoch plan left {leftover} samples unread on rank {stream.rank}")


# ---------------------------------------------------------------- evaluation and tokenizer input


def iter_whole(shards: Sequence[Shard]) -> Iterator[dict[str, Any]]:
    """Raw samples of whole shards, in the order given."""
    return iter_raw(ShardSlice(s.url, 0, s.samples) for s in shards)


def iter_locations(shards: Sequence[Shard], decoder: Decoder) -> Iterator[dict[str, Any]]:
    """Every sample of ``shards`` in manifest order, decoded (evaluation: no shuffle, all crops)."""
    for sample in iter_whole(shards):
        yield decoder(sample)


def iter_texts(shards: Sequence[Shard]) -> Iterator[str]:
    """The descriptions of the shards' samples (for fitting the tokenizer)."""
    for sample in iter_whole(shards):
        if TEXT in sample:
            text = sample[TEXT].decode("utf-8").strip()
            if text:
                yield text


SPLITS = (TRAIN, TEST)
