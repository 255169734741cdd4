"""Inputs of the scale plan: one end-to-end build on real-size panoramas and the per-core rate of each
imagery stage, in one run.

The world is the tiny synthetic world rendered at 8192x4096 (the crops benchmark's), its index repeated
``--copies`` times under new pano_ids (the same images, other crop parameters; every copy lands in its
panorama's cell, so every panorama is kept), so the build does real-size work on enough panoramas to
outweigh the runner's start.

  1. ``unigeo build`` of that world on the in-memory DirectRunner: kept panoramas per second of the job
     and per CPU-second of the process (crops, tiles, text, shards: every member);
  2. the imagery stage's parts alone, in this process, over the samples of that build: the decode alone
     (the band of each panorama its crops see; and OpenCV's full-frame decode at 1/4 for reference),
     crops (read + decode + remap + encode), aerial and DSM tile reads, tile encoding (each
     ``--tile-encoding``), texts, the whole sample (``SampleRenderer.render``) and shard writing; the
     whole imagery stage's rate against its decode alone.

Usage: python -m bench.bench_scale [--copies 10] [--cache /tmp/unigeo-bench-panos] [--out /tmp/unigeo-bench-scale]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pandas as pd
import yaml

from bench.bench_crops import panoramas
from bench.record import save
from unigeo.cli.build import run_build
from unigeo.core.fileio import read_bytes, resolve
from unigeo.core.sample import SampleKey, encode_tile
from unigeo.outputs.readers import iter_shard
from unigeo.pipeline.crops import (
    check_panorama,
    crop_map,
    crop_params,
    crop_region,
    decode_region,
    draft_scale,
    open_image,
    scaled_size,
)
from unigeo.pipeline.job import read_inputs
from unigeo.pipeline.options import BuildOptions, ImageryOptions
from unigeo.pipeline.render import SampleRenderer
from unigeo.pipeline.shards import write_tar
from unigeo.pipeline.staging import load_poi_index
from unigeo.pipeline.text import TemplateGenerator, place_facts
from unigeo.pipeline.tiles import tile_grid


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(result, wall seconds) of work on this thread; CPU seconds of the process beside it go to
    ``CPU_OVER_WALL`` (above 1: threads besides the work)."""
    t, c = time.perf_counter(), cpu_s()
    out = fn()
    wall = time.perf_counter() - t
    CPU_OVER_WALL.append(round((cpu_s() - c) / wall, 2))
    return out, wall


CPU_OVER_WALL: list[float] = []


