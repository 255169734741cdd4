"""``unigeo build`` on each local running mode, in one run: is a 2-worker ``multi_processing`` build faster
than the in-memory one?

The world is the small synthetic world (``unigeo synth --size small``, 368 panoramas, 145 samples;
generated once into ``--cache``) or any ``--config``. Each mode builds it ``--repeats`` times, the
modes taking turns, and the bench prints the median wall time of the whole build (checks, job,
manifest, report, publish; the process's start is left out, it is the same in every mode), the
CPU time of the process and its workers, each mode's ratio to the in-memory build, and the share of
the build that its pre-publish check (``unigeo.outputs.reconcile``) took:

  - ``in_memory``: one process (the default);
  - ``multi_processing``: 2 worker processes running ``unigeo.pipeline.worker``;
  - ``multi_processing (Beam's worker)``: the same with Beam's own worker entry point
    (``apache_beam.runners.worker.sdk_worker_main``), the baseline ``unigeo.pipeline.worker`` replaces;
  - ``multi_threading``: 2 harness threads in one process.

All modes must write byte-identical shards; the bench stops if they do not.

Usage: python -m bench.bench_modes [--repeats 3] [--cache /tmp/unigeo-bench-small] [--config sources.yaml]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

from bench.record import save
from unigeo.cli.build import run_build
from unigeo.pipeline import local
from unigeo.pipeline.options import BuildOptions
from unigeo.synth.world import write_world

TWO = ["--direct_num_workers=2"]
MODES: dict[str, tuple[list[str], str]] = {
    "in_memory": ([], local.WORKER_COMMAND),
    "multi_processing": (["--direct_running_mode=multi_processing", *TWO], local.WORKER_COMMAND),
    "multi_processing (Beam's worker)": (["--direct_running_mode=multi_processing", *TWO],
                                         f"{sys.executable} -m apache_beam.runners.worker.sdk_worker_main"),
    "multi_threading": (["--direct_running_mode=multi_threading", *TWO], local.WORKER_COMMAND),
}


def cpu_s() -> float:
    """CPU seconds of this process and of its finished children (the worker processes)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def small_world(cache: str) -> str:
    """The small synthetic world, generated once into ``cache``; returns its config path."""
    config = os.path.join(cache, "sources.yaml")
    if not os.path.exists(config):
        shutil.rmtree(cache, ignore_errors=True)
        write_world(cache, size="small", seed=0)
    return config


def build_once(config: str, out: str, beam_args: list[str], worker: str
               ) -> tuple[float, float, float, list[str]]:
    """(wall s, CPU s, reconciliation s, shard digests) of one build into a fresh ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    local.WORKER_COMMAND = worker
    t, c = time.perf_counter(), cpu_s()
    manifest = run_build(config, out, BuildOptions(), beam_args)
    wall, cpu = time.perf_counter() - t, cpu_s() - c
    return wall, cpu, manifest["reconciliation"]["seconds"], [s["sha256"] for s in manifest["shards"]]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", default="/tmp/unigeo-bench-small", help="where the small world is generated")
    parser.add_argument("--config", help="build this sources.yaml instead of the small world")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    config = args.config or small_world(args.cache)
    walls: dict[str, list[float]] = {m: [] for m in MODES}
    cpus: dict[str, list[float]] = {m: [] for m in MODES}
    checks: dict[str, list[float]] = {m: [] for m in MODES}
    digests: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="unigeo-bench-modes-") as tmp:
        build_once(config, os.path.join(tmp, "warm-up"), [], local.WORKER_COMMAND)  # page cache, imports
        for _ in range(args.repeats):
            for mode, (beam_args, worker) in MODES.items():
                wall, cpu, check, shards = build_once(config, os.path.join(tmp, "out"), beam_args, worker)
                walls[mode].append(wall)
                cpus[mode].append(cpu)
                checks[mode].append(check)
                digests.setdefault(mode, shards)
                if shards != digests["in_memory"]:
                    raise SystemExit(f"{mode} wrote other shards than in_memory")
    base = statistics.median(walls["in_memory"])
    report: dict[str, Any] = {"config": config, "cores": os.cpu_count(), "repeats": args.repeats, "modes": {}}
    for mode in MODES:
        wall = statistics.median(walls[mode])
        report["modes"][mode] = {"wall_s": round(wall, 2), "walls_s": [round(w, 2) for w in walls[mode]],
                                 "cpu_s": round(statistics.median(cpus[mode]), 2),
                                 "wall_vs_in_memory": round(wall / base, 3),
                                 "check_s": round(statistics.median(checks[mode]), 4),
                                 "check_share": round(statistics.median(checks[mode]) / wall, 5)}
    save("bench_modes", report)


if __name__ == "__main__":
    main(sys.argv[1:])
