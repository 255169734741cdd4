"""Bytes per sample: the contract's members (``--tile-encoding standard``: aerial.png, dsm.npy float32)
against ``--tile-encoding compact`` (aerial.webp lossless, dsm.png of centimetres), on the small world,
both built in this run with the same seed.

Usage: python -m bench.bench_samples [--world /tmp/unigeo-bench-small] [--out /tmp/unigeo-bench-samples]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import Any

from bench.record import save
from unigeo.cli.build import run_build
from unigeo.core.sample import CROP_KIND
from unigeo.pipeline.options import BuildOptions, ImageryOptions
from unigeo.synth.world import write_world


def per_sample(manifest: dict[str, Any]) -> dict[str, Any]:
    overall = manifest["counts"]["overall"]
    n = sum(overall["samples"].values())
    kinds = {k: round(v / n) for k, v in sorted(overall["member_bytes"].items())}
    return {"samples": n, "bytes_per_sample_by_member": kinds,
            "bytes_per_sample_excluding_crops": round(sum(v for k, v in kinds.items() if k != CROP_KIND)),
            "crops_per_sample": round(overall["members"].get(CROP_KIND, 0) / n, 3),
            "bytes_per_crop": round(overall["member_bytes"].get(CROP_KIND, 0)
                                    / max(1, overall["members"].get(CROP_KIND, 0))),
            "shard_bytes": overall["shard_bytes"], "job_s": manifest["run"]["duration_s"]}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="/tmp/unigeo-bench-small")
    parser.add_argument("--out", default="/tmp/unigeo-bench-samples")
    args = parser.parse_args(argv)
    if not os.path.exists(os.path.join(args.world, "sources.yaml")):
        write_world(args.world, size="small", seed=0)
    results = {}
    for encoding in ("standard", "compact"):
        out = os.path.join(args.out, encoding)
        shutil.rmtree(out, ignore_errors=True)
        opts = BuildOptions(imagery=ImageryOptions(tile_encoding=encoding))
        results[encoding] = per_sample(run_build(os.path.join(args.world, "sources.yaml"), out, opts, []))
    a, b = (results[k]["bytes_per_sample_excluding_crops"] for k in ("standard", "compact"))
    results["compact_vs_standard_excluding_crops"] = round(b / a, 3)
    shards = [results[k]["shard_bytes"] for k in ("standard", "compact")]
    results["compact_vs_standard_shards"] = round(shards[1] / shards[0], 3)
    save("bench_samples", results)


if __name__ == "__main__":
    main(sys.argv[1:])
