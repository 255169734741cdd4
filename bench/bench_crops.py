"""Crops from 8192x4096 panoramas: our renderer against the decode floor and a plain baseline.

All three run in one process on the same JPEGs (real renders of the synthetic world), one 256-px crop
per panorama with parameters from ``crop_params``:
  decode floor  decoding at the DCT scale our renderer picks, nothing else;
  ours          ``render_crops``: that decode + crop map + cv2.remap + JPEG encode;
  baseline      full Pillow decode + the same crop map + numpy bilinear gather + JPEG encode.

Usage: python -m bench.bench_crops [--panos 6] [--repeat 3] [--size 256] [--cache /tmp/unigeo-bench-panos]
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import resource
import sys
import time

from PIL import Image

from unigeo.pipeline.crops import crop_map, crop_params, decode, draft_scale, encode_jpeg, remap_numpy, render_crops
from unigeo.synth.world import write_world


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
    parser.add_argument("--cache", default="/tmp/unigeo-bench-panos")
    args = parser.parse_args(argv)
    items = [(jpeg, heading, [crop_params(0, f"p{i}", 0)]) for i, (jpeg, heading) in
             enumerate(panoramas(args.cache, args.panos))]
    width = Image.open(io.BytesIO(items[0][0])).width
    scales = [draft_scale(width, p, args.size) for _, _, p in items]

    def floor(item: tuple) -> None:
        jpeg, _, params = item
        decode(jpeg, draft_scale(width, params, args.size))

    def ours(item: tuple) -> None:
        jpeg, heading, params = item
        render_crops(jpeg, heading, params, args.size)

    def baseline(item: tuple) -> None:
        jpeg, heading, params = item
        pano = decode(jpeg, 1)
        h, w = pano.shape[:2]
        for p in params:
            encode_jpeg(remap_numpy(pano, *crop_map(w, h, heading, p, args.size)), 90)

    r_floor, r_ours, r_base = rate(floor, items, args.repeat), rate(ours, items, args.repeat), rate(baseline, items,
                                                                                                   args.repeat)
    print(json.dumps({
        "panoramas": len(items), "pano_size": f"{width}x{width // 2}", "crop_px": args.size,
        "draft_scales": sorted(set(scales)), "rates_per_s_per_core": {
            "decode_floor": round(r_floor, 2), "ours": round(r_ours, 2), "plain_baseline": round(r_base, 2)},
        "ours_vs_floor": round(r_ours / r_floor, 3), "ours_vs_baseline": round(r_ours / r_base, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
