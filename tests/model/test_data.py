"""Reading shards for training: the epoch plan (each location once, equal steps on every rank),
crop rotation, the DSM as height above ground, absent members, fsspec URLs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from unigeo.model.data import (
    Decoder,
    DecodeSpec,
    ShardStream,
    batch_sizes,
    dsm_height,
    epoch_plan,
    iter_raw,
    list_shards,
    rank_batches,
    steps_per_epoch,
)
from unigeo.model.network import UniGeoModel
from unigeo.model.tokenizer import train_tokenizer

from .conftest import small_model

SIZES = (7, 3, 5, 1, 6)  # uneven shards: 22 locations


def _png(rgb: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt)
    return buf.getvalue()


def write_split(folder: Path, sizes: tuple[int, ...] = SIZES, crops: int = 3, aerial_every: int = 1) -> list[str]:
    """Real tar shards of made-up locations and the manifest that lists them; returns the keys."""
    rng = np.random.default_rng(0)
    (folder / "shards" / "train").mkdir(parents=True)
    keys, shards, k = [], [], 0
    for s, n in enumerate(sizes):
        rel = f"shards/train/town-train-{s:06d}.tar"
        with wds.TarWriter(str(folder / rel)) as w:
            for _ in range(n):
                key = f"cell{k:04d}_train"
                members = [f"sv.{c:03d}.jpg" for c in range(crops)]
                meta = {"key": key, "cell": f"cell{k:04d}", "lat": 42.0 + k * 1e-3, "lon": -71.0, "split": "train",
                        "panoramas": [{"crops": [{"member": m} for m in members]}]}
                sample = {"__key__": key, "json": json.dumps(meta).encode(), "txt": f"place {k} near a park".encode(),
                          "dsm.npy": _npy(rng.normal(10, 3, (64, 64)).astype(np.float32))}
                for c, m in enumerate(members):  # the crop index is written in its red channel
                    sample[m] = _png(np.full((64, 64, 3), 40 * c, np.uint8), "JPEG")
                if k % aerial_every == 0:
                    sample["aerial.png"] = _png(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "PNG")
                w.write(sample)
                keys.append(key)
                k += 1
        shards.append({"shard": rel, "split": "train", "samples": n})
    (folder / "manifest.json").write_text(json.dumps({"shards": shards}))
    return keys


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_one_epoch_over_2_ranks_x_2_workers_visits_each_location_once(tmp_path: Path) -> None:
    keys = write_split(tmp_path)
    shards = list_shards(str(tmp_path), "train")
    tok = train_tokenizer(["place near a park"] * 4, vocab_size=64, min_frequency=1)
    seen: list[str] = []
    steps = []
    for rank in (0, 1):
        stream = ShardStream(shards, Decoder(DecodeSpec(image_px=16, dsm_px=16, text_len=8), tok), seed=3,
                             rank=rank, world_size=2, shuffle_buffer=4)
        stream.set_epoch(1)
        batches = list(rank_batches(stream, batch_size=3, workers=2))
        sizes = [len(b["key"]) for b in batches]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
        steps.append(len(batches))
        seen += [k for b in batches for k in b["key"]]
    assert steps[0] == steps[1] == steps_per_epoch(len(keys), 3, 2)  # no rank waits for the other
    assert sorted(seen) == sorted(keys)  # every location exactly once


def test_the_plan_reshuffles_shards_per_epoch_and_is_the_same_on_every_rank(tmp_path: Path) -> None:
    write_split(tmp_path)
    shards = list_shards(str(tmp_path), "train")
    orders = {tuple(s.url for s in epoch_plan(shards, e, seed=0)) for e in range(6)}
    assert len(orders) > 1
    both = epoch_plan(shards, 2, 0, 0, 2) + epoch_plan(shards, 2, 0, 1, 2)
    assert sum(s.stop - s.start for s in both) == sum(SIZES)
    assert batch_sizes(10, 4) == [3, 3, 2, 2]


def test_every_crop_comes_round_over_epochs(tmp_path: Path) -> None:
    write_split(tmp_path, sizes=(1,), crops=3)
    raw = next(iter_raw([s for s in epoch_plan(list_shards(str(tmp_path), "train"), 0, 0)]))
    dec = Decoder(DecodeSpec(image_px=16), None)
    chosen = []
    for epoch in range(3):
        dec.epoch = epoch
        chosen.append(int(round(dec(raw)["sv"][0].mean() / 40)))
    assert sorted(chosen) == [0, 1, 2]


def test_several_views_per_step_are_distinct_crops_pooled_by_the_model(tmp_path: Path) -> None:
    write_split(tmp_path, sizes=(2,), crops=3)
    raws = list(iter_raw(epoch_plan(list_shards(str(tmp_path), "train"), 0, 0, shuffle=False)))
    dec = Decoder(DecodeSpec(image_px=16, views=2), None)
    seen = set()
    for epoch in range(3):
        dec.epoch = epoch
        item = dec(raws[0])
        assert item["sv"].shape == (2, 3, 16, 16) and item["sv_views"].tolist() == [True, True]
        views = [int(round(v.mean() / 40)) for v in item["sv"]]
        assert views[0] != views[1]  # two different crops of the location
        seen.update(views)
    assert seen == {0, 1, 2}
    one = Decoder(DecodeSpec(image_px=16, views=4), None)(raws[1])  # more views than crops: the rest masked
    assert one["sv_views"].tolist() == [True, True, True, False] and not one["sv"][3].any()

    from unigeo.model.data import collate

    batch = collate([dec(r) for r in raws])
    model = UniGeoModel(small_model(image_px=16, modalities=("sv", "coords"))).eval()
    with torch.no_grad():
        pooled = model.embed("sv", batch)
        single = [model.embed("sv", {"sv": batch["sv"][i]}) for i in range(2)]  # each crop on its own
    for i in range(2):
        mean = torch.nn.functional.normalize(single[i].mean(0), dim=0)
        assert torch.allclose(pooled[i], mean, atol=1e-5)


def test_dsm_is_height_above_the_tile_ground_with_a_validity_mask() -> None:
    dsm = np.full((64, 64), 120.0, np.float32)  # ground at 120 m
    dsm[:16, :16] = 140.0  # a 20 m building
    dsm[48:, 48:] = np.nan  # unknown (water)
    height, valid = dsm_height(dsm, 16)
    assert height.shape == valid.shape == (16, 16)
    assert np.allclose(height[:4, :4] * 20.0, 20.0) and np.allclose(height[8, 8], 0.0)
    assert not valid[12:, 12:].any() and valid[:12].all()
    assert np.all(height[~valid] == 0)
    assert dsm_height(np.full((8, 8), np.nan, np.float32), 4) is None


def test_absent_members_are_masked_not_zero_filled(tmp_path: Path) -> None:
    write_split(tmp_path, sizes=(4,), aerial_every=2)  # locations 1 and 3 have no aerial
    raws = list(iter_raw(epoch_plan(list_shards(str(tmp_path), "train"), 0, 0, shuffle=False)))
    tok = train_tokenizer(["place near a park"] * 4, vocab_size=64, min_frequency=1)
    from unigeo.model.data import collate

    batch = collate([Decoder(DecodeSpec(image_px=32, dsm_px=32, text_len=48), tok)(r) for r in raws])
    assert batch["present"]["aerial"].tolist() == [True, False, True, False]
    model = UniGeoModel(small_model(vocab=tok.get_vocab_size()))
    emb, present, _ = model(batch)
    assert present["aerial"].tolist() == [True, False, True, False]
    assert torch.all(emb["aerial"][~present["aerial"]] == 0)  # never computed
    # The present rows are what the encoder gives for those rows alone.
    alone = model.embed("aerial", batch, torch.tensor([0, 2]))
    assert torch.allclose(emb["aerial"][present["aerial"]], alone, atol=1e-6)


def test_shards_read_through_an_fsspec_url(tmp_path: Path) -> None:
    keys = write_split(tmp_path, sizes=(2, 3))
    shards = list_shards(f"file://{tmp_path}", "train")
    assert all(s.url.startswith("file://") for s in shards)
    got = [r["__key__"] for r in iter_raw(epoch_plan(shards, 0, 0, shuffle=False))]
    assert sorted(got) == sorted(keys)


def test_a_folder_without_a_manifest_is_a_clear_error(tmp_path: Path) -> None:
    from unigeo.core.errors import UniGeoError

    with pytest.raises(UniGeoError, match="manifest.json not found"):
        list_shards(str(tmp_path), "train")


def test_a_random_square_of_the_crop_is_decoded_as_the_whole_image() -> None:
    from unigeo.model.data import random_box, rgb

    img = np.zeros((64, 64, 3), np.uint8)
    img[:, :32, 0] = 250  # left half red, right half blue
    img[:, 32:, 2] = 250
    data = _png(img, "PNG")
    left = rgb(data, 16, (0.0, 0.25, 0.5, 0.75))
    assert left[0].min() > 200 and left[2].max() < 50  # all red
    assert rgb(data, 16)[0].mean() == pytest.approx(125, abs=10)  # the whole image: half red
    rng = np.random.default_rng(0)
    boxes = [random_box(rng, 0.3) for _ in range(200)]
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes if b is not None]
    assert len(areas) == 200 and min(areas) >= 0.3 and max(areas) <= 1.0 and np.std(areas) > 0.1
    assert all(0 <= b[0] < b[2] <= 1 and 0 <= b[1] < b[3] <= 1 for b in boxes if b is not None)
    assert random_box(rng, 1.0) is None


def test_the_decode_cache_gives_the_same_items_every_epoch_and_stays_within_its_bound(tmp_path: Path) -> None:
    import pickle

    keys = write_split(tmp_path, sizes=(6,), crops=3, aerial_every=2)
    shards = list_shards(str(tmp_path), "train")
    raws = list(iter_raw(epoch_plan(shards, 0, 0)))
    tok = train_tokenizer([r["txt"].decode() for r in raws], 64)
    spec = DecodeSpec(image_px=16, dsm_px=16, text_len=12, augment=True, views=2)
    plain, cached, small = Decoder(spec, tok, 3), Decoder(spec, tok, 3, cache_mb=8), Decoder(spec, tok, 3, 0.002)
    for epoch in range(4):  # the views, mirrors and dihedral transforms change; the items stay equal
        for dec in (plain, cached, small):
            dec.epoch = epoch
        for raw in raws:
            want = plain(raw)
            for got in (cached(raw), small(raw)):
                assert want.keys() == got.keys()
                for k, v in want.items():
                    if isinstance(v, np.ndarray):
                        assert v.dtype == got[k].dtype and np.array_equal(v, got[k]), (epoch, k)
                    else:
                        assert v == got[k], (epoch, k)
    assert cached.cache is not None and small.cache is not None
    # every member of every sample: 3 crops, the DSM, the text, and the aerial of every other sample
    assert len(cached.cache.items) == len(keys) * 5 + len(keys) // 2
    assert all(not a.flags.writeable for v in cached.cache.items.values()
               for a in (v if isinstance(v, tuple) else (v,)) if isinstance(a, np.ndarray))
    assert 0 < small.cache.nbytes <= 0.002 * 2**20 < cached.cache.nbytes  # the bound held: fewer kept
    assert pickle.loads(pickle.dumps(cached)).cache is None  # a dataloader worker does not get a copy
