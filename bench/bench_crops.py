"""Crops from 8192x4096 panoramas: our renderer against the decode floors and two baselines.

All run in one process on the same JPEGs, one 256-px crop per panorama and seed with parameters from
``crop_params`` (``--seeds`` crops of each panorama), on two contents: the renders of the synthetic
world (0.24 bits per pixel) and the same renders with fine texture re-encoded at ~1.5 bpp, as real
street imagery (``photo-like``):
  decode floor         Pillow decoding the whole frame at the DCT scale our renderer picks, nothing else;
  opencv decode floor  ``cv2.imdecode`` with ``IMREAD_REDUCED_COLOR_{scale}``, the same scale;
  ours                 ``render_crops``: the band of the panorama the crop sees (``unigeo._jpegregion``)
                       + crop map + cv2.remap + JPEG encode;
  ours, full frame     the same with the whole frame decoded (what runs without the native module);
  opencv baseline      ``cv2.imdecode`` reduced + the same crop map + ``cv2.remap`` + ``cv2.imencode``;
  plain baseline       full Pillow decode + the same crop map + numpy bilinear gather + JPEG encode.

Usage: python -m bench.bench_crops [--panos 6] [--repeat 3] [--size 256] [--cache /tmp/unigeo-bench-panos]
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import resource
import sys
import time
from typing import Any

import cv2
import numpy as np
from PIL import Image

from bench.record import save
from unigeo.pipeline import crops
from unigeo.pipeline.crops import crop_map, crop_params, decode, draft_scale, encode_jpeg, remap_numpy, render_crops
from unigeo.synth.world import write_world

REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
           8: cv2.IMREAD_REDUCED_COLOR_8}


def panoramas(cache: str, n: int) -> list[tuple[bytes, float]]:
    """8192x4096 JPEGs and headings, rendered once and cached."""
    if len(glob.glob(os.path.join(cache, "panos", "*.jpg"))) < n:
        write_world(cache, size="tiny", seed=5, faults=False, pano_width=8192)
    import pandas as pd

    index = pd.read_parquet(os.path.join(cache, "panos.parquet")).head(n)
    out = []
    for uri, heading in zip(index["uri"], index["heading_deg"]):
        with open(os.path.join(cache, uri), "rb") as f:
            out.append((f.read(), float(heading)))
    return out


PHOTO_NOISE = 3.5  # grey levels of luminance noise: the renders re-encoded at ~1.5 bits per pixel


def photo_like(jpeg: bytes, seed: int) -> bytes:
    """A render with fine luminance texture, re-encoded at quality 90: about 1.5 bits per pixel, as real
    street imagery (the renders are 0.24 bpp, which flatters every decoder)."""
    img = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(np.float32)
    noise = np.random.default_rng(seed).normal(0, PHOTO_NOISE, img.shape[:2] + (1,)).astype(np.float32)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img + noise, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def rate(fn, items: list, repeat: int) -> float:  # type: ignore[no-untyped-def]
    """Items per second, best of ``repeat`` passes."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - t)
    return len(items) / best


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--panos", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seeds", type=int, default=4, help="crops (parameter seeds) per panorama")
    parser.add_argument("--cache", default="/tmp/unigeo-bench-panos")
    args = parser.parse_args(argv)
    panos = panoramas(args.cache, args.panos)
    contents = {"render": panos, "photo-like": [(photo_like(jpeg, i), heading) for i, (jpeg, heading) in
                                                enumerate(panos)]}
    width = Image.open(io.BytesIO(panos[0][0])).width

    def floor(item: tuple) -> None:
        jpeg, _, params = item
        decode(jpeg, draft_scale(width, params, args.size))

    def opencv_floor(item: tuple) -> None:
        jpeg, _, params = item
        cv2.imdecode(np.frombuffer(jpeg, np.uint8), REDUCED[draft_scale(width, params, args.size)])

    def ours(item: tuple) -> None:
        jpeg, heading, params = item
        render_crops(jpeg, heading, params, args.size)

    def ours_full_frame(item: tuple) -> None:
        crops.REGION_DECODE = False
        try:
            ours(item)
        finally:
            crops.REGION_DECODE = region

    def opencv_baseline(item: tuple) -> None:
        jpeg, heading, params = item
        pano = cv2.imdecode(np.frombuffer(jpeg, np.uint8), REDUCED[draft_scale(width, params, args.size)])
        h, w = pano.shape[:2]
        for p in params:
            crop = cv2.remap(pano, *crop_map(w, h, heading, p, args.size), interpolation=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_WRAP)
            cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])

    def baseline(item: tuple) -> None:
        jpeg, heading, params = item
        pano = decode(jpeg, 1)
        h, w = pano.shape[:2]
        for p in params:
            encode_jpeg(remap_numpy(pano, *crop_map(w, h, heading, p, args.size)), 90)

    region = crops.REGION_DECODE
    cv2.setNumThreads(1)  # one core, as a Beam worker thread has
    variants = [("decode_floor", floor), ("opencv_decode_floor", opencv_floor), ("ours", ours),
                ("ours_full_frame", ours_full_frame), ("opencv_baseline", opencv_baseline)]
    results: dict[str, Any] = {}
    for content, pairs in contents.items():
        items = [(jpeg, heading, [crop_params(seed, f"p{i}", 0)]) for i, (jpeg, heading) in enumerate(pairs)
                 for seed in range(args.seeds)]
        chosen = variants + ([("plain_baseline", baseline)] if content == "render" else [])
        rates = {name: rate(fn, items, args.repeat) for name, fn in chosen}
        r = rates["ours"]
        results[content] = {
            "bits_per_pixel": round(8 * sum(len(j) for j, _ in pairs) / (len(pairs) * width * width // 2), 2),
            "draft_scales": sorted({draft_scale(width, p, args.size) for _, _, p in items}),
            "rates_per_s_per_core": {k: round(v, 2) for k, v in rates.items()},
            "ours_vs": {k: round(r / v, 3) for k, v in rates.items() if k != "ours"}}
    save("bench_crops", {
        "crops": args.panos * args.seeds, "panoramas": args.panos, "pano_size": f"{width}x{width // 2}",
        "crop_px": args.size, "region_decode": region, **results,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    })


if __name__ == "__main__":
    main(sys.argv[1:])
