"""Peak memory of ``unigeo build`` on each local running mode, for two world sizes, in one run: does a
build's memory stay flat as the data grows?

Each build runs as its own ``unigeo build`` process; a sampler adds up the resident memory of that process
and every process under it (the ``multi_processing`` workers) every ``--interval`` seconds and keeps the
peak. The worlds are the synthetic ``small`` and ``medium`` worlds (generated once into ``--cache``); the
modes are the in-memory runner (the default), ``multi_processing`` with 2 workers and ``multi_threading``
with 2 threads. For each mode the bench prints the peak RSS of the process tree on each world, the
growth from the smallest world to the largest, wall time, the bytes of shards written, and checks that
the modes wrote byte-identical shards.

Usage: python -m bench.bench_memory [--sizes small,medium] [--modes in_memory,multi_processing,multi_threading]
                                    [--cache /tmp/unigeo-bench-worlds] [--interval 0.1] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from typing import Any

from bench.record import emit, measure
from unigeo.synth.world import write_world

TWO = ["--direct_num_workers=2"]
MODES: dict[str, list[str]] = {
    "in_memory": [],
    "multi_processing": ["--direct_running_mode=multi_processing", *TWO],
    "multi_threading": ["--direct_running_mode=multi_threading", *TWO],
}


def world(cache: str, size: str) -> str:
    """The synthetic world of ``size``, generated once under ``cache``; returns its config path."""
    folder = os.path.join(cache, size)
    config = os.path.join(folder, "sources.yaml")
    if not os.path.exists(config):
        shutil.rmtree(folder, ignore_errors=True)
        write_world(folder, size=size, seed=0)
    return config


def shard_digests(out: str) -> list[str]:
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    return [s["sha256"] for s in manifest["shards"]]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="small,medium")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--cache", default="/tmp/unigeo-bench-worlds", help="where the worlds are generated")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between memory samples")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args(argv)
    sizes, modes = args.sizes.split(","), args.modes.split(",")
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise SystemExit(f"unknown modes {unknown}; choose from {sorted(MODES)}")
    configs = {size: world(args.cache, size) for size in sizes}
    result: dict[str, Any] = {"worlds": {}, "modes": {}}
    with tempfile.TemporaryDirectory(prefix="unigeo-bench-memory-") as tmp:
        for size, config in configs.items():
            digests: list[str] | None = None
            for mode in modes:
                out = os.path.join(tmp, f"{size}-{mode}")
                cmd = [sys.executable, "-m", "unigeo", "build", "--config", config, "--out", out, *MODES[mode]]
                run = measure(cmd, args.interval)
                got = shard_digests(out)
                if digests is None:
                    digests = got
                    with open(os.path.join(out, "manifest.json")) as f:
                        c = json.load(f)["counts"]["overall"]
                    result["worlds"][size] = {"panoramas": c["inputs"], "samples": c["samples"],
                                              "shard_mb": round(c["shard_bytes"] / 1e6, 1), "shards": c["shards"]}
                elif got != digests:
                    raise SystemExit(f"{size}: {mode} wrote other shards than {modes[0]}")
                result["modes"].setdefault(mode, {})[size] = run
                print(f"{size:8s} {mode:18s} peak RSS {run['peak_rss_mb']:6d} MB  {run['wall_s']:7.1f} s",
                      file=sys.stderr)
                shutil.rmtree(out)
    if len(sizes) > 1:
        for by_size in result["modes"].values():
            first, last = by_size[sizes[0]]["peak_rss_mb"], by_size[sizes[-1]]["peak_rss_mb"]
            by_size["growth"] = round(last / first - 1, 3)
    emit(result, args.json)


if __name__ == "__main__":
    main(sys.argv[1:])
