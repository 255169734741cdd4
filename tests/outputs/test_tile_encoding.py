"""``--tile-encoding compact``: the same tiles in fewer bytes (aerial.webp lossless, dsm.png of centimetres),
read by audit, the trainer and HF ``datasets`` as the standard members are."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unigeo.core.sample import (
    AERIAL,
    AERIAL_WEBP,
    DSM,
    DSM_PNG,
    crop_members,
    decode_aerial,
    decode_dsm,
    encode_dsm_png,
    encode_tile,
    is_crop,
    tile_member,
)
from unigeo.model.data import Decoder, DecodeSpec
from unigeo.outputs.audit import audit, check_members
from unigeo.outputs.readers import iter_shard


def samples(build: Path) -> dict[str, dict[str, bytes]]:
    manifest = json.loads((build / "manifest.json").read_text())
    return {key: members for s in manifest["shards"] for key, members in iter_shard(str(build / s["shard"]))}


def test_dsm_png_keeps_every_height_to_the_centimetre_and_every_unknown() -> None:
    rng = np.random.default_rng(3)
    dsm = (120.0 + rng.normal(0, 40, (64, 64)).cumsum(axis=1) / 10).astype(np.float32)
    dsm[rng.random(dsm.shape) < 0.1] = np.nan
    member, data, encoding = encode_tile("dsm", dsm, "compact")
    assert member == DSM_PNG and encoding is not None and encoding["offset_m"] <= np.nanmin(dsm)
    back = decode_dsm(data)
    assert back.dtype == np.float32 and back.shape == dsm.shape
    np.testing.assert_array_equal(np.isnan(back), np.isnan(dsm))
    assert np.nanmax(np.abs(back - dsm)) <= 0.005 + 1e-4
    with Image.open(io.BytesIO(data)) as img:  # a 16-bit grey PNG any reader opens
        assert img.mode == "I;16"


def test_a_dsm_taller_than_16_bits_of_centimetres_stays_float32() -> None:
    dsm = np.linspace(0, 700, 64 * 64, dtype=np.float32).reshape(64, 64)  # 700 m > 655.34 m
    assert encode_dsm_png(dsm) is None
    member, data, encoding = encode_tile("dsm", dsm, "compact")
    assert member == DSM and encoding is None
    np.testing.assert_array_equal(decode_dsm(data), dsm)


def test_an_all_unknown_dsm_round_trips() -> None:
    dsm = np.full((8, 8), np.nan, np.float32)
    assert np.isnan(decode_dsm(encode_tile("dsm", dsm, "compact")[1])).all()


def test_a_png_that_is_not_a_dsm_is_refused() -> None:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, format="PNG")
    with pytest.raises(ValueError, match="not a UniGeo DSM"):
        decode_dsm(buf.getvalue())


def test_compact_build_holds_the_same_pixels_in_a_third_of_the_bytes(tiny_build: Path,
                                                                      tiny_build_compact: Path) -> None:
    standard, compact = samples(tiny_build), samples(tiny_build_compact)
    assert standard.keys() == compact.keys() and standard
    dsm_png = 0
    for key, members in compact.items():
        ref = standard[key]
        assert {m for m in members if is_crop(m)} == {m for m in ref if is_crop(m)}
        assert all(members[m] == ref[m] for m in members if is_crop(m))  # crops untouched
        assert members["txt"] == ref["txt"]
        meta = json.loads(members["json"])
        assert crop_members(meta) == crop_members(json.loads(ref["json"]))
        assert (AERIAL in ref) == (AERIAL_WEBP in members) and AERIAL not in members
        if AERIAL in ref:
            np.testing.assert_array_equal(decode_aerial(members[AERIAL_WEBP]), decode_aerial(ref[AERIAL]))
            assert meta["aerial"]["member"] == AERIAL_WEBP
        if DSM in ref:
            member = tile_member(members, "dsm")
            assert member is not None and meta["dsm"]["member"] == member
            dsm_png += member == DSM_PNG
            a, b = decode_dsm(members[member]), decode_dsm(ref[DSM])
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            assert np.nanmax(np.abs(a - b), initial=0.0) <= 0.005 + 1e-4
    assert dsm_png > 0

    def bytes_per_sample(build: Path) -> float:
        overall = json.loads((build / "manifest.json").read_text())["counts"]["overall"]
        n = sum(overall["samples"].values())
        return sum(v for k, v in overall["member_bytes"].items() if k != "sv.jpg") / n

    ratio = bytes_per_sample(tiny_build_compact) / bytes_per_sample(tiny_build)
    assert ratio <= 0.4, ratio


def test_audit_passes_a_compact_build_and_catches_a_member_the_json_does_not_name(tiny_build_compact: Path) -> None:
    result = audit(str(tiny_build_compact))
    assert result["ok"], result["violations"][:5]
    key, members = next((k, m) for k, m in samples(tiny_build_compact).items() if DSM_PNG in m)
    meta = json.loads(members["json"])
    assert check_members(key, meta, members, {}) == []
    meta["dsm"]["member"] = DSM
    assert any("disagree about the dsm tile" in p for p in check_members(key, meta, members, {}))
    broken = {**members, DSM_PNG: members[DSM_PNG][:200]}
    meta["dsm"]["member"] = DSM_PNG
    assert any("does not decode" in p for p in check_members(key, meta, broken, {}))


def test_the_trainer_reads_compact_tiles_as_it_reads_standard_ones(tiny_build: Path,
                                                                   tiny_build_compact: Path) -> None:
    decode = Decoder(DecodeSpec(image_px=32, dsm_px=32, text_len=16, augment=False), None)
    standard, compact = samples(tiny_build), samples(tiny_build_compact)
    for key in sorted(standard)[:6]:
        a, b = decode(standard[key]), decode(compact[key])
        assert a["present"] == b["present"]
        np.testing.assert_array_equal(a["aerial"], b["aerial"])
        np.testing.assert_allclose(a["dsm"], b["dsm"], atol=0.01)
        np.testing.assert_array_equal(a["dsm_valid"], b["dsm_valid"])