def scaled_world(cache: str, out: str, copies: int) -> str:
    """The cached 8192x4096 world with its index repeated ``copies`` times; returns its config path."""
    panoramas(cache, 1)  # renders the world once
    os.makedirs(out, exist_ok=True)
    index = pd.read_parquet(os.path.join(cache, "panos.parquet"))
    index["uri"] = [os.path.join(cache, u) for u in index["uri"]]
    frames = [index.assign(pano_id=index["pano_id"] + f"-c{c}") for c in range(copies)]
    pd.concat(frames, ignore_index=True).to_parquet(os.path.join(out, "panos.parquet"), index=False)
    with open(os.path.join(cache, "sources.yaml")) as f:
        config = yaml.safe_load(f)

    def absolute(p: str) -> str:
        return os.path.join(cache, p)

    config["metros"] = [{**m, "boundary": absolute(m["boundary"])} for m in config["metros"]]
    config["aerial"], config["dsm"] = [absolute(p) for p in config["aerial"]], [absolute(p) for p in config["dsm"]]
    config["pois"] = absolute(config["pois"])
    config["dates"] = {absolute(k): v for k, v in config.get("dates", {}).items()}
    config["panoramas"] = os.path.join(out, "panos.parquet")
    path = os.path.join(out, "sources.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return path


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--cache", default="/tmp/unigeo-bench-panos")
    parser.add_argument("--out", default="/tmp/unigeo-bench-scale")
    args = parser.parse_args(argv)
    config = scaled_world(args.cache, os.path.join(args.out, "world"), args.copies)
    build = os.path.join(args.out, "build")
    shutil.rmtree(build, ignore_errors=True)
    opts = BuildOptions()
    t, c = time.perf_counter(), cpu_s()
    manifest = run_build(config, build, opts, [])
    wall, cpu = time.perf_counter() - t, cpu_s() - c
    o = manifest["counts"]["overall"]
    job_s = manifest["run"]["duration_s"]
    n_samples = sum(o["samples"].values())
    report: dict[str, Any] = {
        "panoramas": o["inputs"], "kept": o["kept"], "samples": n_samples, "pano_size": "8192x4096",
        "build": {"job_wall_s": job_s, "command_wall_s": round(wall, 1), "command_cpu_s": round(cpu, 1),
                  "kept_per_s_of_job": round(o["kept"] / job_s, 2),
                  "kept_per_cpu_s": round(o["kept"] / cpu, 2),
                  "shard_bytes_per_kept": round(o["shard_bytes"] / o["kept"]),
                  "shard_bytes_per_sample": round(o["shard_bytes"] / n_samples)},
    }

    # The imagery stage's parts, over the built samples, one core.
    inputs = read_inputs(config)
    imagery: ImageryOptions = opts.render  # type: ignore[assignment]
    renderer = SampleRenderer(imagery, opts.seed, opts.holdout_year, opts.year_range,
                              [r.file() for r in inputs.aerial], [r.file() for r in inputs.dsm], TemplateGenerator(),
                              opts.text.radius_m, opts.text.max_pois,
                              load_poi_index(os.path.join(build, "inputs", "pois.parquet")))
    metas = [json.loads(members["json"]) for s in manifest["shards"]
             for _, members in iter_shard(os.path.join(build, s["shard"]))]
    for m in metas:  # a sample names its panoramas relative to the config's folder
        for p in m["panoramas"]:
            p["uri"] = resolve(p["uri"], os.path.dirname(os.path.abspath(config)))
    panos = [p for m in metas for p in m["panoramas"]]
    grids = [(m, tile_grid(m["lat"], m["lon"], imagery.gsd, imagery.tile_px)) for m in metas]
    _, crops_s = timed(lambda: [renderer.panorama(p, 0) for p in panos])
    jpegs = [read_bytes(p["uri"]) for p in panos]
    params = [[crop_params(opts.seed, p["pano_id"], i, imagery.pitch_range, imagery.fov_range)
               for i in range(imagery.crops_per_pano)] for p in panos]

    def band(jpeg: bytes, ps: list[Any], heading: float) -> Any:
        """The decode the renderer does for one panorama, alone: the band its crops see."""
        with open_image(jpeg) as img:
            width, height, _ = check_panorama(img)
        scale = draft_scale(width, ps, imagery.crop_px)
        w, h = scaled_size(width, height, scale)
        return decode_region(jpeg, scale, crop_region([crop_map(w, h, heading, q, imagery.crop_px) for q in ps], w, h))

    _, decode_s = timed(lambda: [band(j, ps, p["heading_deg"]) for j, ps, p in zip(jpegs, params, panos)])
    _, full_decode_s = timed(lambda: [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_REDUCED_COLOR_4)
                                      for j in jpegs])
    tiles, tiles_s = timed(lambda: [(renderer.tile("aerial", m["split"], g), renderer.tile("dsm", m["split"], g))
                                    for m, g in grids])
    arrays = [(kind, t[0]) for pair in tiles for kind, t in zip(("aerial", "dsm"), pair) if not hasattr(t, "reason")]

    def encode_all(encoding: str) -> list[Any]:
        return [encode_tile(kind, data, encoding) for kind, data in arrays]

    encode_s = {encoding: timed(lambda e=encoding: encode_all(e))[1] for encoding in ("standard", "compact")}
    generator = TemplateGenerator()
    _, text_s = timed(lambda: [generator.describe(place_facts(m["metro"], m["lat"], m["lon"], renderer.pois,
                                                              opts.text.radius_m, opts.text.max_pois, None, None),
                                                  opts.seed, m["key"]) for m in metas])
    outcomes, render_s = timed(lambda: [renderer.render(SampleKey(m["metro"], m["cell"], m["split"]), m)
                                        for m in metas])
    encoded = [o.encoded for o in outcomes if o.encoded is not None]
    buf = io.BytesIO()
    _, shard_s = timed(lambda: write_tar(buf, sorted(encoded, key=lambda e: e.key)))
    renderer.close()
    mb = len(buf.getvalue()) / 1e6
    report["per_core"] = {
        "crops_panoramas_per_s": round(len(panos) / crops_s, 1),
        "tiles_samples_per_s": round(len(grids) / tiles_s, 1),
        "tile_encode_samples_per_s": {k: round(len(tiles) / v, 1) for k, v in encode_s.items()},
        "texts_per_s": round(len(metas) / text_s, 1),
        "samples_rendered_per_s": round(len(metas) / render_s, 2),
        "kept_panoramas_rendered_per_s": round(len(panos) / render_s, 2),
        "shard_writing_mb_per_s": round(mb / shard_s, 1),
    }
    report["decode_alone"] = {
        "band_panoramas_per_s": round(len(panos) / decode_s, 1),
        "opencv_full_frame_1_4_panoramas_per_s": round(len(panos) / full_decode_s, 1),
        "render_vs_band_decode": round(decode_s / render_s, 3),
        "render_vs_opencv_full_frame": round(full_decode_s / render_s, 3)}
    report["imagery_share_of_render"] = {
        "decode": round(decode_s / render_s, 3),
        "crops": round(crops_s / render_s, 3), "tiles": round(tiles_s / render_s, 3),
        "tile_encode": round(encode_s[imagery.tile_encoding] / render_s, 3), "text": round(text_s / render_s, 3)}
    report["cpu_over_wall_per_part"] = CPU_OVER_WALL
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    save("bench_scale", report)


if __name__ == "__main__":
    main(sys.argv[1:])
